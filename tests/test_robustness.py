"""Robustness evaluation: attack exactness, a natural WRN's collapse, AutoAttack, reports, bad input, CLI."""

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from transformers import EvalPrediction
from transformers.modeling_outputs import ImageClassifierOutputWithNoAttention

from mixacm_hf.robustness import (
    RobustnessReport,
    autoattack,
    evaluate_robustness,
    fgsm,
    parse_attack,
    parse_eps,
    pgd,
    wilson_interval,
)
from mixacm_hf.robustness.inputs import load_examples, load_split
from mixacm_hf.robustness.metric import RobustAccuracy, compute_accuracy_metrics
from mixacm_hf.robustness.report import (
    check_eps_zero,
    check_monotone,
    check_not_above_clean,
    check_ordered,
    check_within_noise,
)

REPO = Path(__file__).resolve().parents[1]
REPORT_KEYS = ("clean_accuracy", "robust_accuracy", "n_examples", "eps", "norm", "attacks", "seconds")


pytestmark = pytest.mark.usefixtures("single_thread")


class HFStyle(nn.Module):
    """A plain module wrapped to return an HF classifier output (`.logits`)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, pixel_values):
        return ImageClassifierOutputWithNoAttention(logits=self.module(pixel_values))


def tiny_classifier(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10)).eval()


def tiny_images(n: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 8, 8, generator=generator), torch.randint(0, 10, (n,), generator=generator)


# ---------------------------------------------------------------- exactness on a linear binary classifier


def linear_problem(norm: str, n: int = 2000, d: int = 20) -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A linear binary classifier, points inside [0.3, 0.7]^d (the box never binds) and their exact margins.

    The smallest perturbation that flips the prediction has norm |score| / ||w_1 - w_0||_* (dual norm: L1 for
    Linf, L2 for L2).
    """
    torch.manual_seed(0)
    model = nn.Linear(d, 2)
    with torch.no_grad():
        model.weight.normal_()
        model.bias.copy_(-0.5 * model.weight.sum(1))
        x = 0.3 + 0.4 * torch.rand(n, d)
        y = model(x).argmax(1)
        w = model.weight[1] - model.weight[0]
        score = (x @ w + model.bias[1] - model.bias[0]).abs()
    return model, x, y, score / (w.abs().sum() if norm == "Linf" else w.norm())


@pytest.mark.parametrize("norm,eps", [("Linf", 0.03), ("L2", 0.1)])
def test_pgd_matches_closed_form_on_linear_classifier(norm, eps):
    model, x, y, margin = linear_problem(norm)
    x_adv = pgd(model, x, y, eps=eps, norm=norm, steps=20, seed=0)
    with torch.no_grad():
        fooled = model(x_adv).argmax(1) != y
    clear = (margin - eps).abs() > 1e-3
    attackable = margin < eps
    assert 0.2 < attackable.float().mean() < 0.8  # both sides are well represented
    assert torch.equal(fooled[clear], attackable[clear])


# ---------------------------------------------------------------- validity of adversarial examples


def assert_valid(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str) -> None:
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "Linf" else delta.norm(dim=1)
    assert (size <= eps + 1e-6).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert x_adv.shape == x.shape and not x_adv.requires_grad


@pytest.mark.parametrize(
    "attack,norm,eps",
    [
        (lambda m, x, y, eps, norm: fgsm(m, x, y, eps=eps, norm=norm), "Linf", 8 / 255),
        (lambda m, x, y, eps, norm: fgsm(m, x, y, eps=eps, norm=norm), "L2", 0.5),
        (lambda m, x, y, eps, norm: pgd(m, x, y, eps=eps, norm=norm, steps=10, restarts=2, seed=1), "Linf", 8 / 255),
        (lambda m, x, y, eps, norm: pgd(m, x, y, eps=eps, norm=norm, steps=10, restarts=2, seed=1), "L2", 0.5),
        (lambda m, x, y, eps, norm: autoattack(m, x, y, eps=eps, norm=norm, seed=0), "Linf", 8 / 255),
        (lambda m, x, y, eps, norm: autoattack(m, x, y, eps=eps, norm=norm, attacks=["apgd-ce"], seed=0), "L2", 0.5),
    ],
    ids=["fgsm-linf", "fgsm-l2", "pgd-linf", "pgd-l2", "autoattack-linf", "autoattack-l2"],
)
def test_adversarial_examples_lie_in_ball_and_box(attack, norm, eps):
    model = HFStyle(tiny_classifier())
    x, y = tiny_images()
    x_adv = attack(model, x, y, eps, norm)
    assert_valid(x_adv, x, eps, norm)
    with torch.no_grad():
        assert (model(x_adv).logits.argmax(1) != y).sum() > (model(x).logits.argmax(1) != y).sum()


