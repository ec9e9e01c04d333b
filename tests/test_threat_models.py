"""Threat models and attacks of issue 36: AutoAttack's L1 version, `autoattack:plus` / `autoattack:rand`, and the
transfer check (`transfer:<model>`) that exposes gradient masking. Tiny linear models on 8x8 images."""

from __future__ import annotations

import json
import re

import pytest
import torch
from huggingface_hub import ModelCard, ModelCardData
from torch import nn

from mixacm_hf.hub.eval_results import task_id
from mixacm_hf.hub.leaderboard import leaderboard
from mixacm_hf.hub.results import report_results
from mixacm_hf.robustness import check_eps, evaluate_robustness, parse_attack
from mixacm_hf.robustness.transfer import check_teacher_as_source, default_source, transfer_from
from mixacm_hf.run_args import check_eval_attacks

SIZE, CLASSES = 8, 4
pytestmark = pytest.mark.usefixtures("single_thread")


def linear(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * SIZE * SIZE, CLASSES))


class Noisy(nn.Module):
    """A randomised defence: Gaussian noise on the input, in eval mode too."""

    def __init__(self, model: nn.Module, sigma: float = 0.05):
        super().__init__()
        self.model, self.sigma = model, sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x + self.sigma * torch.randn_like(x))


class Rounded(nn.Module):
    """Masked gradients: the input is discretised to quarters, so its gradient is 0 almost everywhere."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(torch.round(x * 4) / 4)


def data(model: nn.Module, n: int = 8, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images labelled by `model` itself (clean accuracy 1)."""
    x = torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return x, model(x).argmax(1)


def evaluate(model: nn.Module, examples: tuple, attacks: list, **options) -> object:
    return evaluate_robustness(model, examples, attacks, device="cpu", progress=False, channels_last=False, **options)


def test_l1_autoattack_runs_and_its_card_entry_and_leaderboard_table_say_l1(tmp_path):
    model = linear()
    examples = data(model)
    report = evaluate(model, examples, ["clean", "autoattack:apgd-ce"], eps=12.0, norm="L1")
    assert report.norm == "L1" and report.attacks["autoattack:apgd-ce"]["norm"] == "L1" and report.flags == []
    assert report.clean_accuracy == 1.0 and report.robust_accuracy["autoattack:apgd-ce"] == 0.0
    result = report_results(report)[1]
    assert result.metric_name == "Robust accuracy (AutoAttack (apgd-ce), L1, eps=12)"
    assert result.metric_args["norm"] == "L1"
    assert task_id(result.metric_config, result.metric_args) == "l1-12-autoattack-custom-apgd-ce"
    linf = evaluate(model, examples, ["clean", "autoattack:apgd-ce"], eps=8 / 255)
    for name, measured in (("l1", report), ("linf", linf)):
        (tmp_path / name).mkdir()
        card = ModelCard.from_template(ModelCardData(model_name=name, eval_results=report_results(measured)))
        card.save(tmp_path / name / "README.md")
    board = leaderboard([str(tmp_path / "l1"), str(tmp_path / "linf")])
    assert sorted((table.norm, len(table.rows)) for table in board.tables) == [("L1", 1), ("Linf", 1)]


def test_l1_refuses_pgd_by_name_and_budgets_spanning_every_image():
    model = linear()
    with pytest.raises(ValueError, match=r"pgd-20, fgsm: not implemented for L1\. Attacks for L1: autoattack"):
        evaluate(model, data(model), ["clean", "pgd-20", "fgsm"], eps=12.0, norm="L1")
    with pytest.raises(ValueError, match="eps=192 is an L1 distance of at least 192"):
        evaluate(model, data(model), ["clean", "autoattack"], eps=192.0, norm="L1")
    assert check_eps(12.0, "L1", pixels=3 * 32 * 32) == 12.0


