"""What a training run promises (issue 35): a resumed run continues the same run (a checkpoint records the learning
rate, schedule, batches, processes, seed and data, and a resume that changes any of them is refused by name), and
the end-of-run evaluation measures the run's own threat model (its eps sweep follows --eval_norm/--eval_eps)."""

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from test_reliability import Crash, CrashAt, plain_images, tiny_run_argv, write_dataset

from mixacm_hf import MixACMTrainingArguments, WideResNetConfig, WideResNetForImageClassification
from mixacm_hf.cli import parse_with_config
from mixacm_hf.data import load_image_dataset
from mixacm_hf.provenance import code_commit
from mixacm_hf.run import evaluate_student, run_mixacm
from mixacm_hf.run_args import DataArguments, EvaluationArguments, argument_parser, eps_sweep, fold_deprecated

pytestmark = pytest.mark.usefixtures("single_thread")


# -- resume: the same run or none ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crashed(tmp_path_factory) -> tuple[Path, list[str]]:
    """A run of 4 steps (6 an epoch), checkpointed at step 2 and killed at step 3: its folder and command line."""
    root = tmp_path_factory.mktemp("crashed")
    folder = write_dataset(root / "data", {"train": plain_images(24), "test": plain_images(4)})
    argv = tiny_run_argv(folder, root / "out", "--save_strategy", "steps", "--save_steps", "2", "--max_steps", "4")
    with pytest.raises(Crash):
        run_mixacm(*parse_with_config(argument_parser(), argv), callbacks=[CrashAt(3).callback])
    assert sorted(path.name for path in (root / "out").glob("checkpoint-*")) == ["checkpoint-2"]
    return root, argv


def resumed_in_copy(crashed: tuple[Path, list[str]], name: str) -> tuple[Path, list[str]]:
    """A copy of the killed run's folder and the command line that resumes it there."""
    root, argv = crashed
    copy = root / name
    shutil.copytree(root / "out", copy)
    argv = [str(copy) if value == str(root / "out") else value for value in argv]
    return copy, [*argv, "--resume_from_checkpoint", "last"]


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--learning_rate", "0.5"], "--learning_rate 5e-05 there, 0.5 now"),
        (["--lr_scheduler_type", "cosine"], "--lr_scheduler_type linear there, cosine now"),
        (["--warmup_steps", "1"], "--warmup_steps 0 there, 1.0 now"),
        (["--max_steps", "5"], "--max_steps 4 there, 5 now"),
        (["--max_steps", "-1", "--num_train_epochs", "1"],
         "--num_train_epochs unset there, 1.0 now; --max_steps 4 there, unset now"),
        (["--per_device_train_batch_size", "8"], "--per_device_train_batch_size 4 there, 8 now"),
        (["--gradient_accumulation_steps", "2"], "--gradient_accumulation_steps 1 there, 2 now"),
        (["--seed", "1"], "--seed 42 there, 1 now"),
        (["--max_train_samples", "12"], "--max_train_samples unset there, 12 now"),
        (["--train_fraction", "0.5"], "--train_fraction unset there, 0.5 now"),
        (["--validation_fraction", "0.25"], "--validation_fraction unset there, 0.25 now"),
        (["--validation_split", "valid"], "--validation_split unset there, valid now"),
        (["--adam_beta1", "0.8"], "--adam_beta1 0.9 there, 0.8 now"),
        (["--max_grad_norm", "0.5"], "--max_grad_norm 1.0 there, 0.5 now"),
        (["--optim_args", "momentum=0.5"], "--optim_args unset there, momentum=0.5 now"),
        (["--bf16", "true"], "--bf16 False there, True now"),
        (["--student", "wrn-10-2"], "--student (its weight and config files' sha256, or its name) wrn-10-1 there, "
         "wrn-10-2 now"),
    ],
)  # fmt: skip
def test_a_resume_that_changes_the_run_is_refused_naming_each_change(crashed, flags, named):
    root, argv = crashed
    before = {path: path.read_bytes() for path in (root / "out").rglob("*") if path.is_file()}
    with pytest.raises(ValueError) as error:
        run_mixacm(*parse_with_config(argument_parser(), [*argv, "--resume_from_checkpoint", "last", *flags]))
    message = str(error.value)
    assert message.startswith(f"--resume_from_checkpoint {root / 'out' / 'checkpoint-2'} was trained with other")
    assert f"settings than this run's: {named}. A resumed run must continue the same run: rerun with the " in message
    assert message.endswith("checkpoint's values, or start a new run in another --output_dir.")
    assert {path: path.read_bytes() for path in (root / "out").rglob("*") if path.is_file()} == before