def test_evaluation_rejects_examples_outside_the_ball_or_box():
    from mixacm_hf.robustness.batches import check_adversarial

    x, _ = tiny_images(4)
    check_adversarial((x + 8 / 255).clamp(0, 1), x, 8 / 255, "Linf", "ok")
    with pytest.raises(RuntimeError, match="outside"):
        check_adversarial((x + 9 / 255).clamp(0, 1), x, 8 / 255, "Linf", "too far")
    bright = torch.full((1, 3, 8, 8), 0.99)
    with pytest.raises(RuntimeError, match="outside"):
        check_adversarial(bright + 0.02, bright, 8 / 255, "Linf", "in the ball but above 1")


def test_autoattack_leaves_the_global_rng_alone():
    x, y = tiny_images()
    state = torch.get_rng_state()
    autoattack(tiny_classifier(), x, y, eps=8 / 255, attacks=["apgd-ce"], seed=5)
    assert torch.equal(torch.get_rng_state(), state)


def test_hf_outputs_and_plain_modules_give_the_same_attack():
    module = tiny_classifier()
    x, y = tiny_images()
    plain = pgd(module, x, y, eps=4 / 255, steps=5, seed=3)
    assert torch.equal(plain, pgd(HFStyle(module), x, y, eps=4 / 255, steps=5, seed=3))


def test_restarts_keep_every_success_and_model_mode_is_restored():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(192, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 10)).eval()
    x, _ = tiny_images(256)
    with torch.no_grad():
        y = model(x).argmax(1)  # every example starts correctly classified

    def fooled(restarts: int) -> torch.Tensor:
        x_adv = pgd(model.train(), x, y, eps=2 / 255, steps=3, restarts=restarts, seed=7)
        assert model.training  # the attack ran in eval mode and restored training mode
        with torch.no_grad():
            return model.eval()(x_adv).argmax(1) != y

    single, restarts = fooled(1), fooled(4)
    assert (restarts | ~single).all()  # the first restart is the single run; later ones only add successes
    assert restarts.sum() > single.sum()
    repeat = fooled(4)
    assert torch.equal(restarts, repeat)  # eval mode: dropout off, seeded random starts


# ---------------------------------------------------------------- a naturally trained WRN on CIFAR-10


@pytest.fixture(scope="module")
def cifar_test(cifar10_path):
    return load_split(str(cifar10_path), "test", image_size=32)


@pytest.fixture(scope="module")
def natural_wrn(cifar10_path):
    """WRN-10-1 trained without attacks on 4,000 CIFAR-10 training images for 3 epochs (about 20 CPU-seconds)."""
    from benchmarks.attack_throughput import train_natural  # the benchmark's model, trained the same way

    x, y = load_examples(load_split(str(cifar10_path), "train", image_size=32), 4000)
    return train_natural("wrn-10-1", x, y, epochs=3, batch_size=100)


@pytest.fixture(scope="module")
def natural_report(natural_wrn, cifar_test):
    return evaluate_robustness(
        natural_wrn,
        cifar_test,
        ["clean", "fgsm", "pgd-20", "autoattack"],
        eps=8 / 255,
        n_examples=64,
        batch_size=32,
        seed=0,
        device="cpu",
        dataset_name="cifar10",
        progress=False,
    )


