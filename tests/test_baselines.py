"""The TRADES, ARD and RSLAD baselines from `run_mixacm` (the training script's entry point): each trains a few
optimiser steps, records exactly its loss terms and its true cost, and needs a teacher exactly when it should."""

import json
import logging
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import metadata_load
from test_reliability import Crash, CrashAt, plain_images, tiny_run_argv, write_dataset

from mixacm_hf import MixACMTrainingArguments
from mixacm_hf.cli import explicit_flags, parse_with_config
from mixacm_hf.methods import METHODS
from mixacm_hf.models import WideResNetConfig, WideResNetForImageClassification
from mixacm_hf.run import run_mixacm
from mixacm_hf.run_args import argument_parser, unused_flags

REPO = Path(__file__).resolve().parents[1]
TERMS = {
    "trades": {"loss_ce": 1.0, "loss_trades_kl": 6.0},
    "ard": {"loss_kld": 1.0},
    "rslad": {"loss_rslad_natural": 0.166666666667, "loss_rslad_adv": 5 / 6},  # 1 - 5/6, recorded without float noise
}
CITED = {"trades": "zhang2019trades", "ard": "goldblum2020ard", "rslad": "zi2021rslad"}
TAGGED = {
    "trades": {"adversarial-training", "trades"},
    "ard": {"adversarial-distillation", "knowledge-distillation"},
    "rslad": {"adversarial-distillation", "knowledge-distillation"},
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
    # the card says what the method is and cites its paper, beside MixACM and AutoAttack
    card = (tmp_path / "out" / "README.md").read_text()
    entry = METHODS[method]
    assert f"trained with **{entry.card_title}**" in card and entry.card_text in card
    assert CITED[method] in card and entry.citation in card and "awais2021mixacm" in card
    # tagged as what it is: a TRADES or ARD model is not found on the Hub under `mixacm`
    assert set(metadata_load(tmp_path / "out" / "README.md")["tags"]) == {"adversarial-robustness", *TAGGED[method]}


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


# each method's params refuse these (`MethodParams.refuse_zero`)
ZERO_WEIGHTS = [("trades", "trades_beta"), ("ard", "ard_alpha"), ("rslad", "rslad_alpha"), ("kd", "alpha_kld")]


@pytest.mark.parametrize(("method", "name"), ZERO_WEIGHTS)
def test_a_zero_weight_that_switches_the_method_off_is_refused(tmp_path, method, name):
    """TRADES with beta 0, ARD or RSLAD with alpha 0, kd with alpha_kld 0: the method's point is gone while its cost
    and its name on the card stay; refused, naming the flag."""
    with pytest.raises(ValueError, match=f"--{name} 0 switches off --method {method}: it weighs"):
        MixACMTrainingArguments(output_dir=str(tmp_path), method=method, **{name: 0.0})


def test_every_baseline_weight_refuses_zero_and_non_finite_values(tmp_path):
    for method, name in (("trades", "trades_beta"), ("ard", "ard_temperature")):
        for value in (math.inf, math.nan):
            with pytest.raises(ValueError, match=f"--{name} {value} is invalid: it must be finite and "):
                MixACMTrainingArguments(output_dir=str(tmp_path), method=method, **{name: value})
            with pytest.raises(ValueError, match=f"--{name} {value} is invalid: it must be finite and "):
                METHODS[method].params_from({name: value})  # the method's params check it, wherever built


@pytest.mark.parametrize(
    ("method", "flags", "message"),
    [
        (
            "ard",
            ["--temperature", "4"],
            r"ard does not use --temperature \(a hyperparameter of mixacm, "
            r"mixacm-no-mixup, kd\).*takes: .*--ard_temperature",
        ),
        ("trades", ["--alpha-acm=2000", "--mixup_alpha", "0.2"], r"does not use --alpha_acm .*; --mixup_alpha"),
        ("rslad", ["--ard_temperature", "10"], r"--ard_temperature \(a hyperparameter of ard\)"),
        ("mixacm", ["--pgd_steps", "10"], r"--pgd_steps \(a hyperparameter of pgd-at, trades, ard, rslad\)"),
    ],
)
def test_another_methods_flag_on_the_command_line_is_refused_before_any_work(tmp_path, method, flags, message):
    """Ignored without a word, `--temperature 4` for ARD (whose temperature is --ard_temperature) would train at 30
    and record 30; a config file's values are not checked, since one file serves several methods."""
    from training.run_mixacm import main

    argv = ["--output_dir", str(tmp_path / "out"), "--dataset", str(tmp_path / "none"), "--method", method, *flags]
    with pytest.raises(SystemExit, match="^error: --method .*" + message):
        main(argv)
    assert not (tmp_path / "out").exists()
    config = tmp_path / "config.yaml"
    config.write_text("alpha_acm: 2000\ntemperature: 4\nmixup_alpha: 0.2\n")
    assert explicit_flags(["--config", str(config), "--method", "trades", "--pgd-eps=8/255"]) == {"method", "pgd_eps"}
    assert unused_flags("trades", explicit_flags(["--config", str(config), "--method", "trades"])) == []


def test_fractions_are_read_only_for_number_flags_and_a_bad_one_names_its_flag():
    argv = ["--output_dir", "runs/10/3", "--dataset", "d", "--pgd_eps", "8/255", "--pgd-step-size=2/255"]
    _, data_args, training_args, _ = parse_with_config(argument_parser(), [*argv, "--method", "pgd-at"])
    assert training_args.output_dir == "runs/10/3" and data_args.dataset == "d"
    assert training_args.pgd_eps == pytest.approx(8 / 255) and training_args.pgd_step_size == pytest.approx(2 / 255)
    with pytest.raises(ValueError, match=r"Cannot parse --pgd_eps '8/0'"):
        parse_with_config(argument_parser(), ["--output_dir", "o", "--pgd_eps", "8/0"])


def test_unloadable_teacher_folders_end_the_run_with_one_line_naming_the_teacher(tmp_path, data_and_teacher, capsys):
    """A folder with config.json but no weights, and an empty folder: `error: Cannot load the teacher ...`, no
    traceback, before any training."""
    from training.run_mixacm import main

    folder, teacher = data_and_teacher
    without_weights, empty = tmp_path / "no-weights", tmp_path / "empty"
    without_weights.mkdir(), empty.mkdir()
    (without_weights / "config.json").write_text((teacher / "config.json").read_text())
    for bad in (without_weights, empty):
        argv = [*tiny_run_argv(folder, tmp_path / "out"), "--method", "rslad", "--teacher", str(bad)]
        with pytest.raises(SystemExit, match=f"^error: Cannot load the teacher '{bad}': .*holds config.json"):
            main(argv)
    assert not (tmp_path / "out" / "model.safetensors").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [(["--steps", "6"], "give --steps >= 7"), (["--rounds", "1", "--dataset", "nowhere"], "no such folder"),
     (["--output", "{tmp}"], "give a file path in an existing folder"),
     (["--output", "{tmp}/missing/cost.json"], "give a file path in an existing folder"),
     (["--steps", "7", "--rounds", "1", "--output", str(REPO / "benchmarks" / "results" / "method_cost.json")],
      "time 1 step per variant, fewer than the")],
)  # fmt: skip
def test_method_cost_refuses_a_run_that_could_not_time_anything_before_running(tmp_path, flags, message):
    """Six steps leave no timed iteration after the warm-up, an output that cannot be written, or a rougher timing
    over the committed method_cost.json (the reproduction's costs read it): refused up front, not after the whole
    run, run as a script from another folder or as a module."""
    committed = (REPO / "benchmarks" / "results" / "method_cost.json").read_bytes()
    as_module = flags[0] == "--steps" and flags[1] == "6"  # one case as a module, the others as a script elsewhere
    flags = [flag.format(tmp=tmp_path) for flag in flags]
    output = [] if "--output" in flags else ["--output", str(tmp_path / "cost.json")]
    dataset = [] if "--dataset" in flags else ["--dataset", str(tmp_path)]  # any folder: refused before it is read
    command = ["-m", "benchmarks.method_cost"] if as_module else [str(REPO / "benchmarks" / "method_cost.py")]
    result = subprocess.run(
        [sys.executable, *command, *flags, *output, *dataset], capture_output=True, text=True, timeout=300,
        cwd=REPO if as_module else tmp_path,
    )  # fmt: skip
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not (tmp_path / "cost.json").exists()
    assert (REPO / "benchmarks" / "results" / "method_cost.json").read_bytes() == committed