def test_an_l1_budget_below_one_or_the_linf_default_with_l2_is_refused_naming_the_flag(capsys):
    from training.evaluate_robustness import main as evaluate_main

    model = linear()
    with pytest.raises(
        ValueError, match=r"eps=0\.0313725 as an L1 budget .* looks like a Linf budget .* e\.g\. eps=12\."
    ):
        evaluate(model, data(model), ["clean", "autoattack"], eps=8 / 255, norm="L1")
    argv = ["--model", "unused", "--dataset", "unused", "--norm", "L1", "--attacks", "clean,autoattack"]
    for extra in ([], ["--eps", "0.5"]):  # the default eps (Linf's 8/255), and one given
        with pytest.raises(SystemExit, match=r"^error: --eps=0\.\d+ as an L1 budget .* e\.g\. --eps 12\.$"):
            evaluate_main([*argv, *extra])
    with pytest.raises(SystemExit, match=r"^error: --eps=8/255 is the Linf budget \(the default eps\), given with "
                       r"L2: .* e\.g\. --eps 0\.5\.$"):  # fmt: skip
        evaluate_main([*argv[:-1], "clean,pgd-20", "--norm", "L2"])
    with pytest.raises(ValueError, match=r"eps=8/255 is the Linf budget"):
        evaluate(model, data(model), ["clean", "pgd-20"], norm="L2")  # the default eps
    assert evaluate(model, data(model), ["clean", "pgd-5"], eps=0.5, norm="L2").eps == 0.5
    sweep = evaluate(model, data(model), ["clean", "autoattack:apgd-ce"], eps=12.0, norm="L1", eps_sweep=[0, 0.5, 12])
    assert sweep.eps_sweep["eps"] == [0, 0.5, 12]  # the points of a sweep may be small


def test_autoattack_plus_and_rand_are_their_own_entries_recorded_with_their_version():
    plus, rand = parse_attack("AutoAttack:Plus"), parse_attack("autoattack:rand")
    assert (plus.kind, plus.version, rand.kind, rand.version) == ("autoattack-plus", "plus", "autoattack-rand", "rand")
    assert plus.title == "AutoAttack (plus)"
    settings = plus.attack.prepare(plus, 10).settings(8 / 255, "Linf", 0)
    assert settings["version"] == "plus" and settings["attacks"] == [
        "apgd-ce",
        "apgd-dlr",
        "fab",
        "square",
        "apgd-t",
        "fab-t",
    ]
    assert task_id("autoattack:plus", settings) == "linf-8-255-autoattack-plus"
    small = rand.attack.prepare(rand, 2)
    assert small.components == ("apgd-ce",) and "apgd-dlr" in small.dropped


def test_a_misspelt_autoattack_version_or_component_is_refused_with_the_closest_name_and_the_versions():
    expected = {
        "autoattack:plsu": "autoattack:plus", "AutoAttack:rnd": "autoattack:rand",
        "autoattack:standard": "autoattack (the standard version)", "autoattack:apgd-ce+sqare": "square",
    }  # fmt: skip
    for name, closest in expected.items():
        with pytest.raises(ValueError, match=rf"\(did you mean {re.escape(closest)}\?\); choose components from .*, or "
                           r"a version: autoattack \(standard\), autoattack:plus, autoattack:rand\.$"):  # fmt: skip
            parse_attack(name)


def test_autoattack_rand_on_a_randomised_model_is_no_broken_evaluation_where_standard_is_flagged():
    model = linear()
    examples = data(model)
    noisy = Noisy(model)
    report = evaluate(noisy, examples, ["clean", "fgsm", "autoattack:rand"], eps=8 / 255)
    assert report.attacks["autoattack:rand"]["version"] == "rand"
    assert report.attacks["autoattack:rand"]["attacks"] == ["apgd-ce", "apgd-dlr"]
    assert report.attacks["autoattack:rand"]["eot_iter"] == 20
    assert report.flags == []
    assert any("randomised model" in check["name"] for check in report.sanity_checks)
    with pytest.warns(UserWarning, match="sanity checks failed"):
        standard = evaluate(noisy, examples, ["clean", "autoattack:apgd-ce"], eps=8 / 255)
    failed = [check["detail"] for check in standard.sanity_checks if not check["passed"]]
    assert "autoattack:apgd-ce: pyautoattack warning" in standard.flags
    assert any("it seems to be a randomized defense" in detail for detail in failed)


def test_a_transfer_attack_from_the_model_itself_equals_white_box_pgd():
    model = linear()
    examples = data(model, n=16)
    report = evaluate(model, examples, ["clean", "pgd-20", transfer_from(model, "itself")], eps=4 / 255, seed=3)
    assert report.per_example["transfer:itself"] == report.per_example["pgd-20"]
    assert 0 < report.robust_accuracy["pgd-20"] < 1
    assert report.attacks["transfer:itself"] == {**report.attacks["pgd-20"], "type": "transfer", "source": "itself"}
    assert [c["passed"] for c in report.sanity_checks if c["name"] == "pgd-20 <= transfer:itself"] == [True]


