"""The TRADES, ARD and RSLAD baselines from `run_mixacm` (the training script's entry point): each trains a few
optimiser steps, records exactly its loss terms and its true cost, and needs a teacher exactly when it should."""

import json
import subprocess
from pathlib import Path

import pytest
import torch
from test_reliability import plain_images, tiny_run_argv, write_dataset

from mixacm_hf.cli import parse_with_config
from mixacm_hf.models import WideResNetConfig, WideResNetForImageClassification
from mixacm_hf.run import argument_parser, run_mixacm

REPO = Path(__file__).resolve().parents[1]
TERMS = {
    "trades": {"loss_ce": 1.0, "loss_trades_kl": 6.0},
    "ard": {"loss_kld": 1.0},
    "rslad": {"loss_rslad_natural": pytest.approx(1 / 6), "loss_rslad_adv": pytest.approx(5 / 6)},
}
PASSES = {"trades": 2 + 2, "ard": 2 + 1, "rslad": 2 + 2}  # 2 PGD steps, then the outer backward(s)


@pytest.fixture(scope="module")
def data_and_teacher(tmp_path_factory):
    root = tmp_path_factory.mktemp("baselines")
    folder = write_dataset(root / "data", {"train": plain_images(16), "test": plain_images(4)})
    torch.manual_seed(1)
    teacher = WideResNetForImageClassification(WideResNetConfig.from_name("wrn-10-1", num_labels=10))
    teacher.save_pretrained(root / "teacher")
    return folder, root / "teacher"


# the hyperparameters each records: its own (the methods registry), none of another method's
OWN = {
    "trades": {"pgd_eps", "pgd_step_size", "pgd_steps", "trades_beta"},
    "ard": {"pgd_eps", "pgd_step_size", "pgd_steps", "ard_alpha", "ard_temperature"},
    "rslad": {"pgd_eps", "pgd_step_size", "pgd_steps", "rslad_alpha"},
}
OTHERS = {"alpha_acm", "alpha_kld", "temperature", "mixup_alpha", "nfgsm_noise", "trades_beta", "ard_alpha",
          "ard_temperature", "rslad_alpha", "acm_channel_align"}  # fmt: skip


@pytest.mark.parametrize("method", list(TERMS))
def test_baseline_trains_from_run_mixacm_and_records_its_terms_and_cost(tmp_path, data_and_teacher, method, caplog):
    folder, teacher = data_and_teacher
    teacher_flags = ["--teacher", str(teacher)]  # given to trades too: not used, with a warning
    argv = [*tiny_run_argv(folder, tmp_path / "out"), "--method", method, "--max_steps", "2", "--pgd_steps", "2",
            "--logging_steps", "1", *teacher_flags]  # fmt: skip
    summary = run_mixacm(*parse_with_config(argument_parser(), argv))
    assert summary["method"] == method and summary["steps"] == 2
    assert summary["objective"]["loss_terms"] == TERMS[method]
    assert summary["backward_passes_per_image"] == PASSES[method]
    saved = json.loads((tmp_path / "out" / "train_summary.json").read_text())
    assert saved["teacher"] == (str(teacher) if method != "trades" else None)
    assert saved["hyperparameters"]["pgd_steps"] == 2
    recorded = {key for key, value in saved["hyperparameters"].items() if value is not None}
    assert OWN[method] <= recorded and not (OTHERS - OWN[method]) & recorded, recorded
    assert saved["hyperparameters"]["max_steps"] == 2 and saved["hyperparameters"]["num_train_epochs"] is None
    assert ("is not used" in caplog.text) == (method == "trades")
    # provenance: the commit of the code that trained it (None outside a git checkout) and the package versions
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    assert saved["code"]["commit"] == (head.stdout.strip() if head.returncode == 0 else None)
    assert saved["code"]["versions"]["torch"] == torch.__version__.split("+")[0]


@pytest.mark.parametrize("method", ["ard", "rslad"])
def test_distillation_baselines_refuse_to_start_without_a_teacher(tmp_path, data_and_teacher, method):
    folder, _ = data_and_teacher
    argv = [*tiny_run_argv(folder, tmp_path / "out"), "--method", method, "--teacher", ""]
    with pytest.raises((ValueError, SystemExit), match="teacher"):
        run_mixacm(*parse_with_config(argument_parser(), argv))
    assert not (tmp_path / "out" / "model.safetensors").exists()


# N-FGSM's step is its own (noise and eps), not --pgd_step_size
ZERO_BUDGETS = [(m, f) for m in ("trades", "pgd-at", "ard", "rslad") for f in ("--pgd_eps", "--pgd_step_size")]


@pytest.mark.parametrize(("method", "flag"), [*ZERO_BUDGETS, ("n-fgsm", "--pgd_eps")])
def test_adversarial_methods_refuse_a_zero_budget_or_step(tmp_path, data_and_teacher, method, flag):
    """A zero eps or step size would train the method without adversarial examples, silently."""
    folder, teacher = data_and_teacher
    argv = [*tiny_run_argv(folder, tmp_path / "out"), "--method", method, "--teacher", str(teacher), flag, "0"]
    with pytest.raises(ValueError, match=f"{flag} 0 makes --method {method} train without adversarial examples"):
        run_mixacm(*parse_with_config(argument_parser(), argv))