def test_abbreviated_flags_and_bad_config_files_end_with_one_line(tmp_path):
    """`--temp 4` used to be read as --temperature (argparse's prefixes), past the check of another method's flags;
    a missing, unreadable or malformed --config file used to end in a traceback."""
    from training.run_mixacm import main

    base = ["--output_dir", str(tmp_path / "out"), "--dataset", str(tmp_path / "none")]
    with pytest.raises(SystemExit, match=r"^error: Unknown arguments: --temp \(did you mean --temperature.*\)\. Run"):
        main([*base, "--method", "rslad", "--temp", "4"])
    malformed = tmp_path / "bad.yaml"
    malformed.write_text("trades_beta: [1, 2\n")
    for config in (tmp_path / "missing.yaml", tmp_path, malformed):
        with pytest.raises(SystemExit, match=f"^error: --config {re.escape(str(config))}: cannot read it as a YAML"):
            main([*base, "--config", str(config)])
    with pytest.raises(SystemExit, match="^error: --config is given more than once"):
        main([*base, "--config", str(malformed), "--config", str(malformed)])
    good = tmp_path / "good.yaml"
    good.write_text("trades_beta: 3\n")
    args = parse_with_config(argument_parser(), [*base, f"--config={good}", "--method", "trades"])[2]
    assert args.trades_beta == 3
    assert not (tmp_path / "out").exists()