def test_masked_gradients_fail_the_transfer_check():
    plain = linear()
    masked = Rounded(plain)
    examples = data(masked, n=32)
    with pytest.warns(UserWarning, match="pgd-20 <= transfer:plain"):
        report = evaluate(masked, examples, ["clean", "pgd-20", transfer_from(plain, "plain")], eps=0.1)
    assert report.robust_accuracy["transfer:plain"] < report.robust_accuracy["pgd-20"]
    assert [c["passed"] for c in report.sanity_checks if c["name"] == "pgd-20 <= transfer:plain"] == [False]


def test_transfer_defaults_to_the_teacher_and_needs_white_box_pgd(tmp_path):
    (tmp_path / "train_summary.json").write_text(json.dumps({"teacher": "teachers/wrn"}))
    assert default_source(str(tmp_path)) == "teachers/wrn"
    with pytest.raises(ValueError, match=r"transfer: no source model\. Name one"):
        default_source(str(tmp_path / "missing"))
    model = linear()
    with pytest.raises(ValueError, match="transfer is checked against white-box PGD of the same budget"):
        evaluate(model, data(model), ["clean", "fgsm", "transfer"])
    assert parse_attack("transfer:Org/Teacher").source == "Org/Teacher"


def test_transfer_from_a_students_folder_attacks_it_with_its_teachers_examples(tmp_path, tiny_wrn):
    student, teacher = (tiny_wrn(num_labels=CLASSES, seed=seed, image_size=16) for seed in (0, 1))
    student.save_pretrained(tmp_path / "student")
    teacher.save_pretrained(tmp_path / "teacher")
    (tmp_path / "student" / "train_summary.json").write_text(json.dumps({"teacher": str(tmp_path / "teacher")}))
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = student(x).logits.argmax(1)
    attacks, progress = ["clean", "pgd-20", "transfer"], tmp_path / "progress"
    report = evaluate(str(tmp_path / "student"), (x, y), attacks, batch_size=4, resume_dir=progress)
    assert report.attacks["transfer"]["source"] == str(tmp_path / "teacher")
    assert report.attacks["transfer"]["steps"] == report.attacks["pgd-20"]["steps"] == 20
    assert [c["name"] for c in report.sanity_checks if "transfer" in c["name"]] == [
        "transfer <= clean",
        "pgd-20 <= transfer",
    ]
    (tmp_path / "student" / "train_summary.json").write_text(json.dumps({"teacher": str(tmp_path / "student")}))
    with pytest.raises(ValueError, match="holds the progress of an evaluation with other settings"):
        evaluate(str(tmp_path / "student"), (x, y), attacks, batch_size=4, resume_dir=progress)
    assert report_results(report)[2].metric_name == (
        "Robust accuracy (Transfer PGD-20 from the teacher, Linf, eps=8/255)"
    )


def test_a_transfer_source_of_other_classes_order_or_input_size_is_refused_before_any_attack(tmp_path, tiny_wrn):
    names = ["cat", "dog", "ship", "truck"]
    labelled = {"id2label": dict(enumerate(names)), "label2id": {name: i for i, name in enumerate(names)}}
    model = tiny_wrn(num_labels=CLASSES, image_size=16, **labelled)
    reversed_names = {"id2label": dict(enumerate(names[::-1])), "label2id": {n: i for i, n in enumerate(names[::-1])}}
    sources = {
        "fewer": tiny_wrn(num_labels=3, image_size=16),
        "reversed": tiny_wrn(num_labels=CLASSES, image_size=16, seed=1, **reversed_names),
        "larger": tiny_wrn(num_labels=CLASSES, image_size=32, seed=2, **labelled),
    }
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3])
    expected = {
        "fewer": "transfer:fewer: the source model has 3 classes, the evaluated model 4",
        "reversed": r"transfer:reversed: the source model's classes \(truck, ship, dog, cat\) are not the evaluated",
        "larger": r"transfer:larger: the source model does not take the evaluated images \(3, 16, 16\)",
    }
    for name, source in sources.items():
        progress = tmp_path / name
        with pytest.raises(ValueError, match=expected[name]):
            evaluate(model, (x, y), ["clean", "pgd-20", transfer_from(source, name)], resume_dir=progress)
        assert not progress.exists()  # refused before any batch was attacked
    same = tiny_wrn(num_labels=CLASSES, image_size=16, seed=3, **labelled)
    report = evaluate(model, (x, y), ["clean", "pgd-20", transfer_from(same, "same")])
    assert report.attacks["transfer:same"]["source"] == "same"


