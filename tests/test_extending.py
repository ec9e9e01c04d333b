"""Extending the project is one registry entry: a toy training method with a hyperparameter of its own (params
class, terms, objective, entry) and a toy attack (entry), both defined here, run through the unchanged trainer, the
unchanged training script and `evaluate_robustness` (docs/design.md, section 7)."""

import json
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from test_reliability import plain_images, tiny_run_argv, write_dataset
from test_trainer import make_trainer

from mixacm_hf.cli import parse_with_config
from mixacm_hf.hub import relevant_hyperparameters
from mixacm_hf.methods import METHODS, Method, MethodParams, Objective, get_method, register_method
from mixacm_hf.robustness import ATTACKS, Attack, attack_title, evaluate_robustness, parse_attack, register_attack
from mixacm_hf.run import run_mixacm
from mixacm_hf.run_args import argument_parser


@dataclass(frozen=True)
class SmoothingParams(MethodParams):
    """Toy method: label-smoothed cross-entropy.

    Args:
        smoothing: label smoothing of the cross-entropy, in [0, 1).
    """

    method = "toy-smoothing"
    smoothing: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check("smoothing", 0 <= self.smoothing < 1, "in [0, 1)")


def label_smoothing_terms(model, batch, params):
    """Cross-entropy with label smoothing `params.smoothing`, weighted 2."""
    outputs = model(pixel_values=batch.pixel_values)
    loss = F.cross_entropy(outputs.logits.float(), batch.labels, label_smoothing=params.smoothing)
    return {"loss_smooth": (2.0, loss)}, outputs


@pytest.fixture
def toy_method():
    method = register_method(
        Method("toy-smoothing", "Label smoothing (toy).", terms=label_smoothing_terms, params=SmoothingParams,
               objective=lambda params, teacher_shares_labels: Objective({"loss_smooth": 2.0}))
    )  # fmt: skip
    yield method
    del METHODS[method.name]


def test_a_toy_method_is_one_registry_entry(tmp_path, tiny_wrn, toy_method):
    trainer = make_trainer(tmp_path, tiny_wrn, method="toy-smoothing")
    assert trainer.teacher_model is None and trainer.objective()["loss_terms"] == {"loss_smooth": 2.0}
    assert trainer.params == SmoothingParams(smoothing=0.1)  # its default; make_args's pgd_steps is not its flag
    trainer.train()
    logs = [log for log in trainer.state.log_history if "loss" in log]
    assert len(logs) == 2
    for log in logs:
        assert {key for key in log if key.startswith("loss_")} == {"loss_smooth"}
        assert log["loss"] == pytest.approx(2.0 * log["loss_smooth"], rel=1e-4)
    assert get_method("toy-smoothing").backward_passes(trainer.params) == 1
    hyperparameters = {"alpha_acm": 5000.0, "smoothing": 0.1, "learning_rate": 0.1, "seed": 0}
    assert relevant_hyperparameters("toy-smoothing", hyperparameters) == {"smoothing": 0.1, "learning_rate": 0.1,
                                                                          "seed": 0}  # fmt: skip
    assert relevant_hyperparameters("natural", hyperparameters) == {"learning_rate": 0.1, "seed": 0}


def test_a_toy_methods_own_hyperparameter_is_a_flag_checked_recorded_and_kept_on_resume(tmp_path, toy_method):
    """`--smoothing` reaches the training script's command line, its params check it, the run records it in its
    summary, checkpoints and card, and a resume with another value is refused."""
    from training.run_mixacm import main

    folder = write_dataset(tmp_path / "data", {"train": plain_images(8), "test": plain_images(4)})
    out = tmp_path / "out"
    argv = [*tiny_run_argv(folder, out, "--max_steps", "2", "--save_strategy", "steps", "--save_steps", "1"),
            "--method", "toy-smoothing"]  # fmt: skip
    assert "--smoothing" in argument_parser().format_help()
    with pytest.raises(SystemExit, match=r"^error: --smoothing 1.5 is invalid: it must be in \[0, 1\)\."):
        main([*argv, "--smoothing", "1.5"])
    with pytest.raises(SystemExit, match=r"^error: --method natural does not use --smoothing \(a hyperparameter of "
                                         r"toy-smoothing\)"):  # fmt: skip
        main([*tiny_run_argv(folder, out), "--smoothing", "0.2"])
    assert not out.exists()

    summary = run_mixacm(*parse_with_config(argument_parser(), [*argv, "--smoothing", "0.2"]))
    assert summary["steps"] == 2 and summary["objective"]["loss_terms"] == {"loss_smooth": 2.0}
    assert summary["hyperparameters"]["smoothing"] == 0.2 and summary["backward_passes_per_image"] == 1
    assert json.loads((out / "train_summary.json").read_text())["hyperparameters"]["smoothing"] == 0.2
    recorded = json.loads((out / "checkpoint-1" / "mixacm_objective.json").read_text())
    assert recorded == {"method": "toy-smoothing", "loss_terms": {"loss_smooth": 2.0},
                        "hyperparameters": {"smoothing": 0.2}}  # fmt: skip
    card = (out / "README.md").read_text()
    assert "smoothing" in card and "0.2" in card and "alpha_acm" not in card

    resume = ["--resume_from_checkpoint", str(out / "checkpoint-1")]
    with pytest.raises(ValueError, match=r"that run optimised hyperparameters \{'smoothing': 0.2\}, this one "
                                         r"hyperparameters \{'smoothing': 0.3\}"):  # fmt: skip
        run_mixacm(*parse_with_config(argument_parser(), [*argv, "--smoothing", "0.3", *resume]))
    resumed = run_mixacm(*parse_with_config(argument_parser(), [*argv, "--smoothing", "0.2", *resume]))
    assert resumed["steps"] == 2 and resumed["hyperparameters"]["smoothing"] == 0.2