def test_resuming_with_another_method_or_hyperparameters_is_refused_before_a_step(tmp_path, data_and_teacher):
    """Resuming an ARD checkpoint as TRADES used to train on and record the result as TRADES without a teacher."""
    folder, teacher = data_and_teacher
    out = tmp_path / "out"
    argv = [*tiny_run_argv(folder, out, "--save_strategy", "steps", "--save_steps", "2", "--max_steps", "3"),
            "--method", "ard", "--teacher", str(teacher), "--pgd_steps", "2"]  # fmt: skip
    with pytest.raises(Crash):  # killed after its checkpoint at step 2
        run_mixacm(*parse_with_config(argument_parser(), argv), callbacks=[CrashAt(3).callback])
    recorded = json.loads((out / "checkpoint-2" / "mixacm_objective.json").read_text())
    assert recorded["method"] == "ard" and recorded["hyperparameters"]["pgd_steps"] == 2
    more = ["--resume_from_checkpoint", "last"]
    trades = [*tiny_run_argv(folder, out, "--save_strategy", "steps", "--save_steps", "2", "--max_steps", "3"),
              "--method", "trades", "--pgd_steps", "2", *more]  # fmt: skip
    with pytest.raises(
        ValueError, match=r"trained with other settings than this run's: --method ard there, trades now"
    ):
        run_mixacm(*parse_with_config(argument_parser(), trades))
    with pytest.raises(ValueError, match=r"hyperparameters \{.*'pgd_steps': 2.*this one .*'pgd_steps': 3"):
        run_mixacm(*parse_with_config(argument_parser(), [*argv, "--pgd_steps", "3", *more]))
    assert run_mixacm(*parse_with_config(argument_parser(), [*argv, *more]))["steps"] == 3  # the same: continues


def test_teacher_settings_for_a_method_without_a_teacher_are_refused(tmp_path):
    from training.run_mixacm import main

    base = ["--output_dir", str(tmp_path / "out"), "--dataset", str(tmp_path / "none"), "--method", "trades"]
    for flags in (["--compile_teacher", "true"], ["--cross_dataset", "true"], ["--teacher_image_mean", "0", "0", "0"],
                  ["--teacher", "model_cards/teacher-wrn16-2-nfgsm-20ep"]):  # fmt: skip
        with pytest.raises(SystemExit, match=f"^error: --method trades learns from no teacher: {flags[0]} would be"):
            main([*base, *flags])
    with pytest.raises(SystemExit) as exited:  # --teacher '' says "none": no refusal (the run fails on its data)
        main([*base, "--teacher", ""])
    assert str(exited.value.code).startswith("error: Couldn't find any data file")
    assert unused_flags("ard", {"teacher", "compile_teacher", "teacher_architecture"}) == []  # ARD has a teacher


@pytest.mark.parametrize("method", ["kd", "ard", "rslad"])
def test_options_no_method_would_use_are_refused_when_the_arguments_are_built(tmp_path, method):
    """`--cross_dataset true` keeps ACM and drops the soft labels: a method of soft labels only would ignore it (the
    teacher's classes match) or fail later; `--label_smoothing_factor` is `Trainer`'s, and no method's loss uses it."""
    with pytest.raises(ValueError, match=f"--cross_dataset true .* --method {method} has no ACM term"):
        MixACMTrainingArguments(output_dir=str(tmp_path), method=method, cross_dataset=True)
    MixACMTrainingArguments(output_dir=str(tmp_path), method="mixacm", cross_dataset=True)  # MixACM keeps its ACM
    with pytest.raises(ValueError, match="--label_smoothing_factor 0.1 would be ignored: no method of mixacm-hf"):
        MixACMTrainingArguments(output_dir=str(tmp_path), method=method, label_smoothing_factor=0.1)