def test_natural_wrn_falls_under_pgd20(natural_wrn, cifar_test, natural_report):
    x, y = load_examples(cifar_test, 200)
    with torch.no_grad():
        assert (natural_wrn(x).logits.argmax(1) == y).float().mean() >= 0.25  # well above chance (0.1)
    report = natural_report
    assert report.clean_accuracy > 0.1
    assert report.robust_accuracy["pgd-20"] <= 0.05
    assert report.robust_accuracy["all"] <= report.robust_accuracy["pgd-20"]
    assert report.flags == []
    zero = next(check for check in report.sanity_checks if check["name"] == "accuracy at eps=0 equals clean")
    assert zero["passed"]


def test_autoattack_not_above_pgd20_on_same_examples(natural_report):
    assert natural_report.robust_accuracy["autoattack"] <= natural_report.robust_accuracy["pgd-20"]
    assert natural_report.attacks["autoattack"]["attacks"] == ["apgd-ce", "apgd-t", "fab-t", "square"]


def test_pgd_at_eps_zero_equals_clean_accuracy_exactly(natural_wrn, cifar_test):
    x, y = load_examples(cifar_test, 64)
    with torch.no_grad():
        clean = natural_wrn(x).logits.argmax(1) == y
        attacked = natural_wrn(pgd(natural_wrn, x, y, eps=0.0, steps=2, seed=0)).logits.argmax(1) == y
    assert torch.equal(clean, attacked)


def test_report_has_the_documented_fields_and_round_trips(natural_report, tmp_path):
    report = natural_report
    data = json.loads(report.to_json())
    assert set(REPORT_KEYS) <= set(data)
    assert isinstance(data["clean_accuracy"], float)
    assert set(data["robust_accuracy"]) == {"fgsm", "pgd-20", "autoattack", "all"}
    assert set(data["seconds"]) == {"clean", "fgsm", "pgd-20", "autoattack"}
    assert data["attacks"]["pgd-20"]["steps"] == 20 and data["attacks"]["pgd-20"]["step_size"] == pytest.approx(2 / 255)
    assert data["n_examples"] == 64 and data["norm"] == "Linf" and data["seed"] == 0
    identity = {"type": "cifar10", "name": "cifar10", "revision": None, "local": False}  # a Hub id, recorded as such
    assert data["dataset"] == {"name": "cifar10", "split": "test", "revision": None, "identity": identity}
    assert data["model"]["class"] == "WideResNetForImageClassification"
    for name in ("clean", "fgsm", "pgd-20", "autoattack", "all"):
        low, high = data["intervals"][name]
        value = report.clean_accuracy if name == "clean" else report.robust_accuracy[name]
        assert low <= value <= high
    assert RobustnessReport.load(report.save(tmp_path / "report.json")) == report


