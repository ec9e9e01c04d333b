"""The evaluation script at scale: resuming after a kill, and sharding over processes with torchrun."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mixacm_hf.robustness import RobustnessReport
from mixacm_hf.robustness.batches import Progress
from mixacm_hf.robustness.registry import AttackSpec

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "training" / "evaluate_robustness.py"
sys.path.insert(0, str(REPO))
from training.evaluate_robustness import _attach_negative_values, argument_parser  # noqa: E402
from training.evaluate_robustness import main as evaluate_main  # noqa: E402

N_EXAMPLES, BATCH_SIZE = 21, 4  # 6 batches, the last one short; 21 is not divisible by 2 x 4
BATCHES = 6


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, list[str]]:
    """A tiny WRN folder, a 24-image parquet split and the command-line arguments that evaluate it."""
    import datasets
    from PIL import Image

    from mixacm_hf import WideResNetConfig, WideResNetForImageClassification

    root = tmp_path_factory.mktemp("scale")
    torch.manual_seed(0)
    WideResNetForImageClassification(WideResNetConfig.from_name("wrn-10-1", num_labels=10)).save_pretrained(
        root / "model"
    )
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (24, 32, 32, 3), generator=generator, dtype=torch.uint8)
    split = datasets.Dataset.from_dict(
        {"img": [Image.fromarray(image.numpy()) for image in images], "label": list(range(10)) * 2 + [0, 1, 2, 3]}
    ).cast_column("img", datasets.Image())
    split.to_parquet(str(root / "data" / "test-00000-of-00001.parquet"))
    args = ["--model", str(root / "model"), "--dataset", str(root / "data"), "--attacks", "clean,fgsm,pgd-2"]
    args += ["--n_examples", str(N_EXAMPLES), "--batch_size", str(BATCH_SIZE), "--device", "cpu"]
    return root, args


@pytest.fixture(scope="module")
def uninterrupted(setup) -> RobustnessReport:
    root, args = setup
    return evaluate_main([*args, "--output", str(root / "uninterrupted.json")])


# training/evaluate_robustness.py, SIGKILLed by itself right after saving its KILL_AFTER_BATCHES-th batch
KILLED_SCRIPT = f"""
import os, runpy, signal, sys
from mixacm_hf.robustness.batches import Progress

save = Progress.save


def save_then_die(self, *args):
    save(self, *args)
    if self.saved == int(os.environ["KILL_AFTER_BATCHES"]):
        os.kill(os.getpid(), signal.SIGKILL)


Progress.save = save_then_die
sys.argv[0] = {str(SCRIPT)!r}
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def script_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **extra}