def test_a_resume_with_another_teacher_is_refused_by_its_contents_not_its_path(tmp_path):
    """The teacher is recorded by its files' sha256: a copy of it elsewhere resumes, other weights are refused."""
    from mixacm_hf.resume import RunSettings, check_resumed_settings
    from mixacm_hf.run import ModelArguments, run_settings

    def teacher(folder: Path, seed: int) -> str:
        torch.manual_seed(seed)
        WideResNetForImageClassification(WideResNetConfig.from_name("wrn-10-1", num_labels=10)).save_pretrained(folder)
        return str(folder)

    first, other = teacher(tmp_path / "a", 0), teacher(tmp_path / "b", 1)
    copy = shutil.copytree(first, tmp_path / "copy")
    (tmp_path / "data").mkdir()
    data = DataArguments(dataset=str(tmp_path / "data"))
    args = MixACMTrainingArguments(output_dir=str(tmp_path / "out"), method="kd", use_cpu=True, report_to=[])
    settings = run_settings(data, args, ModelArguments(teacher=first))
    assert settings["teacher"].startswith("sha256:") and len(settings["teacher"]) == 71
    checkpoint = tmp_path / "checkpoint-1"
    checkpoint.mkdir()
    state = {"stateful_callbacks": {"RunSettings": RunSettings(settings).state()}}
    (checkpoint / "trainer_state.json").write_text(json.dumps(state))
    check_resumed_settings(checkpoint, run_settings(data, args, ModelArguments(teacher=str(copy))))
    with pytest.raises(ValueError) as error:
        check_resumed_settings(checkpoint, run_settings(data, args, ModelArguments(teacher=other)))
    assert f"--teacher (its weight and config files' sha256, or its name) {settings['teacher']} there, sha256:" in str(
        error.value
    )


def test_a_resume_on_other_data_or_processes_is_refused(crashed, monkeypatch):
    root, argv = crashed
    other = write_dataset(root / "other", {"train": plain_images(25), "test": plain_images(4)})
    with pytest.raises(ValueError, match="--dataset data-local-copy there, other-local-copy now; --dataset's files"):
        args = [*argv, "--resume_from_checkpoint", "last", "--dataset", str(other)]
        run_mixacm(*parse_with_config(argument_parser(), args))
    parsed = parse_with_config(argument_parser(), [*argv, "--resume_from_checkpoint", "last"])
    monkeypatch.setattr(MixACMTrainingArguments, "world_size", property(lambda self: 2))
    with pytest.raises(ValueError, match=r"other settings than this run's: the number of processes \(world size\) "):
        run_mixacm(*parsed)


def test_a_resume_with_the_same_settings_continues_the_run(crashed):
    out, argv = resumed_in_copy(crashed, "same")
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    recorded = state["stateful_callbacks"]["RunSettings"]["args"]["settings"]
    assert recorded["max_steps"] == 4 and recorded["num_train_epochs"] is None and recorded["world_size"] == 1
    assert recorded["dataset"] == "data-local-copy" and len(recorded["dataset_files"]) == 12
    assert run_mixacm(*parse_with_config(argument_parser(), argv))["steps"] == 4