def test_eps_sweep_curve_and_plot(natural_wrn, cifar_test, tmp_path):
    from mixacm_hf.robustness import plot_eps_sweep

    sweep = [parse_eps(e) for e in "0,2/255,4/255,8/255,16/255".split(",")]
    report = evaluate_robustness(
        natural_wrn, cifar_test, ["clean", "fgsm", "pgd-5"], n_examples=16, eps_sweep=sweep, progress=False
    )
    curve = report.eps_sweep["robust_accuracy"]
    assert report.eps_sweep["eps"] == sweep
    assert curve["fgsm"][0] == curve["pgd-5"][0] == report.clean_accuracy
    assert all(b <= a for a, b in zip(curve["pgd-5"], curve["pgd-5"][1:]))
    assert report.flags == []
    path = plot_eps_sweep(report, tmp_path / "sweep.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "name, shown",
    [("/home/me/runs/wrn16-2-mixacm", "wrn16-2-mixacm"), ("benchmarks/runs/teacher", "teacher"),
     ("./outputs/x", "x"), ("C:\\Users\\me\\runs\\wrn", "wrn"), ("runs\\student", "student"),
     ("org/robust-model", "org/robust-model"), ("robustbench:cifar10/Linf/Carmon2019Unlabeled",
     "robustbench:cifar10/Linf/Carmon2019Unlabeled"), (None, "model")],
)  # fmt: skip
def test_the_sweep_plot_names_a_local_model_by_its_folder(name, shown, natural_wrn, cifar_test, tmp_path):
    """A published card's plot shows no machine's folders: a local path by its last part, a Hub id as it is; the
    title fits the figure."""
    from matplotlib.figure import Figure

    from mixacm_hf.robustness import plots

    assert plots.shown_name(name) == shown
    sweep = [parse_eps(e) for e in "0,8/255".split(",")]
    report = evaluate_robustness(natural_wrn, cifar_test, ["clean", "fgsm"], n_examples=4, eps_sweep=sweep,
                                 progress=False)  # fmt: skip
    report = dataclasses.replace(report, model={**report.model, "name": name})
    drawn = []
    original = Figure.savefig

    def keep(figure, *args, **kwargs):
        drawn.append(figure)
        return original(figure, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Figure, "savefig", keep)
        plots.plot_eps_sweep(report, tmp_path / "sweep.png")
    title = drawn[0].axes[0].title
    assert title.get_text().splitlines()[0] == shown and "4 images" in title.get_text()
    box = title.get_window_extent(drawn[0].canvas.get_renderer())
    assert 0 <= box.x0 and box.x1 <= drawn[0].bbox.x1