def test_a_transfer_source_that_is_a_file_is_refused_naming_no_other_scripts_flags(tmp_path, tiny_wrn):
    from training.evaluate_robustness import main as evaluate_main

    model = tiny_wrn(num_labels=CLASSES, image_size=16)
    model.save_pretrained(tmp_path / "model")
    weights = tmp_path / "model" / "model.safetensors"
    x, y = torch.rand(2, 3, 16, 16), torch.tensor([0, 1])
    message = (
        rf"transfer:{re.escape(str(weights))}: {re.escape(str(weights))} is a file: a transfer source is a model folder"
    )
    with pytest.raises(ValueError, match=message):
        evaluate(model, (x, y), ["clean", "pgd-20", f"transfer:{weights}"])
    argv = [
        "--model",
        str(tmp_path / "model"),
        "--dataset",
        str(tmp_path),
        "--attacks",
        f"clean,pgd-20,transfer:{weights}",
    ]
    with pytest.raises(SystemExit, match="^error: " + message) as refused:
        evaluate_main(argv)
    assert "--arch" not in str(refused.value) and "--teacher_architecture" not in str(refused.value)


def test_a_transfer_source_that_cannot_be_loaded_is_named_with_where_it_was_named(tmp_path, tiny_wrn):
    tiny_wrn(num_labels=CLASSES, image_size=16).save_pretrained(tmp_path / "student")
    summary = tmp_path / "student" / "train_summary.json"
    summary.write_text(json.dumps({"teacher": str(tmp_path / "gone")}))
    x, y = torch.rand(2, 3, 16, 16), torch.tensor([0, 1])
    with pytest.raises(ValueError, match=rf"^transfer: its source model \({re.escape(str(tmp_path / 'gone'))}, the "
                       rf"teacher named in {re.escape(str(summary))}\) cannot be loaded: "):  # fmt: skip
        evaluate(str(tmp_path / "student"), (x, y), ["clean", "pgd-20", "transfer"])


def test_a_teacher_of_other_classes_is_refused_as_the_end_of_run_transfer_source_before_training(tiny_wrn):
    student, teacher = tiny_wrn(num_labels=CLASSES), tiny_wrn(num_labels=3)
    with pytest.raises(ValueError, match=r"--eval_attacks: transfer crafts its examples on the teacher, whose classes "
                       r"\(3: unnamed\) are not the student's \(4: unnamed\)"):  # fmt: skip
        check_teacher_as_source(["clean", "pgd-20", "transfer"], teacher, student)
    check_teacher_as_source(["clean", "pgd-20", "transfer:org/model"], teacher, student)  # a named source
    check_teacher_as_source(["clean", "pgd-20", "transfer"], tiny_wrn(num_labels=CLASSES, seed=1), student)


def test_the_end_of_run_evaluation_checks_transfer_before_training():
    check_eval_attacks(["clean", "pgd-20", "transfer"], "Linf", has_teacher=True)
    with pytest.raises(ValueError, match="this method has none: name the source"):
        check_eval_attacks(["clean", "pgd-20", "transfer"], "Linf", has_teacher=False)
    check_eval_attacks(["clean", "pgd-20", "transfer:org/model"], "Linf", has_teacher=False)
    with pytest.raises(ValueError, match="pgd-20: not implemented for L1"):
        check_eval_attacks(["clean", "pgd-20", "autoattack"], "L1", has_teacher=False)


def test_a_distilled_students_end_of_run_evaluation_runs_transfer_from_its_teacher(tmp_path, tiny_wrn, cifar10_path):
    from training.run_mixacm import main

    tiny_wrn("wrn-10-1").save_pretrained(tmp_path / "teacher")
    main(
        ["--student", "wrn-10-1", "--teacher", str(tmp_path / "teacher"), "--method", "kd", "--dataset",
         str(cifar10_path), "--max_train_samples", "16", "--per_device_train_batch_size",
         "8", "--max_steps", "1", "--report_to", "none", "--use_cpu", "true", "--save_strategy", "no",
         "--disable_tqdm", "true", "--output_dir", str(tmp_path / "student"), "--eval_attacks", "clean,pgd-20,transfer",
         "--eval_n", "8", "--eval_eps_sweep", ""]
    )  # fmt: skip
    (report,) = json.loads((tmp_path / "student" / "robustness.json").read_text())
    assert report["attacks"]["transfer"]["source"] == str(tmp_path / "teacher")
    assert [c["name"] for c in report["sanity_checks"] if c["name"].startswith("pgd-20 <= transfer")] == [
        "pgd-20 <= transfer"
    ]
    assert "Transfer PGD-20 from the teacher" in (tmp_path / "student" / "README.md").read_text()