def test_a_zero_refused_weight_says_so_in_its_valid_range(tmp_path):
    """-1 used to be told "it must be >= 0" and then 0 refused: the range given is the method's."""
    for method, name, expected in (("trades", "trades_beta", "> 0"), ("ard", "ard_alpha", r"in \(0, 1\]"),
                                   ("rslad", "rslad_alpha", r"in \(0, 1\]"), ("kd", "alpha_kld", r"in \(0, 1\]"),
                                   ("n-fgsm", "nfgsm_noise", ">= 0")):  # fmt: skip
        with pytest.raises(ValueError, match=f"--{name} -1 is invalid: it must be {expected}"):
            MixACMTrainingArguments(output_dir=str(tmp_path), method=method, **{name: -1})


def test_a_config_files_values_the_method_ignores_are_named_in_a_warning(tmp_path, caplog):
    """One config file serves several methods, so its other methods' values are not refused; but they are said."""
    from training.run_mixacm import main

    config = tmp_path / "config.yaml"
    config.write_text("method: trades\nrslad_alpha: 0.5\nard_temperature: 5\ncompile_teacher: true\n")
    argv = ["--config", str(config), "--output_dir", str(tmp_path / "out"), "--dataset", str(tmp_path / "none")]
    with caplog.at_level(logging.WARNING), pytest.raises(SystemExit):
        main(argv)
    warned = [r.getMessage() for r in caplog.records if r.name == "run_mixacm"]
    assert len(warned) == 1 and f"--config {config} sets values this method ignores." in warned[0]
    assert "--ard_temperature (a hyperparameter of ard); --rslad_alpha (a hyperparameter of rslad)" in warned[0]
    assert "learns from no teacher: --compile_teacher would be ignored" in warned[0]


def test_an_unknown_flag_or_config_key_names_the_closest_valid_ones(tmp_path):
    from training.run_mixacm import main

    base = ["--output_dir", str(tmp_path / "out"), "--dataset", str(tmp_path / "none")]
    with pytest.raises(SystemExit, match=r"^error: Unknown arguments: --eps \(did you mean --pgd_eps or --eval_eps"):
        main([*base, "--eps", "8"])
    with pytest.raises(SystemExit, match=r"^error: Unknown arguments: --trades-betta \(did you mean --trades_beta"):
        main([*base, "--trades-betta=3"])
    config = tmp_path / "config.yaml"
    config.write_text("trades_betta: 3\n")
    keys = rf"^error: Unknown keys in the config file {re.escape(str(config))}: "
    keys += r"trades_betta \(did you mean trades_beta"
    with pytest.raises(SystemExit, match=keys):
        main([*base, "--config", str(config)])


def test_the_recorded_code_commit_is_the_one_the_run_started_with(tmp_path, data_and_teacher, monkeypatch):
    """A checkout that moves on while a long run goes on: the run recorded the commit at its end, not the code it
    had imported (here: git answers another commit after the training starts)."""
    from mixacm_hf import provenance, run

    folder, _ = data_and_teacher
    provenance.code_commit.cache_clear()
    started = dict(provenance.code_commit())
    provenance.code_commit.cache_clear()  # the run reads it itself
    real_run = subprocess.run

    def moved_on(args, *rest, **kwargs):
        if args[:2] == ["git", "rev-parse"]:
            return subprocess.CompletedProcess(args, 0, stdout="f" * 40 + "\n", stderr="")
        return real_run(args, *rest, **kwargs)

    def train_then_move(*args, **kwargs):
        monkeypatch.setattr(provenance.subprocess, "run", moved_on)
        return original_train(*args, **kwargs)

    original_train = run.MixACMTrainer.train
    monkeypatch.setattr(run.MixACMTrainer, "train", train_then_move)
    run_mixacm(*parse_with_config(argument_parser(), [*tiny_run_argv(folder, tmp_path / "out"), "--method", "trades"]))
    saved = json.loads((tmp_path / "out" / "train_summary.json").read_text())
    assert saved["code"]["commit"] == started["commit"] and saved["code"]["dirty"] == started["dirty"]
    assert saved["code"]["history"] == [{"from_step": 0, **started}]  # one part, trained by the code it started with
    provenance.code_commit.cache_clear()
    assert provenance.code_commit()["commit"] == "f" * 40  # git itself has moved on
    provenance.code_commit.cache_clear()