def load_script():
    path = REPO / "training" / "evaluate_robustness.py"
    spec = importlib.util.spec_from_file_location("evaluate_robustness_script", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_command_line_writes_report_and_plot(natural_wrn, cifar10_path, tmp_path, capsys):
    natural_wrn.save_pretrained(tmp_path / "model")
    output = tmp_path / "out" / "report.json"
    argv = ["--model", str(tmp_path / "model"), "--dataset", str(cifar10_path), "--split", "test"]
    argv += [
        "--attacks",
        "clean,fgsm",
        "--eps",
        "8/255",
        "--n_examples",
        "8",
        "--eps_sweep",
        "0,8/255",
        "--output",
        str(output),
    ]
    load_script().main(argv)
    data = json.loads(output.read_text())
    assert set(REPORT_KEYS) <= set(data) and data["n_examples"] == 8
    assert data["model"]["name"] == str(tmp_path / "model")
    assert output.with_suffix(".png").exists()
    assert "fgsm" in capsys.readouterr().out


def test_model_revision_is_the_cached_hub_commit(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from mixacm_hf.robustness.evaluate import hub_commit, model_info

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--org--robust-wrn"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "config.json").write_text("{}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    assert hub_commit("org/robust-wrn") == commit
    assert hub_commit(str(tmp_path)) is None  # a local folder has no Hub revision
    assert model_info(tiny_classifier(), commit) == {"name": "Sequential", "revision": commit, "class": "Sequential"}


# ---------------------------------------------------------------- sanity checks and their flags


def test_sanity_checks_flag_gradient_masking_hints():
    clean_flag = check_not_above_clean(0.5, {"pgd-20": 0.6, "fgsm": 0.4})
    assert [c["passed"] for c in clean_flag] == [False, True]
    assert not check_ordered("autoattack", "pgd-20", {"autoattack": 0.3, "pgd-20": 0.2})["passed"]
    assert check_ordered("autoattack", "pgd-20", {"autoattack": 0.2, "pgd-20": 0.2})["passed"]
    weaker = torch.zeros(100, dtype=torch.bool)
    stronger = weaker.clone()
    stronger[:2] = True  # 2 examples: noise
    assert check_within_noise("pgd-100", "pgd-20", {"pgd-100": stronger, "pgd-20": weaker})["passed"]
    stronger[:10] = True  # 10 examples survive only the stronger attack: beyond noise
    assert not check_within_noise("pgd-100", "pgd-20", {"pgd-100": stronger, "pgd-20": weaker})["passed"]
    assert check_eps_zero(stronger, {"pgd-20": stronger.clone()})["passed"]
    assert not check_eps_zero(stronger, {"pgd-20": stronger.roll(1)})["passed"]  # same accuracy, other examples
    assert not check_monotone("pgd-20", [0.0, 8 / 255, 4 / 255], [weaker, weaker, stronger])["passed"]
    assert check_monotone("pgd-20", [0.0, 4 / 255, 8 / 255], [stronger, weaker, weaker])["passed"]


def test_randomised_model_is_flagged_at_eps_zero():
    class Noisy(nn.Module):
        """Input-independent random logits: a stochastic 'defense' whose accuracy changes from call to call."""

        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(192, 10)

        def forward(self, pixel_values):
            return 0 * self.linear(pixel_values.flatten(1)) + torch.randn(len(pixel_values), 10)

    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="gradient masking"):
        report = evaluate_robustness(Noisy(), tiny_images(500), ["clean", "fgsm"], batch_size=500, progress=False)
    assert "accuracy at eps=0 equals clean" in report.flags


def test_wilson_interval():
    assert wilson_interval(50, 100) == pytest.approx([0.4038, 0.5962], abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx([0.0, 0.2775], abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx([0.7225, 1.0], abs=1e-4)


# ---------------------------------------------------------------- bad input


def test_eps_in_0_255_units_suggests_a_fraction():
    assert parse_eps("8/255") == pytest.approx(8 / 255) and parse_eps("0.5") == 0.5
    x, y = tiny_images(4)
    with pytest.raises(ValueError, match="Did you mean 8/255"):
        pgd(tiny_classifier(), x, y, eps=parse_eps("8"))
    with pytest.raises(ValueError, match="Did you mean 8/255"):
        evaluate_robustness(tiny_classifier(), (x, y), eps=8, progress=False)
    with pytest.raises(ValueError, match="fraction"):
        parse_eps("eight")


def test_n_larger_than_the_split():
    import datasets

    x, y = tiny_images(10)
    with pytest.raises(ValueError, match="n_examples=11 but the data has 10 examples"):
        evaluate_robustness(tiny_classifier(), (x, y), n_examples=11, progress=False)
    table = datasets.Dataset.from_dict({"pixel_values": x.numpy(), "labels": y.numpy()}, split="test")
    with pytest.raises(ValueError, match="n_examples=20 but the split test has 10 examples"):
        evaluate_robustness(tiny_classifier(), table, n_examples=20, progress=False)


def test_model_without_logits_is_rejected():
    class Features(nn.Module):
        def forward(self, pixel_values):
            return {"pooler_output": pixel_values.flatten(1)}

    x, y = tiny_images(4)
    with pytest.raises(TypeError, match="without logits"):
        evaluate_robustness(Features(), (x, y), progress=False)
    with pytest.raises(TypeError, match="without logits"):
        pgd(Features(), x, y, eps=1 / 255)


def test_unknown_attack_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"Valid attacks: clean, fgsm, pgd-<steps>.*autoattack"):
        parse_attack("cw")
    with pytest.raises(ValueError, match="apgd-ce, apgd-dlr"):
        parse_attack("autoattack:apgd-ce+foo")
    assert parse_attack("pgd-20x5").restarts == 5 and parse_attack("PGD-100").steps == 100
    assert parse_attack("autoattack:apgd-ce+square").components == ("apgd-ce", "square")


# ---------------------------------------------------------------- evaluate integration


def test_robust_accuracy_metric_and_trainer_compute_metrics():
    metric = RobustAccuracy(keep_in_memory=True)
    assert metric.compute(predictions=[1, 2, 3, 4], references=[1, 2, 0, 0]) == {"accuracy": 0.5}
    logits = np.eye(4, dtype=np.float32)
    assert compute_accuracy_metrics(EvalPrediction(logits, np.array([0, 1, 2, 0]))) == {"accuracy": 0.75}
    hidden = np.zeros((4, 3), dtype=np.float32)
    assert compute_accuracy_metrics(EvalPrediction((logits, hidden), np.array([0, 1, 2, 3]))) == {"accuracy": 1.0}