def test_a_method_whose_terms_disagree_with_its_objective_is_refused(tmp_path, tiny_wrn, toy_method):
    register_method(
        Method("toy-wrong", "Declares another weight.",
               terms=lambda model, batch, params: label_smoothing_terms(model, batch, SmoothingParams()),
               objective=lambda params, teacher_shares_labels: Objective({"loss_smooth": 1.0}))
    )  # fmt: skip
    try:
        with pytest.raises(RuntimeError, match="its objective declares"):
            make_trainer(tmp_path, tiny_wrn, method="toy-wrong").train()
    finally:
        del METHODS["toy-wrong"]


def uniform_noise(spec, model, x, y, eps, norm, seed):
    """Toy attack: x + U(-eps, eps) per pixel (Linf), clipped to [0, 1], seeded."""
    generator = torch.Generator().manual_seed(seed)
    return (x + eps * (torch.rand(x.shape, generator=generator) * 2 - 1)).clamp(0, 1)


@pytest.fixture
def toy_attack():
    attack = register_attack(
        Attack("noise", "noise", "noise", run=uniform_noise, title=lambda spec: "Uniform noise",
               settings=lambda spec, eps, norm, seed: {"type": "noise", "eps": eps, "norm": norm, "seed": seed})
    )  # fmt: skip
    yield attack
    del ATTACKS[attack.kind]


def test_a_toy_attack_is_one_registry_entry(tiny_wrn, toy_attack):
    model = tiny_wrn()
    x, y = torch.rand(12, 3, 32, 32), torch.arange(12) % 10
    report = evaluate_robustness(model, (x, y), ["clean", "noise", "fgsm"], eps=8 / 255, batch_size=6, progress=False)
    assert report.attacks["noise"] == {"type": "noise", "eps": 8 / 255, "norm": "Linf", "seed": 0}
    assert len(report.per_example["noise"]) == 12 and 0 <= report.robust_accuracy["noise"] <= 1
    with torch.no_grad():
        expected = [
            bool(flag)
            for start in (0, 6)
            for flag in model(uniform_noise(None, model, x[start : start + 6], None, 8 / 255, "Linf", start // 6))
            .logits.argmax(1)
            .eq(y[start : start + 6])
        ]
    assert report.per_example["noise"] == expected
    assert attack_title("noise") == "Uniform noise" and parse_attack("noise").kind == "noise"
    assert attack_title("cw-100") == "cw-100"  # a foreign card's attack name is shown as it is


def test_design_docs_method_example_is_one_module_that_runs_the_training_script(tmp_path):
    """docs/design.md, section 7.1: its example, saved as one module outside the package, trains through the training
    script when run (`training/run_mixacm.py` alone would not know the method) and its card records `smoothing`."""
    import os
    import subprocess
    import sys

    from conftest import REPO

    design = (REPO / "docs" / "design.md").read_text()
    example = design.partition("Example: label smoothing")[2].partition("```python\n")[2].partition("```")[0]
    plugin = tmp_path / "label_smoothing.py"
    plugin.write_text(example)
    folder = write_dataset(tmp_path / "data", {"train": plain_images(8), "test": plain_images(4)})
    out = tmp_path / "out"
    argv = [*tiny_run_argv(folder, out, "--max_steps", "2"), "--method", "label-smoothing", "--smoothing", "0.2"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, str(plugin), *argv], cwd=REPO, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == 2 and summary["hyperparameters"]["smoothing"] == 0.2
    card = (out / "README.md").read_text()
    assert "| `smoothing` | 0.2 |" in card and f"Produced by `{plugin} --student" in card  # the command to rerun