def test_a_checkpoint_without_a_record_resumes_with_a_warning(crashed, caplog):
    out, argv = resumed_in_copy(crashed, "older")
    state_file = out / "checkpoint-2" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    del state["stateful_callbacks"]["RunSettings"]  # as written before the settings were recorded
    del state["stateful_callbacks"]["CodeHistory"]  # ... and before the code of each part was
    state_file.write_text(json.dumps(state))
    with caplog.at_level(logging.WARNING, logger="mixacm_hf.run_args"):
        summary = run_mixacm(*parse_with_config(argument_parser(), [*argv, "--learning_rate", "0.5"]))
    assert summary["steps"] == 4
    assert f"{out / 'checkpoint-2'} records no run settings (written by an older version)" in caplog.text
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())  # its next checkpoint records them
    assert state["stateful_callbacks"]["RunSettings"]["args"]["settings"]["learning_rate"] == 0.5
    parts = [  # the steps before the recording part are said to be unrecorded, not left out
        {"from_step": 0, "commit": None, "dirty": None}, {"from_step": 2, **code_commit()}
    ]  # fmt: skip
    assert state["stateful_callbacks"]["CodeHistory"]["attributes"]["parts"] == summary["code"]["history"] == parts


# -- the evaluation's budgets: those of the run's threat model --------------------------------------------------------


def test_the_default_sweep_follows_the_norm_and_eps():
    assert eps_sweep(EvaluationArguments(), 32) == [0.0, 2 / 255, 4 / 255, 8 / 255, 16 / 255]
    assert eps_sweep(EvaluationArguments(eval_eps=4 / 255), 32) == [0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255]
    assert eps_sweep(EvaluationArguments(eval_norm="L2", eval_eps=0.5), 32) == [0.0, 0.125, 0.25, 0.5, 1.0]
    assert eps_sweep(EvaluationArguments(eval_eps=0.5), 32) == [0.0, 0.125, 0.25, 0.5]  # 1 spans every image
    assert eps_sweep(EvaluationArguments(eval_eps_sweep="0, 1/255"), 32) == [0.0, 1 / 255]
    assert eps_sweep(EvaluationArguments(eval_eps_sweep=""), 32) is None


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--eval_norm", "L2", "--eval_eps", "0.5", "--eval_eps_sweep", "0,60"],
         "--eval_eps_sweep: eps=60 is an L2 distance of at least 55.43, from an all-black to an all-white image of "
         "3072 values in [0, 1]"),
        (["--eval_norm", "L2", "--eval_eps", "56"], "--eval_eps: eps=56 is an L2 distance of at least 55.43"),
        (["--eval_eps_sweep", "0,2"], "--eval_eps_sweep: eps=2 spans the whole [0, 1] pixel range"),
    ],
)  # fmt: skip
def test_budgets_beyond_the_norms_range_are_refused_before_any_loading(tmp_path, flags, named):
    argv = ["--dataset", str(tmp_path / "absent"), "--output_dir", str(tmp_path / "out"), "--method", "natural"]
    with pytest.raises(ValueError) as error:
        run_mixacm(*parse_with_config(argument_parser(), [*argv, *flags]))
    assert str(error.value).startswith(named)


def test_an_l2_runs_sweep_reaches_its_eps(tmp_path):
    folder = write_dataset(tmp_path / "data", {"test": plain_images(4)})
    dataset = load_image_dataset(str(folder), "test", train=False)
    model = WideResNetForImageClassification(WideResNetConfig.from_name("wrn-10-1", num_labels=10)).eval()
    eval_args = EvaluationArguments(eval_attacks="clean,fgsm", eval_norm="L2", eval_eps=0.5, eval_n=4)
    training_args = MixACMTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], disable_tqdm=True)
    [report] = evaluate_student(model, dataset, eval_args, DataArguments(dataset=str(folder)), training_args)
    assert report.norm == "L2" and report.eps == 0.5
    assert report.eps_sweep["eps"] == [0.0, 0.125, 0.25, 0.5, 1.0]
    assert len(report.eps_sweep["robust_accuracy"]["fgsm"]) == 5