def test_killed_evaluation_resumes_without_rerunning_finished_batches(setup, uninterrupted, monkeypatch):
    root, args = setup
    output = root / "resumed.json"
    partial = root / "resumed.json.partial"
    # the clean pass (6 batches) and FGSM's first 2 batches are saved, then the process is SIGKILLed
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_SCRIPT, *args, "--output", str(output)],
        env=script_env(KILL_AFTER_BATCHES=str(BATCHES + 2)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not output.exists() and len(list(partial.glob("*-batch*.json"))) == BATCHES + 2
    saved_seconds = {
        name: sum(json.loads(path.read_text())["seconds"] for path in partial.glob(f"{name}-eps*-batch*.json"))
        for name in ("clean", "fgsm")
    }
    assert saved_seconds["clean"] > 0 and saved_seconds["fgsm"] > 0

    calls = []
    original = AttackSpec.run

    def counted(spec, model, x, y, eps, norm, seed):
        calls.append((spec.name, eps, seed))
        return original(spec, model, x, y, eps, norm, seed)

    monkeypatch.setattr(AttackSpec, "run", counted)
    resumed = evaluate_main([*args, "--output", str(output)])
    assert resumed.per_example == uninterrupted.per_example
    assert RobustnessReport.load(output).per_example == uninterrupted.per_example
    eps = resumed.eps
    assert not [call for call in calls if call[0] == "clean"]  # the finished clean pass is not re-run
    # the time of the batches run before the kill is counted, not the instant of loading them
    assert resumed.seconds["clean"] == pytest.approx(saved_seconds["clean"])
    assert resumed.seconds["fgsm"] > saved_seconds["fgsm"]
    assert sorted(seed for name, e, seed in calls if name == "fgsm" and e == eps) == [2, 3, 4, 5]  # batches 2..5
    assert len([call for call in calls if call[0] == "pgd-2"]) == BATCHES
    assert not partial.exists()


def test_resume_refuses_progress_of_other_settings(setup):
    root, args = setup
    partial = root / "other.json.partial"
    evaluate_main([*args, "--output", str(root / "other.json")])
    partial.mkdir()
    (partial / "config.json").write_text("{}")
    with pytest.raises(SystemExit, match="^error: .*other settings .* delete the folder"):
        evaluate_main([*args, "--output", str(root / "other.json")])


def test_default_output_keeps_no_progress_and_ignores_stale_progress(setup, monkeypatch):
    root, args = setup
    workdir = root / "default"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    stale = workdir / "report.json.partial"
    stale.mkdir()
    (stale / "config.json").write_text('{"settings": "of another evaluation"}')
    monkeypatch.setattr(Progress, "save", lambda *a: pytest.fail("progress saved without --output"))
    report = evaluate_main([*args, "--n_examples", "4", "--attacks", "clean"])
    assert RobustnessReport.load(workdir / "report.json").per_example == report.per_example
    assert (stale / "config.json").read_text() == '{"settings": "of another evaluation"}'  # neither read nor removed
    assert "(default: report.json in the current folder). Only when given, progress is kept in" in " ".join(
        argument_parser().format_help().split()
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--eps", "8"], r"^error: --eps=8 spans the whole \[0, 1\] pixel range"),
        (["--eps", "-1/255"], r"^error: --eps must be a finite number >= 0, got -0.0039"),
        (["--attacks", "clean,pgd-0"], r"^error: --attacks: .*pgd-0"),
        (["--attacks", "clean,nosuch"], r"^error: --attacks: .*nosuch"),
        (["--n_examples", "25"], r"^error: --n_examples 25 but the split test has 24 examples: pass at most 24"),
        (["--model", "no-such-model"], r"^error: Cannot load the model 'no-such-model'"),
        (["--model", "/no/such/folder"], r"^error: Model '/no/such/folder' is neither an existing folder"),
    ],
)
def test_clear_errors_exit_with_their_message_and_no_traceback(setup, extra, message, monkeypatch):
    root, args = setup
    monkeypatch.setattr(AttackSpec, "run", lambda *a: pytest.fail("an attack ran"))
    with pytest.raises(SystemExit, match=message) as exited:
        evaluate_main([*args, "--output", str(root / "errors.json"), *extra])
    assert "teacher" not in str(exited.value.code).lower()


def test_bad_model_path_exits_with_status_1_naming_the_evaluated_model(setup, tmp_path):
    root, args = setup
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--model", "out/missing-model", "--output", "r.json"],
        env=script_env(), capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stderr.startswith("error: Cannot load the model 'out/missing-model'")
    assert "teacher" not in result.stderr.lower()


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--batch_size", "0"], "argument --batch_size: 0 is not a positive integer"),
     (["--n_examples", "0"], "argument --n_examples: 0 is not a positive integer")],
)  # fmt: skip
def test_non_positive_batch_size_and_count_are_refused_by_the_parser(setup, extra, message, capsys):
    root, args = setup
    with pytest.raises(SystemExit) as exited:
        evaluate_main([*args, *extra])
    assert exited.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("script", "old", "new", "value"),
    [("evaluate", "--batch-size", "--batch_size", "16"), ("evaluate", "--n", "--n_examples", "5"),
     ("evaluate", "--eps-sweep", "--eps_sweep", "0,8/255"), ("evaluate", "--update-card", "--update_card", None),
     ("convert", "--image-mean", "--image_mean", None),
     ("convert", "--reported-robustness", "--reported_robustness", None)],
)  # fmt: skip
def test_old_hyphenated_spellings_still_work_once_with_a_warning_naming_the_new_one(script, old, new, value):
    """Every flag is spelled with underscores (as training/run_mixacm.py's); the old spellings are read as the new
    ones, with a FutureWarning naming both."""
    from mixacm_hf.cli import renamed_flags
    from training import convert_teacher, evaluate_robustness

    module = evaluate_robustness if script == "evaluate" else convert_teacher
    flags = {flag for action in module.argument_parser()._actions for flag in action.option_strings}
    assert new in flags and old not in flags
    token = f"{old}={value}" if value is not None else old
    with pytest.warns(FutureWarning, match=f"{old} is deprecated: use {new}"):
        renamed = renamed_flags(["--model", "m", token], module.RENAMED)
    assert renamed == ["--model", "m", f"{new}={value}" if value is not None else new]