# -- arguments refused before any work ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flag", ["per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"]
)
def test_zero_batch_sizes_and_accumulation_are_refused_by_name(tmp_path, flag):
    """A zero batch size or accumulation would fail deep in training or after it (the evaluation): refused up front,
    naming the flag."""
    from mixacm_hf.run_args import check_arguments

    argv = tiny_run_argv(tmp_path / "data", tmp_path / "out", f"--{flag}", "0")
    with pytest.raises(ValueError, match=f"--{flag} 0: must be >= 1"):
        check_arguments(*parse_with_config(argument_parser(), argv))


def test_several_processes_that_would_each_train_alone_are_refused(tmp_path, monkeypatch):
    """torchrun on a machine without GPUs and without --use_cpu true: every process would train alone and write the
    same folder. Refused, saying what to pass."""
    from mixacm_hf.run_args import check_arguments

    argv = tiny_run_argv(tmp_path / "data", tmp_path / "out")
    argv = [a for i, a in enumerate(argv) if a != "--use_cpu" and argv[i - 1] != "--use_cpu"]
    args = parse_with_config(argument_parser(), argv)
    assert args[2].world_size == 1  # one process's view, read before the launcher's variable is set
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="Launched as 2 processes, but each would train alone.*--use_cpu true"):
        check_arguments(*args)


@pytest.mark.parametrize("sweep", ["0,2/255,4/255,8/255", "0,16/255"])
def test_an_l2_sweep_in_linf_units_is_refused_by_both_scripts(tmp_path, sweep):
    from training.evaluate_robustness import main as evaluate_main

    argv = ["--dataset", str(tmp_path / "absent"), "--output_dir", str(tmp_path / "out"), "--method", "natural"]
    flags = ["--eval_norm", "L2", "--eval_eps", "0.5", "--eval_eps_sweep", sweep]
    with pytest.raises(ValueError) as error:
        run_mixacm(*parse_with_config(argument_parser(), [*argv, *flags]))
    assert str(error.value).startswith("--eval_eps_sweep: its largest budget 0.0") and (
        "below a quarter of --eval_eps 0.5, the L2 budget reported: Linf-sized budgets (e.g. 8/255) for an L2 "
        "evaluation? L2 budgets are L2 distances in pixel units: give budgets around 0.5 (e.g. 0,0.125,0.25,0.5) or "
        "leave --eval_eps_sweep out."
    ) in str(error.value)
    with pytest.raises(SystemExit) as exit_:
        evaluate_main(["--model", str(tmp_path), "--dataset", str(tmp_path), "--norm", "L2", "--eps", "0.5",
                       "--eps_sweep", sweep])  # fmt: skip
    assert "error: --eps_sweep: its largest budget" in str(exit_.value.code)
    assert "below a quarter of --eps 0.5" in str(exit_.value.code) and "--eval" not in str(exit_.value.code)
    assert eps_sweep(EvaluationArguments(eval_norm="L2", eval_eps=0.5, eval_eps_sweep="0,0.25,1"), 32) == [0, 0.25, 1]


# -- one name per concept: the deprecated flags ------------------------------------------------------------------------