def test_empty_eps_sweep_is_no_sweep_and_negative_budgets_reach_the_parser():
    parse = argument_parser().parse_args
    base = ["--model", "m", "--dataset", "d"]
    assert parse([*base, "--eps_sweep", ""]).eps_sweep is None
    assert parse([*base, "--eps_sweep", "0,8/255"]).eps_sweep == pytest.approx([0, 8 / 255])
    assert _attach_negative_values([*base, "--eps", "-1/255", "--eps_sweep", "-2/255,0"]) == [
        *base, "--eps=-1/255", "--eps_sweep=-2/255,0",
    ]  # fmt: skip
    assert parse(_attach_negative_values([*base, "--eps", "-1/255"])).eps == pytest.approx(-1 / 255)


def test_torchrun_two_processes_give_the_records_of_one(setup, uninterrupted):
    root, args = setup
    output = root / "sharded.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(SCRIPT)]
    result = subprocess.run(
        [*command, *args, "--output", str(output)], env=script_env(), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sharded = RobustnessReport.load(output)
    assert sharded.n_examples == N_EXAMPLES and sharded.processes == 2 and uninterrupted.processes == 1
    assert sharded.per_example == uninterrupted.per_example
    assert sharded.robust_accuracy == uninterrupted.robust_accuracy
    assert result.stdout.count("Wrote ") == 1  # one report, written by rank 0


def _gather_on_rank(rank: int, world: int, init_file: str, fail_rank: int | None, results: str) -> None:
    """A process of `test_gather_from_ranks_*`: rank `fail_rank` reports a failure from outside the gathering that
    its peer is in (as a process failing before any attack's gathering does); each rank writes what it got."""
    from mixacm_hf.robustness.batches import RankFailure, gather_from_ranks

    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        failure = ValueError(f"broken on {rank}") if rank == fail_rank else None
        outcome = {"gathered": gather_from_ranks({"rank": rank}, failure)}
    except RankFailure as error:
        outcome = {"error": str(error), "chained": repr(error.__cause__)}
    finally:
        torch.distributed.destroy_process_group()
    Path(results, f"rank{rank}.json").write_text(json.dumps(outcome))


@pytest.mark.parametrize("fail_rank", [None, 1])
def test_gather_from_ranks_raises_the_same_error_on_every_rank(tmp_path, fail_rank):
    """Two gloo processes: without failures each gets both payloads in rank order; when one fails, both raise
    `RankFailure` with the same message naming that rank and its error (its own error chained), none hangs."""
    torch.multiprocessing.spawn(
        _gather_on_rank, args=(2, str(tmp_path / "init"), fail_rank, str(tmp_path)), nprocs=2, join=True
    )
    outcomes = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    if fail_rank is None:
        assert outcomes[0] == outcomes[1] == {"gathered": [{"rank": 0}, {"rank": 1}]}
    else:
        assert outcomes[0]["error"] == outcomes[1]["error"] == (
            "failed on 1 of 2 processes: rank 1: ValueError: broken on 1"
        )  # fmt: skip
        assert outcomes[0]["chained"] == "None" and outcomes[1]["chained"] == "ValueError('broken on 1')"