def test_autoattack_in_eval_attacks_runs_at_eval_eps_only_in_a_report_of_its_own(tmp_path):
    """AutoAttack is asked for in --eval_attacks like any attack: the others are swept, AutoAttack (a sweep of it
    costs too much) runs with them at --eval_eps only."""
    folder = write_dataset(tmp_path / "data", {"test": plain_images(4)})
    dataset = load_image_dataset(str(folder), "test", train=False)
    model = WideResNetForImageClassification(WideResNetConfig.from_name("wrn-10-1", num_labels=10)).eval()
    eval_args = EvaluationArguments(eval_attacks="clean,fgsm,autoattack:apgd-ce", eval_n=4, eval_eps_sweep="0,8/255")
    training_args = MixACMTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], disable_tqdm=True)
    swept, at_eps = evaluate_student(model, dataset, eval_args, DataArguments(dataset=str(folder)), training_args)
    assert list(swept.attacks) == ["clean", "fgsm"] and swept.eps_sweep["eps"] == [0.0, 8 / 255]
    assert list(at_eps.attacks) == ["clean", "fgsm", "autoattack:apgd-ce"] and at_eps.eps_sweep is None
    assert at_eps.robust_accuracy["fgsm"] == swept.robust_accuracy["fgsm"]  # the same images, seed and budget


def test_the_deprecated_spellings_work_once_with_a_warning_naming_the_new_one(tmp_path):
    """--max_eval_samples caps --eval_n (the one cap on evaluation images); --eval_autoattack true adds autoattack
    to --eval_attacks; a bad deprecated value is refused naming both spellings."""
    argv = ["--dataset", str(tmp_path), "--output_dir", str(tmp_path / "out"), "--method", "natural"]
    _, data_args, _, eval_args = parse_with_config(
        argument_parser(), [*argv, "--max_eval_samples", "8", "--eval_autoattack", "true", "--eval_attacks", "clean"]
    )
    with pytest.warns(FutureWarning) as caught:
        fold_deprecated(data_args, eval_args)
    assert [str(w.message) for w in caught] == [
        "--max_eval_samples is deprecated: use --eval_n (the one cap on evaluation images).",
        "--eval_autoattack is deprecated: use --eval_attacks clean,autoattack.",
    ]
    assert (eval_args.eval_n, eval_args.eval_attacks, data_args.max_eval_samples) == (8, "clean,autoattack", None)
    fold_deprecated(data_args, eval_args)  # folded once: nothing left to warn of
    assert (eval_args.eval_n, eval_args.eval_attacks) == (8, "clean,autoattack")
    _, _, _, eval_args = parse_with_config(argument_parser(), [*argv, "--eval_autoattack", "false"])
    with pytest.warns(FutureWarning, match=r"^--eval_autoattack is deprecated: leave it out"):  # not silently taken
        fold_deprecated(data_args, eval_args)
    assert eval_args.eval_attacks == EvaluationArguments().eval_attacks
    _, data_args, _, eval_args = parse_with_config(argument_parser(), [*argv, "--max_eval_samples", "0"])
    with pytest.raises(ValueError, match=r"^--max_eval_samples 0: give a positive number .* --eval_n, its new name"):
        fold_deprecated(data_args, eval_args)


def test_one_spelling_in_help_and_hyphenated_flags_still_read_once_with_a_warning(tmp_path):
    """--help lists each flag with underscores only (HfArgumentParser's --a-b aliases go); a hyphenated flag on the
    command line or a hyphenated key in --config is read as its underscore spelling, with a FutureWarning naming it."""
    parser = argument_parser()
    assert "--eval-n" not in parser.format_help() and "--eval_n" in parser.format_help()
    assert not [option for action in parser._actions for option in action.option_strings if "-" in option[2:]]
    config = tmp_path / "config.yaml"
    config.write_text("num-train-epochs: 3\n")
    argv = ["--config", str(config), "--dataset", "d", "--output_dir", str(tmp_path), "--eval-n", "7"]
    with pytest.warns(FutureWarning) as caught:
        _, _, training_args, eval_args = parse_with_config(argument_parser(), argv)
    assert (eval_args.eval_n, training_args.num_train_epochs) == (7, 3)
    assert sorted(str(w.message) for w in caught if w.category is FutureWarning) == [
        "--eval-n is deprecated: use --eval_n", "--num-train-epochs is deprecated: use --num_train_epochs",
    ]  # fmt: skip
