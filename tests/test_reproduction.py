"""The CPU reproduction (benchmarks/reproduce_cifar10_cpu.py, benchmarks/reporting.py): result rows, committed
results, the layout of model folders (one copy of every artefact), the default teacher."""

import hashlib
import json
import math
import shlex
import statistics
import subprocess
import sys
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from benchmarks import reporting
from benchmarks import reproduce_cifar10_cpu as reproduction
from mixacm_hf.hub import load_reports
from mixacm_hf.robustness import RobustnessReport

REPO = Path(__file__).resolve().parents[1]
ROW_KEYS = {
    "name", "role", "method", "arch", "params", "epochs", "train_seconds", "images_per_second", "clean", "fgsm",
    "pgd20", "autoattack", "n_eval", "n_eval_autoattack", "seed", "teacher", "train_fraction", "hyperparameters",
    "code_commit", "code_history", "summary_commit", "shared_machine", "command", "train_command",
    "backward_passes_per_image",
}  # fmt: skip
RESULTS = REPO / "benchmarks" / "results" / "cifar10_cpu.json"
CPU_CONFIG = REPO / "training" / "configs" / "cifar10_cpu_wrn16-2.yaml"


@pytest.fixture
def layout(tmp_path, monkeypatch):
    """The reproduction's folders (runs, model cards, results) under tmp_path."""
    for name, path in [("REPO", tmp_path), ("RUNS", tmp_path / "runs"), ("MODEL_CARDS", tmp_path / "model_cards")]:
        monkeypatch.setattr(reproduction, name, path)
    return tmp_path


def _report(accuracies: dict[str, float], n: int, dataset: str = reproduction.DEFAULT_DATASET) -> dict:
    return RobustnessReport(
        clean_accuracy=0.6, robust_accuracy=accuracies, n_examples=n, eps=8 / 255, norm="Linf", attacks={},
        seconds={}, seed=0, dataset={"name": dataset, "split": "test"},
    ).to_dict()  # fmt: skip


def test_result_row_has_the_issue_keys_and_measured_values(tmp_path, monkeypatch):
    monkeypatch.setattr(reproduction, "RUNS", tmp_path)
    stage = next(s for s in reproduction.STAGES if s.name == "wrn16-2-mixacm")
    command = partial(reproduction.reproduce_command, stage)  # given the dataset the evaluation recorded
    assert reporting.result_row(stage, command) is None  # not trained yet
    folder = tmp_path / stage.name
    folder.mkdir()
    summary = {"params": 691674, "epochs": 10.0, "train_seconds": 2400.0, "images_per_second": 208.3,
               "teacher": "model_cards/teacher-wrn16-2-nfgsm", "code": {"commit": "abc123", "dirty": False},
               "hyperparameters": {"method": "mixacm", "alpha_acm": 5000.0, "pgd_steps": 7, "seed": 0}}  # fmt: skip
    (folder / "train_summary.json").write_text(json.dumps(summary))
    assert reporting.result_row(stage, command) is None  # trained, not evaluated
    reports = [_report({"fgsm": 0.4, "pgd-20": 0.35, "all": 0.35}, 1000)]
    (folder / "robustness.json").write_text(json.dumps(reports))
    row = reporting.result_row(stage, command)
    assert set(row) == ROW_KEYS
    assert (row["autoattack"], row["n_eval_autoattack"]) == (None, 0)  # AutoAttack still to come
    reports.append(_report({"pgd-20": 0.36, "autoattack": 0.31, "all": 0.31}, 500))
    (folder / "robustness.json").write_text(json.dumps(reports))
    row = reporting.result_row(stage, command)
    assert row["role"] == "student" and row["method"] == "mixacm" and row["arch"] == "wrn-16-2"
    assert (row["clean"], row["fgsm"], row["pgd20"], row["n_eval"]) == (0.6, 0.4, 0.35, 1000)  # the 1000-image report
    assert (row["autoattack"], row["n_eval_autoattack"]) == (0.31, 500)
    assert (row["train_seconds"], row["params"], row["seed"]) == (2400.0, 691674, 0)
    assert row["command"] == "python benchmarks/reproduce_cifar10_cpu.py --only wrn16-2-mixacm"
    (folder / "robustness.json").write_text(json.dumps([_report({"fgsm": 0.4, "pgd-20": 0.35}, 1000, "org/cifar")]))
    assert reporting.result_row(stage, command)["command"].endswith("--only wrn16-2-mixacm --dataset org/cifar")
    assert (row["teacher"], row["train_fraction"], row["code_commit"]) == ("teacher-wrn16-2-nfgsm", 1.0, "abc123")
    assert row["hyperparameters"] == {"alpha_acm": 5000.0, "seed": 0}  # as the card records them: no pgd_steps
    table = reporting.markdown_table([row])
    assert "| 60.0 | 40.0 | 35.0 | 31.0 (500) |" in table and "89.9 / 48.1 / 43.6" in table  # ours, then the paper's


def test_evaluation_is_skipped_when_measured_unless_a_published_stage_lacks_its_eps_sweep(layout, monkeypatch):
    calls = []
    monkeypatch.setattr("mixacm_hf.hub.update_model_card", lambda *args, **kwargs: None)
    monkeypatch.setattr(
        "mixacm_hf.robustness.evaluate_robustness",
        lambda path, dataset, attacks, **kwargs: calls.append((path, attacks[-1], kwargs["eps_sweep"])),
    )
    stage = reproduction.Stage("s", "student", "mixacm", "wrn-16-2")
    folder = layout / "runs" / "s"
    folder.mkdir(parents=True)
    (folder / "train_summary.json").write_text("{}")
    (folder / "robustness.json").write_text(json.dumps([_report({"fgsm": 0.4, "pgd-20": 0.35, "all": 0.35}, 1000)]))
    reproduction.evaluate(stage, reproduction.DEFAULT_DATASET, "fgsm")
    assert calls == []  # measured
    stage.publish = True  # published after its evaluation: its card's eps-sweep plot is still missing
    (layout / "model_cards" / "s").mkdir(parents=True)
    (layout / "model_cards" / "s" / "model.safetensors").write_bytes(b"weights")  # the model is evaluated there
    reproduction.evaluate(stage, reproduction.DEFAULT_DATASET, "fgsm")
    reproduction.evaluate(stage, reproduction.DEFAULT_DATASET, "autoattack")
    published = str(layout / "model_cards" / "s")
    assert calls == [(published, "pgd-20", reproduction.EPS_SWEEP), (published, "autoattack", None)]


def test_a_killed_evaluation_keeps_its_progress_and_a_finished_one_removes_it(layout, monkeypatch):
    """The evaluation keeps per-batch progress in the run folder (resumed by the next identical run) until its
    report is written."""
    seen = []

    def evaluate(path, dataset, attacks, *, resume_dir, **kwargs):
        Path(resume_dir).mkdir(parents=True)
        (Path(resume_dir) / "batch-0.json").write_text("{}")
        seen.append(Path(resume_dir))
        raise KeyboardInterrupt  # killed mid-way

    monkeypatch.setattr("mixacm_hf.robustness.evaluate_robustness", evaluate)
    monkeypatch.setattr("mixacm_hf.hub.update_model_card", lambda *args, **kwargs: None)
    stage = reproduction.Stage("s", "student", "mixacm", "wrn-16-2")
    (layout / "runs" / "s").mkdir(parents=True)
    (layout / "runs" / "s" / "train_summary.json").write_text("{}")
    with pytest.raises(KeyboardInterrupt):
        reproduction.evaluate(stage, reproduction.DEFAULT_DATASET, "autoattack")
    assert seen == [layout / "runs" / "s" / "evaluation-progress-autoattack"] and (seen[0] / "batch-0.json").exists()
    monkeypatch.setattr(
        "mixacm_hf.robustness.evaluate_robustness",
        lambda path, dataset, attacks, *, resume_dir, **kwargs: seen.append(Path(resume_dir)),
    )
    reproduction.evaluate(stage, reproduction.DEFAULT_DATASET, "autoattack")
    assert seen[1] == seen[0] and not seen[0].exists()  # the same folder resumed, then removed with the report


def test_a_claim_stage_without_per_example_records_is_evaluated_again_without_its_sweep(layout, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr("mixacm_hf.hub.update_model_card", lambda *args, **kwargs: None)
    monkeypatch.setattr(
        "mixacm_hf.robustness.evaluate_robustness",
        lambda path, dataset, attacks, **kwargs: calls.append((attacks[-1], kwargs["eps_sweep"])),
    )
    stage = reproduction.Stage("s", "student", "mixacm", "wrn-16-2", publish=True)
    folder = layout / "runs" / "s"
    folder.mkdir(parents=True)
    (folder / "train_summary.json").write_text("{}")
    report = {
        **_report({"fgsm": 0.4, "pgd-20": 0.35, "all": 0.35}, 1000),
        "eps_sweep": {"eps": [0.0], "robust_accuracy": {}},
    }
    (folder / "robustness.json").write_text(json.dumps([report]))
    reproduction.evaluate(stage, reproduction.DEFAULT_DATASET, "fgsm")
    assert calls == []  # not a member of the claim: its old report stands
    monkeypatch.setattr(reproduction, "CLAIM_MEMBERS", {"s"})
    reproduction.evaluate(stage, reproduction.DEFAULT_DATASET, "fgsm")
    assert calls == [("pgd-20", None)]  # measured again for its records; the sweep it has is not redone
    assert "on 1000 images again: per-example records missing" in capsys.readouterr().out  # and says why
    (folder / "robustness.json").write_text(json.dumps([report, {**report, "per_example": {"index": [0]}}]))
    reproduction.evaluate(stage, reproduction.DEFAULT_DATASET, "fgsm")
    assert calls == [("pgd-20", None)]  # now it has them


def test_student_commands_share_epochs_schedule_and_precision():
    students = [s for s in reproduction.STAGES if s.role == "student"]
    commands = [s.command(reproduction.DEFAULT_DATASET) for s in students]
    for stage, command in zip(students, commands):
        epochs = int(command[command.index("--num_train_epochs") + 1])
        assert epochs == stage.epochs and (epochs == reproduction.EPOCHS) != (stage.name in reproduction.EQUAL_COMPUTE)
        assert "--bf16" not in command and "--learning_rate" not in command  # all from the one config
        assert ("--teacher" in command) == (stage.method in {"mixacm", "mixacm-no-mixup", "kd", "ard", "rslad"})
    pgd7 = commands[[s.name for s in students].index("wrn16-2-pgd7-at")]
    assert pgd7[pgd7.index("--pgd_steps") + 1] == "7" and pgd7[pgd7.index("--pgd_step_size") + 1] == "2/255"


def test_stage_commands_give_the_hyperparameters_their_models_were_trained_with(monkeypatch):
    """Each stage's command, parsed against today's CPU config, reproduces the hyperparameters recorded when its
    committed model was trained (the config's defaults may move on: old stages pin what they used)."""
    from mixacm_hf.cli import parse_with_config
    from mixacm_hf.hub import relevant_hyperparameters
    from mixacm_hf.run_args import argument_parser

    monkeypatch.chdir(REPO)  # the commands' paths are relative to the repository
    trained = [s for s in reproduction.STAGES if (s.output_dir / "train_summary.json").is_file()]
    if not trained:
        pytest.skip("no trained stage folder under benchmarks/runs")
    for stage in trained:
        command = stage.command(reproduction.DEFAULT_DATASET)
        model_args, _, training_args, _ = parse_with_config(argument_parser(), command[command.index("--config") :])
        summary = json.loads((stage.output_dir / "train_summary.json").read_text())
        recorded = relevant_hyperparameters(stage.method, summary["hyperparameters"])  # e.g. no mixup_alpha for AT
        parsed = {key: getattr(training_args, key) for key in recorded}
        parsed["lr_scheduler_type"] = str(training_args.lr_scheduler_type.value)
        assert training_args.method == summary["method"] and parsed == pytest.approx(recorded), stage.name
        assert model_args.student == summary["student"], stage.name
        if summary["teacher"] is not None:  # the teacher's folder now (its published one), the run recorded
            assert Path(summary["teacher"]).name == stage.teacher, stage.name
            assert model_args.teacher == str(reproduction.model_folder(stage.teacher).relative_to(REPO)), stage.name


@pytest.mark.skipif(not RESULTS.is_file(), reason="benchmarks/results/cifar10_cpu.json not produced yet")
def test_committed_results_are_consistent_with_their_model_folders():
    rows = json.loads(RESULTS.read_text())["rows"]
    assert rows and rows[0]["role"] == "teacher"
    for row in rows:
        assert set(row) == ROW_KEYS, row["name"]
        assert 0 <= row["pgd20"] <= row["fgsm"] + 0.05 and row["fgsm"] <= row["clean"] <= 1
        assert row["n_eval"] == 1000
        assert row["command"].startswith("python benchmarks/reproduce_cifar10_cpu.py --only ")
        folder = REPO / "benchmarks" / "runs" / row["name"]
        summary = json.loads((folder / "train_summary.json").read_text())
        assert all(summary[key] == row[key] for key in ("params", "epochs", "method")), row["name"]
        assert row["seed"] == summary["hyperparameters"]["seed"], row["name"]  # the training run's seed
        assert row["train_command"] == summary.get("command"), row["name"]  # None: the first run recorded none
        assert row["train_command"] is None or f"--output_dir benchmarks/runs/{row['name']} " in row["train_command"]
        assert any(reproduction.model_folder(row["name"]).glob("*.safetensors")), row["name"]  # re-evaluable
        measured = [(r.clean_accuracy, r.robust_accuracy.get("pgd-20")) for r in load_reports(folder)]
        assert (row["clean"], row["pgd20"]) in measured
        if row["autoattack"] is not None:
            assert row["n_eval_autoattack"] >= 500 and row["autoattack"] <= row["clean"]
        # the code that trained it: its recorded commit, or (runs before that was recorded) the commit that added its
        # training summary as it is, so its code is that commit's or older
        assert bool(row["code_commit"]) != bool(row["summary_commit"]), row["name"]
        assert not (row["code_commit"] and row["name"] in reproduction.COMMIT_READ_AT_THE_END), row["name"]
        if row["summary_commit"] and (REPO / ".git").exists():
            committed = subprocess.run(
                ["git", "show", f"{row['summary_commit']}:benchmarks/runs/{row['name']}/train_summary.json"],
                cwd=REPO, capture_output=True, text=True, check=True,
            )  # fmt: skip
            later = set(reporting.LATER_KEYS)  # marks added after the run (shared_machine) aside
            assert {k: v for k, v in json.loads(committed.stdout).items() if k not in later} == {
                k: v for k, v in summary.items() if k not in later
            }, row["name"]  # fmt: skip


def test_publishing_moves_the_model_files_and_names_the_teacher_by_its_published_folder(layout):
    stage = next(s for s in reproduction.STAGES if s.name == "wrn16-2-mixacm-t20-mixup02")
    run = REPO / "benchmarks" / "runs" / stage.name
    if not (run / "train_summary.json").is_file():
        pytest.skip(f"{run} not trained")
    tmp_path = layout
    folder = tmp_path / "runs" / stage.name
    folder.mkdir(parents=True)
    for file in ("config.json", "train_summary.json"):
        (folder / file).write_text((run / file).read_text())
    reports = [_report({"fgsm": 0.4, "pgd-20": 0.35, "all": 0.35}, 1000), _report({"autoattack": 0.3, "all": 0.3}, 500)]
    (folder / "robustness.json").write_text(json.dumps(reports))
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / "modeling_wide_resnet.py").write_text("# model code")
    assert json.loads((folder / "train_summary.json").read_text())["teacher"].startswith("benchmarks/runs/")
    (tmp_path / "model_cards" / reproduction.STRONG_TEACHER).mkdir(parents=True)  # the teacher is published
    assert reproduction.model_folder(stage.name) == folder
    reproduction.publish(stage)
    published = tmp_path / "model_cards" / stage.name
    assert reproduction.model_folder(stage.name) == published
    assert (published / "model.safetensors").read_bytes() == b"weights"  # moved: one copy
    assert (published / "modeling_wide_resnet.py").is_file() and not (folder / "modeling_wide_resnet.py").exists()
    assert not any(folder.glob("*.safetensors"))
    assert {"train_summary.json", "robustness.json", "config.json"} <= {p.name for p in folder.iterdir()}  # records
    reproduction.publish(stage)  # publishing again keeps the published weights
    assert (published / "model.safetensors").read_bytes() == b"weights"
    (folder / "model.safetensors").write_bytes(b"retrained")  # re-trained after publishing: the new weights count
    (folder / "modeling_wide_resnet.py").write_text("# model code")
    assert reproduction.model_folder(stage.name) == folder
    reproduction.publish(stage)
    assert (published / "model.safetensors").read_bytes() == b"retrained" and not any(folder.glob("*.safetensors"))
    teacher = f"model_cards/{reproduction.STRONG_TEACHER}"
    assert json.loads((published / "train_summary.json").read_text())["teacher"] == teacher
    card = (published / "README.md").read_text()
    assert f"teacher: {teacher}" in card  # the card's metadata (its training command keeps the path it ran with)


def test_cpu_config_default_teacher_is_robust(cifar10_path):
    """The README's main command trains from the config's default teacher: it must exist, load and resist PGD."""
    from mixacm_hf.robustness import evaluate_robustness
    from mixacm_hf.teachers import load_teacher

    teacher_path = REPO / yaml.safe_load(CPU_CONFIG.read_text())["teacher"]
    if not teacher_path.is_dir():
        pytest.fail(f"the CPU config's default teacher {teacher_path} is missing")
    teacher = load_teacher(str(teacher_path))
    assert teacher.config.num_labels == 10
    assert len(teacher(torch.rand(1, 3, 32, 32), output_hidden_states=True).hidden_states) == 4
    assert any("autoattack" in r.robust_accuracy for r in load_reports(teacher_path))  # its card has AutoAttack
    report = evaluate_robustness(
        teacher, str(cifar10_path), ["clean", "pgd-10"], n_examples=100, batch_size=100, device="cpu", progress=False
    )
    assert report.clean_accuracy > 0.5 and report.robust_accuracy["pgd-10"] > 0.25  # a natural model: ~0


def test_results_table_goes_between_the_readme_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{reporting.TABLE_START}\nold table\n{reporting.TABLE_END}\noutro\n")
    reporting.replace_between_markers(readme, "| new | table |")
    assert readme.read_text() == f"intro\n{reporting.TABLE_START}\n| new | table |\n{reporting.TABLE_END}\noutro\n"
    unmarked = tmp_path / "OTHER.md"
    unmarked.write_text("no markers\n")
    reporting.replace_between_markers(unmarked, "| new | table |")
    assert unmarked.read_text() == "no markers\n"


def test_stages_train_first_then_quick_evaluations_then_autoattack(monkeypatch):
    monkeypatch.setattr(reproduction, "dataset_problem", lambda dataset: None)  # no data is read here
    calls = []
    monkeypatch.setattr(reproduction, "train", lambda stage, dataset, dry_run: calls.append(("train", stage.name)))
    monkeypatch.setattr(reproduction, "evaluate", lambda stage, dataset, key: calls.append((key, stage.name)))
    monkeypatch.setattr(reproduction, "publish", lambda stage: None)
    monkeypatch.setattr(reproduction, "write_results", lambda: [])
    reproduction.main(["--only", "wrn16-2-mixacm-t20", "teacher-wrn16-2-nfgsm-20ep"])  # in the order given
    names = ["wrn16-2-mixacm-t20", "teacher-wrn16-2-nfgsm-20ep"]
    assert calls == [(key, name) for key in ("train", "fgsm", "autoattack") for name in names]
    calls.clear()
    reproduction.main(["--only", *names, "--evaluations", "fgsm"])
    assert calls == [(key, name) for key in ("train", "fgsm") for name in names]
    mixacm_t20 = next(s for s in reproduction.STAGES if s.name == names[0]).command(reproduction.DEFAULT_DATASET)
    assert mixacm_t20[mixacm_t20.index("--teacher") + 1] == "model_cards/teacher-wrn16-2-nfgsm-20ep"  # published
    teacher = next(s for s in reproduction.STAGES if s.name == names[1]).command(reproduction.DEFAULT_DATASET)
    assert teacher[teacher.index("--num_train_epochs") + 1] == "20" and "--teacher" not in teacher


def test_a_dry_run_lists_the_evaluations_it_would_run_and_runs_nothing(layout, monkeypatch, capsys):
    """The dry run prints each training command and each evaluation still to run (after its training for an
    untrained stage; none for a measured one, no AutoAttack for a stage without it), and starts nothing."""
    monkeypatch.setattr("subprocess.run", lambda *args, **kwargs: pytest.fail("the dry run started a process"))
    monkeypatch.setattr("mixacm_hf.robustness.evaluate_robustness", lambda *a, **k: pytest.fail("it evaluated"))
    trained = reproduction.Stage("trained", "student", "kd", "wrn-16-2")
    measured = reproduction.Stage("measured", "student", "kd", "wrn-16-2")
    untrained = reproduction.Stage("untrained", "student", "pgd-at", "wrn-16-2", autoattack=False)
    for stage in (trained, measured):
        stage.output_dir.mkdir(parents=True)
        (stage.output_dir / "train_summary.json").write_text("{}")
    (measured.output_dir / "robustness.json").write_text(
        json.dumps([_report({"fgsm": 0.4, "pgd-20": 0.35, "all": 0.35}, 1000)])
    )
    reproduction.run([trained, measured, untrained], reproduction.DEFAULT_DATASET, dry_run=True)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines if line.startswith("[train]")] == ["[train] untrained"]
    evaluations = [line for line in lines if line.startswith("[evaluate]")]
    assert evaluations == [
        "[evaluate] trained: ['clean', 'fgsm', 'pgd-20'] on 1000 images",
        "[evaluate] untrained: ['clean', 'fgsm', 'pgd-20'] on 1000 images, after its training",
        "[evaluate] trained: ['clean', 'pgd-20', 'autoattack'] on 500 images",
        "[evaluate] measured: ['clean', 'pgd-20', 'autoattack'] on 500 images",
    ]
    assert not (layout / "runs" / "untrained").exists()


def test_stage_and_evaluation_flags_refuse_empty_or_contradictory_lists_and_run_each_stage_once(monkeypatch, capsys):
    monkeypatch.setattr(reproduction, "dataset_problem", lambda dataset: None)  # no data is read here
    calls = []
    monkeypatch.setattr(reproduction, "train", lambda stage, dataset, dry_run: calls.append(("train", stage.name)))
    monkeypatch.setattr(reproduction, "evaluate", lambda stage, dataset, key: calls.append((key, stage.name)))
    monkeypatch.setattr(reproduction, "publish", lambda stage: None)
    monkeypatch.setattr(reproduction, "write_results", lambda: [])
    name = "wrn16-2-mixacm-t20"
    reproduction.main(["--only", name, name, "--evaluations", "none"])  # train only, once
    assert calls == [("train", name)]
    calls.clear()
    reproduction.main(["--only", name, "--evaluations", "autoattack", "autoattack"])
    assert calls == [("train", name), ("autoattack", name)]
    calls.clear()
    reproduction.main(["--only", name, "--evaluations", "autoattack", "--evaluations", "fgsm"])  # they add up
    assert calls == [("train", name), ("autoattack", name), ("fgsm", name)]
    calls.clear()
    reproduction.main(["--only", name])  # by default both, the quick one first
    assert calls == [("train", name), ("fgsm", name), ("autoattack", name)]
    for argv, message in (
        (["--only"], "expected at least one argument"),  # would otherwise run every stage
        (["--only", name, "--evaluations"], "expected at least one argument"),
        (["--only", name, "--evaluations", "none", "fgsm"], "--evaluations none means no evaluation"),
    ):
        with pytest.raises(SystemExit):
            reproduction.main(argv)
        assert message in capsys.readouterr().err, argv
    reproduction.main(["--only", name, "--dry_run"])
    assert capsys.readouterr().out.startswith("dry run: nothing is trained or evaluated")


def test_a_headline_label_says_how_many_seeds_its_bars_average():
    def row(seconds: float, shared: bool, autoattack: float | None) -> dict:
        return {"train_seconds": seconds, "shared_machine": shared, "autoattack": autoattack}

    rows = [row(1200, False, 0.3), row(3000, True, 0.28), row(3000, True, None)]
    assert reporting.headline_label("MixACM", rows) == "MixACM\n20 min\n3 seeds\nAutoAttack 2 of 3"
    assert reporting.headline_label("kd", rows[1:2]) == "kd\nnot timed alone"


def test_the_headline_figures_labels_do_not_overlap(tmp_path):
    """The committed results' headline figure, drawn again: no two x labels (nor the bars' value labels above
    the axis) overlap."""
    rows = json.loads((reproduction.RESULTS / "cifar10_cpu.json").read_text())["rows"]
    entries = reproduction.headline_entries(rows)
    figure = reporting.plot_headline(entries, tmp_path / "headline.png", 1000, 500)
    renderer = figure.canvas.get_renderer()
    boxes = [label.get_window_extent(renderer) for label in figure.axes[0].get_xticklabels()]
    assert len(boxes) >= 7
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])


def test_committed_weights_are_stored_once():
    """One copy of every artefact: no two committed safetensors files have the same content, and no published
    stage's run folder keeps its model files (they live in model_cards/<name>/)."""
    listed = subprocess.run(["git", "ls-files", "-z", "*.safetensors"], cwd=REPO, capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip(f"not a git checkout: {listed.stderr.strip()}")
    by_hash: dict[str, list[str]] = {}
    for path in filter(None, listed.stdout.split("\0")):
        by_hash.setdefault(hashlib.sha256((REPO / path).read_bytes()).hexdigest(), []).append(path)
    assert len(by_hash) > 1, "expected the committed model folders' weights"
    assert [paths for paths in by_hash.values() if len(paths) > 1] == []
    for stage in reproduction.STAGES:
        if any((reproduction.MODEL_CARDS / stage.name).glob("*.safetensors")):
            kept = [p.name for pattern in reproduction.MODEL_FILES for p in stage.output_dir.glob(pattern)]
            assert kept == [], f"{stage.name}: model files in both model_cards/ and benchmarks/runs/"


def test_run_folders_keep_no_copy_of_the_model_code():
    """benchmarks/runs/ holds weights and records: the package loads those folders, so no copy of its model code
    sits there (the published folders in model_cards/ keep theirs: each must load alone from the Hub)."""
    from transformers import AutoModelForImageClassification

    copies = [path for pattern in reproduction.MODEL_CODE for path in reproduction.RUNS.glob(f"*/{pattern}")]
    trained = [stage for stage in reproduction.STAGES if (stage.output_dir / "train_summary.json").is_file()]
    copies = [path for path in copies if path.parent.name in {stage.name for stage in trained}]
    assert copies == []
    with_weights = [stage.output_dir for stage in trained if any(stage.output_dir.glob("*.safetensors"))]
    if not with_weights:
        pytest.skip("no trained run folder with weights under benchmarks/runs")
    model = AutoModelForImageClassification.from_pretrained(with_weights[0])
    assert type(model).__name__ == "WideResNetForImageClassification"


def _recomputed_pooled(used: list[list[str]], attack: str) -> dict:
    """The paired comparison of the models paired in `used` (one pair per seed), from the run folders' per-example
    records, independently of `benchmarks.seed_statistics`: one pair by its discordant counts (exact McNemar,
    Newcombe's interval); several by a paired t-test over the images all pairs evaluated, each image's difference
    averaged over the seeds, and the t interval of the seeds' differences."""
    from scipy.stats import t as student

    from mixacm_hf.statistics import mcnemar_exact_p, newcombe_paired_interval

    def t_interval(values: list[float]) -> tuple[float, list[float], float]:
        mean, sd = sum(values) / len(values), statistics.stdev(values)
        half = student.ppf(0.975, len(values) - 1) * sd / math.sqrt(len(values))
        return (
            mean,
            [mean - half, mean + half],
            2 * student.sf(abs(mean) / (sd / math.sqrt(len(values))), len(values) - 1),
        )

    pairs = []
    for name, other in used:
        mine = reproduction.report_of(name, attack).per_example
        theirs = reproduction.report_of(other, attack).per_example
        pairs.append((dict(zip(mine["index"], mine[attack])), dict(zip(theirs["index"], theirs[attack]))))
    if len(pairs) == 1:
        a, b = pairs[0]
        common = sorted(a.keys() & b.keys())
        only_a = sum(a[k] and not b[k] for k in common)
        only_b = sum(b[k] and not a[k] for k in common)
        both = sum(a[k] and b[k] for k in common)
        neither = len(common) - both - only_a - only_b
        return {
            "difference": (only_a - only_b) / len(common), "n": len(common),
            "p_value": mcnemar_exact_p(only_a, only_b),
            "interval": newcombe_paired_interval(both, only_a, only_b, neither),
        }  # fmt: skip
    images = sorted(set.intersection(*(a.keys() & b.keys() for a, b in pairs)))
    per_image = [sum(int(a[k]) - int(b[k]) for a, b in pairs) / len(pairs) for k in images]
    difference, interval, p_value = t_interval(per_image)
    per_seed = [sum(int(a[k]) - int(b[k]) for k in a.keys() & b.keys()) / len(a.keys() & b.keys()) for a, b in pairs]
    return {"difference": difference, "n": len(images), "interval": interval, "p_value": p_value,
            "between_seeds": t_interval(per_seed)[1]}  # fmt: skip


def _recomputed_means(
    rows: dict[str, dict], names: list[str], column: str, complete: bool = False
) -> tuple[float, float | None] | None:
    """(mean, std) over the named rows that measured `column`; with `complete`, None unless all of `names` did."""
    import statistics as stats

    values = [rows[name][column] for name in names if name in rows and rows[name][column] is not None]
    if not values or (complete and len(values) < len(names)):
        return None
    return stats.fmean(values), stats.stdev(values) if len(values) > 1 else None


def test_committed_summary_is_recomputed_from_the_rows_and_per_example_records():
    """The results' `summary` (seed means and stds, paired comparisons) follows from the rows and the run folders'
    per-example records, recomputed here independently of `benchmarks.seed_statistics`."""
    results = json.loads(RESULTS.read_text())
    rows = {row["name"]: row for row in results["rows"]}
    summary = results["summary"]
    assert set(summary["groups"]) == set(reproduction.CLAIM_GROUPS)
    for group, names in reproduction.CLAIM_GROUPS.items():
        entry = summary["groups"][group]
        assert entry["models"] == [name for name in names if name in rows]
        for column in ("clean", "fgsm", "pgd20", "autoattack"):
            expected = _recomputed_means(rows, entry["models"], column)
            if expected is None:
                assert column not in entry
                continue
            assert entry[column]["n"] == sum(rows[name][column] is not None for name in entry["models"])
            assert entry[column]["mean"] == pytest.approx(expected[0])
            assert entry[column]["std"] == (None if expected[1] is None else pytest.approx(expected[1]))
    for label, (first, second) in reproduction.CLAIM_COMPARISONS.items():
        for column, attack in (("pgd20", "pgd-20"), ("autoattack", "autoattack")):
            result = summary["comparisons"][label][column]
            if "pooled" not in result:  # no pair of models with per-example records yet
                assert result["missing_per_example_records"]
                continue
            for name, other in result["used"]:
                assert name in reproduction.CLAIM_GROUPS[first] and other in reproduction.CLAIM_GROUPS[second]
            expected = _recomputed_pooled(result["used"], attack)
            for key, value in expected.items():
                assert result["pooled"][key] == pytest.approx(value, rel=1e-6, abs=1e-300), (label, column, key)


def test_readme_claim_paragraph_states_the_recomputed_numbers():
    """The README's claim block states the seed means +- stds, the criteria on the means (with a verdict naming
    each criterion not met) and the pooled paired differences, all recomputed here from the rows and the per-example
    records; the CPU config's comment quotes the same AutoAttack mean."""
    results = json.loads(RESULTS.read_text())
    rows = {row["name"]: row for row in results["rows"]}
    readme = reproduction.RESULTS_DOC.read_text()
    start, end = (readme.index(marker) for marker in reproduction.CLAIM_MARKERS)
    block = readme[start:end]
    groups = reproduction.CLAIM_GROUPS
    for group, names in groups.items():
        line = next(line for line in block.splitlines() if line.startswith(f"| {group} |"))
        for column in ("clean", "fgsm", "pgd20", "autoattack"):
            expected = _recomputed_means(rows, names, column)
            if expected is not None:
                text = f"{100 * expected[0]:.1f}" + ("" if expected[1] is None else f" +- {100 * expected[1]:.1f}")
                measured = sum(name in rows and rows[name][column] is not None for name in names)
                text += f" ({measured} of {len(names)})" if measured < len(names) else ""
                assert f" {text} |" in line, (group, column, text, line)
    # the criteria take a group's mean only once every one of its models has measured it
    mean = {g: _recomputed_means(rows, names, "autoattack", complete=True) for g, names in groups.items()}
    clean = {g: _recomputed_means(rows, names, "clean", complete=True) for g, names in groups.items()}
    recipe, kd, at, teacher = "mixacm (recipe)", "kd", "pgd-7 AT", "teacher"
    timed = {g: [rows[n]["train_seconds"] for n in names if n in rows and not rows[n]["shared_machine"]]
             for g, names in groups.items()}  # fmt: skip
    expected_criteria = {
        "AutoAttack / teacher's AutoAttack": (mean[recipe] and mean[teacher]) and mean[recipe][0] / mean[teacher][0],
        "AutoAttack - soft labels' AutoAttack (points)": (mean[recipe] and mean[kd])
        and 100 * (mean[recipe][0] - mean[kd][0]),
        "AutoAttack - PGD-7 AT's AutoAttack (points)": (mean[recipe] and mean[at])
        and 100 * (mean[recipe][0] - mean[at][0]),
        "clean - PGD-7 AT's clean (points)": (clean[recipe] and clean[at]) and 100 * (clean[recipe][0] - clean[at][0]),
        "wall time / PGD-7 AT's (runs trained alone)": (timed[recipe] and timed[at])
        and (sum(timed[recipe]) / len(timed[recipe])) / (sum(timed[at]) / len(timed[at])),
    }
    thresholds = {
        "AutoAttack / teacher's AutoAttack": lambda v: v >= 0.8,
        "AutoAttack - soft labels' AutoAttack (points)": lambda v: v >= 5,
        "AutoAttack - PGD-7 AT's AutoAttack (points)": lambda v: v >= -5,
        "clean - PGD-7 AT's clean (points)": lambda v: v > 0,
        "wall time / PGD-7 AT's (runs trained alone)": lambda v: v <= 0.25,
    }
    verdict = block.splitlines()[1]
    for criterion, value in expected_criteria.items():
        line = next(line for line in block.splitlines() if line.startswith(f"| {criterion} |"))
        if not value:
            assert "not yet measured" in line
            continue
        met = thresholds[criterion](value)
        assert line.startswith(f"| {criterion} | {value:.2f} |") and line.endswith("| yes |" if met else "| **no** |")
        assert (criterion in verdict) != met, (criterion, verdict)  # every unmet criterion is named, no met one
    assert ("not met" in verdict) == any(v and not thresholds[c](v) for c, v in expected_criteria.items())
    summary = results["summary"]
    for label in reproduction.CLAIM_COMPARISONS:
        line = next(line for line in block.splitlines() if line.startswith(f"| {label} |"))
        for column, attack in (("pgd20", "pgd-20"), ("autoattack", "autoattack")):
            result = summary["comparisons"][label][column]
            if "pooled" in result:
                expected = _recomputed_pooled(result["used"], attack)
                low, high = (100 * value for value in expected["interval"])
                text = f"{100 * expected['difference']:+.1f} [{low:+.1f}, {high:+.1f}]"
                assert text in line and f"(n = {expected['n']} images x" in line, (label, column, line)


@pytest.mark.parametrize(
    "key, groups, comparisons, questions, markers",
    [
        ("studies", reproduction.STUDY_GROUPS, reproduction.STUDY_COMPARISONS, reproduction.STUDY_QUESTIONS,
         reproduction.STUDIES_MARKERS),
        ("methods", reproduction.METHOD_GROUPS, reproduction.METHOD_COMPARISONS, reproduction.METHOD_QUESTIONS,
         reproduction.METHODS_MARKERS),
        ("equal_compute", reproduction.COST_GROUPS, reproduction.COST_COMPARISONS, reproduction.COST_QUESTIONS,
         reproduction.COST_MARKERS),
    ],
)  # fmt: skip
def test_readme_answers_are_recomputed_from_the_per_example_records(key, groups, comparisons, questions, markers):
    """Each few-data, compression and methods question in the README is answered as the paired comparisons
    recomputed here give it: 'no' when a paired difference lies significantly below 0 (95% interval wholly below 0
    and p < 0.05), 'yes' when every measured one lies significantly above, 'not distinguishable' otherwise, 'not yet
    measured' without per-example records; only the columns asked compared."""
    summary = json.loads(RESULTS.read_text())["summary"][key]
    readme = reproduction.RESULTS_DOC.read_text()
    start, end = (readme.index(marker) for marker in markers)
    block = readme[start:end]
    assert set(questions) == set(comparisons)
    for label, question in questions.items():
        first, second, *columns = comparisons[label]
        result = summary["comparisons"][label]
        assert set(result) - {"groups"} == set(columns[0] if columns else ("pgd20", "autoattack"))
        below, above = [], []
        for column, attack in (("pgd20", "pgd-20"), ("autoattack", "autoattack")):
            if "pooled" not in result.get(column, {}):
                continue
            for name, other in result[column]["used"]:
                assert name in groups[first] and other in groups[second]
            expected = _recomputed_pooled(result[column]["used"], attack)
            for key, value in expected.items():
                assert result[column]["pooled"][key] == pytest.approx(value, rel=1e-6, abs=1e-300), (label, key)
            significant = expected["p_value"] < 0.05
            below.append(expected["interval"][1] < 0 and significant)
            above.append(expected["interval"][0] > 0 and significant)
        answer = (
            "not yet measured" if not below else "**no**, below" if any(below)
            else "**yes**, above" if all(above) else "**not distinguishable** at this sample size"
        )  # fmt: skip
        line = next(line for line in block.splitlines() if line.startswith(f"- {question} "))
        assert line.startswith(f"- {question} {answer} ({label}, paired:"), line


def _margin_verdicts(intervals: dict[str, tuple[float, float]]) -> tuple[str, str]:
    """The margin and side verdicts (points) by the claim's rule, written out independently of the reproduction: a
    verdict holds when it holds on every interval (test images, and between seeds when several)."""

    def verdict(holds: dict[str, bool], what: str) -> str:
        shown = [basis for basis, held in holds.items() if held]
        if not shown:
            return ""
        failed = [basis for basis, held in holds.items() if not held]
        return f"{what}: shown" + (f" over {shown[0]}, not over {failed[0]}" if failed else "")

    within = verdict({b: -5 < lo and hi < 5 for b, (lo, hi) in intervals.items()}, "within 5 points either way")
    apart = verdict({b: lo >= 5 or hi <= -5 for b, (lo, hi) in intervals.items()}, "more than 5 points apart")
    above = verdict({b: lo > 0 for b, (lo, _) in intervals.items()}, "MixACM above")
    below = verdict({b: hi < 0 for b, (_, hi) in intervals.items()}, "MixACM below")
    margin = within or apart or "within 5 points either way: neither shown nor ruled out"
    return margin, above or below or "above or below: not shown"


def test_the_equal_compute_answer_states_the_recomputed_interval():
    """The README's equal-compute sentence (MixACM 40 epochs against PGD-7 AT 10: within 5 AutoAttack points either
    way, above, below?) states the pooled paired AutoAttack difference and its intervals over the images and between
    seeds recomputed from the per-example records, and verdicts that hold on both intervals."""
    result = json.loads(RESULTS.read_text())["summary"]["equal_compute"]["comparisons"]["mixacm 40 - pgd-7 AT 10"]
    readme = (REPO / "README.md").read_text()
    block = readme[slice(*(readme.index(marker) for marker in reproduction.COST_ANSWER_MARKERS))]
    if "pooled" not in result["autoattack"]:
        assert "AutoAttack" not in block.split("\n")[1]
        pytest.skip("the equal-compute models are not all evaluated yet")
    expected = _recomputed_pooled(result["autoattack"]["used"], "autoattack")
    intervals = {"the first 500 test images": tuple(100 * value for value in expected["interval"])}
    if (seeds := len(result["autoattack"]["used"])) > 1:
        intervals[f"{seeds} training seeds"] = tuple(100 * value for value in expected["between_seeds"])
    margin, side = _margin_verdicts(intervals)
    shown = "; ".join(f"{basis} [{low:+.1f}, {high:+.1f}]" for basis, (low, high) in intervals.items())
    sentence = (
        f"AutoAttack {100 * expected['difference']:+.1f} points (paired 95% interval{'s' if seeds > 1 else ''} over "
        f"{shown}): {margin}; {side}"
    )
    assert sentence in block
    total = len(reproduction.COST_GROUPS["mixacm, 40 epochs"])  # a partial answer says how many seeds it rests on
    used = len(result["autoattack"]["used"])
    assert (f"half the backward passes, {used} of {total} seeds so far)" in block) == (used < total)


@pytest.mark.parametrize(
    "interval, between, margin, side",
    [((-0.023, 0.031), None, "within 5 points either way: shown", "above or below: not shown"),
     ((0.06, 0.12), None, "more than 5 points apart: shown", "MixACM above: shown"),
     ((0.01, 0.07), None, "within 5 points either way: neither shown nor ruled out", "MixACM above: shown"),
     ((-0.09, -0.06), None, "more than 5 points apart: shown", "MixACM below: shown"),
     ((-0.07, 0.02), None, "within 5 points either way: neither shown nor ruled out", "above or below: not shown"),
     ((-0.025, 0.025), (-0.051, 0.051),
      "within 5 points either way: shown over the first 500 test images, not over 2 training seeds",
      "above or below: not shown"),
     ((-0.025, 0.025), (-0.04, 0.04), "within 5 points either way: shown", "above or below: not shown"),
     ((0.01, 0.03), (-0.01, 0.045), "within 5 points either way: shown",
      "MixACM above: shown over the first 500 test images, not over 2 training seeds")],
)  # fmt: skip
def test_the_equal_compute_verdict_holds_on_both_intervals(interval, between, margin, side):
    """Within 5 points either way is shown only by intervals inside (-5, +5) (one wholly above +5 is no 'within'),
    ruled out by ones wholly outside, above or below only by ones wholly on one side of 0; over several seeds the
    between-seed interval must agree (the claim's rule for its margins), else the answer says where it fails; a
    single-run baseline's own seed spread is named as in neither."""
    pooled = {"difference": sum(interval) / 2, "interval": list(interval)}
    if between is not None:
        pooled |= {"n_seeds": 2, "between_seeds": list(between)}
    used = [[name, "p"] for name in reproduction.COST_GROUPS["mixacm, 40 epochs"]]
    comparison = {
        "groups": ["mixacm, 40 epochs", "pgd-7 AT, 10 epochs"],
        "autoattack": {"pooled": pooled, "used": used},
    }
    answer = reproduction.margin_answer({"comparisons": {"mixacm 40 - pgd-7 AT 10": comparison}})
    assert f"): {margin}; {side} (PGD-7 AT is one training run" in answer, answer
    several = between is not None  # one interval or two: the sentence says which
    assert ("paired 95% intervals over" in answer) == several and ("paired 95% interval over" in answer) != several
    assert answer.endswith(f"is not in {'either interval' if several else 'this interval'}).")


def test_the_longer_schedules_are_stated_from_the_rows_and_records():
    """The README's equal-compute block and the CPU config's comment say what longer schedules change on the measured
    numbers only: each schedule's clean and AutoAttack mean +- std recomputed from the result rows, and the paired
    AutoAttack differences at 40 epochs recomputed from the per-example records, once measured."""
    results = json.loads(RESULTS.read_text())
    rows = {row["name"]: row for row in results["rows"]}
    comparisons = results["summary"]["equal_compute"]["comparisons"]

    seeds = {stage.name: stage.seed for stage in reproduction.STAGES}
    expected, longer_measured = [], False  # never mixing seeds: each seed with a longer schedule, through its schedules
    for method, groups in reproduction.SCHEDULES.items():
        schedules = {(epochs, seeds[name]): name for epochs, group in groups.items()
                     for name in reproduction.COST_GROUPS[group]}  # fmt: skip
        measured = {name for name in schedules.values() if name in rows and rows[name]["autoattack"] is not None}
        longer_measured |= any(epochs > 10 and name in measured for (epochs, _), name in schedules.items())
        for seed in sorted({seed for epochs, seed in schedules if epochs > 10}):
            cells = []
            for epochs in (10, 20, 40):
                if (name := schedules.get((epochs, seed))) in measured:
                    row = rows[name]
                    cells.append(f"{epochs} epochs {100 * row['autoattack']:.1f} ({100 * row['clean']:.1f})")
                elif name:
                    cells.append(f"{epochs} epochs not yet measured")
            expected.append(f"{method}, seed {seed}: {', '.join(cells)}")
    readme = (REPO / "README.md").read_text()
    block = readme[slice(*(readme.index(marker) for marker in reproduction.COST_ANSWER_MARKERS))]
    config = " ".join(line.removeprefix("# ") for line in CPU_CONFIG.read_text().splitlines())
    if not longer_measured:
        assert "Longer schedules" not in block
        pytest.skip("no longer schedule of the recipe is measured yet")
    paired = []
    for label, text in reproduction.SCHEDULE_COMPARISONS.items():
        if "pooled" in comparisons[label]["autoattack"]:
            used = comparisons[label]["autoattack"]["used"]
            pooled = _recomputed_pooled(used, "autoattack")
            low, high = (100 * value for value in pooled["interval"])
            total = len(reproduction.COST_GROUPS[comparisons[label]["groups"][0]])  # its seeds, trained or not
            so_far = f" ({len(used)} of {total} seeds so far)" if len(used) < total else ""
            paired.append(f"{text} {100 * pooled['difference']:+.1f} points [{low:+.1f}, {high:+.1f}]{so_far}")
    pairs = f"; the recipe at 40 epochs, paired on the images: {', '.join(paired)}" if paired else ""
    sentence = f"Longer schedules, AutoAttack (clean) % by training seed: {'; '.join(expected)}{pairs}."
    assert f"- {sentence}\n" in block
    assert sentence in config


def test_longer_schedules_are_stated_seed_by_seed(monkeypatch, tmp_path):
    """Each training seed's schedules are stated apart (a mean over other seeds would read as a gain of training
    length), those planned but not measured say so; nothing is said while only one schedule is measured."""
    from types import SimpleNamespace

    groups = {"mixacm, 10 epochs": ["a", "b", "x"], "mixacm, 20 epochs": ["c"], "mixacm, 40 epochs": ["d", "e"],
              "kd, 10 epochs": ["k"], "kd, 40 epochs": ["k40"]}  # fmt: skip
    seeds = {"a": 0, "b": 1, "x": 2, "c": 0, "d": 0, "e": 1, "k": 0, "k40": 0}
    monkeypatch.setattr(reproduction, "COST_GROUPS", groups)
    monkeypatch.setattr(reproduction, "STAGES", [SimpleNamespace(name=n, seed=seed) for n, seed in seeds.items()])
    summary = {"comparisons": {label: {"autoattack": {}} for label in reproduction.SCHEDULE_COMPARISONS}}
    rows = [
        {"name": "a", "clean": 0.70, "autoattack": 0.30}, {"name": "b", "clean": 0.68, "autoattack": 0.26},
        {"name": "x", "clean": 0.69, "autoattack": 0.25}, {"name": "d", "clean": 0.74, "autoattack": 0.33},
        {"name": "e", "clean": 0.90, "autoattack": None},
    ]  # fmt: skip
    assert reproduction.schedules_answer(summary, rows) == (
        "- Longer schedules, AutoAttack (clean) % by training seed: the recipe, seed 0: 10 epochs 30.0 (70.0), "
        "20 epochs not yet measured, 40 epochs 33.0 (74.0); the recipe, seed 1: 10 epochs 26.0 (68.0), 40 epochs not "
        "yet measured; soft labels alone (kd), seed 0: 10 epochs not yet measured, 40 epochs not yet measured."
    )
    soft = [{"name": "k", "clean": 0.7, "autoattack": 0.17}, {"name": "k40", "clean": 0.73, "autoattack": 0.28}]
    assert reproduction.schedules_answer(summary, rows[:3] + soft).endswith(
        "soft labels alone (kd), seed 0: 10 epochs 17.0 (70.0), 40 epochs 28.0 (73.0)."
    )  # a longer schedule of either method is something to say
    assert reproduction.schedules_answer(summary, rows[:3]) == ""  # only the 10-epoch seeds measured: nothing to say
    zero = [{**rows[0], "backward_passes_per_image": 0, "epochs": 10, "n_eval_autoattack": 500, "train_seconds": 1,
             "seed": 0}]  # fmt: skip
    from benchmarks import studies  # a cost of 0 has no place on the log axis: left out, not a crash

    studies.plot_cost({"m": [["a"]]}, zero, tmp_path / "cost.png", seconds_of=lambda row: 60.0, title="t")
    # the paired difference of the one 40-epoch seed measured says it is one of two
    summary["comparisons"]["mixacm 40 - mixacm 10"] = {
        "groups": ["mixacm, 40 epochs", "mixacm, 10 epochs"],
        "autoattack": {"used": [["d", "a"]], "pooled": {"difference": 0.03, "interval": [0.01, 0.05]}},
    }
    assert reproduction.schedules_answer(summary, rows).endswith(
        "40 epochs not yet measured; the recipe at 40 epochs, paired on the images: 40 epochs against 10 (seed by "
        "seed) +3.0 points [+1.0, +5.0] (1 of 2 seeds so far)."
    )


def test_the_readme_states_a_group_mean_the_same_in_every_table():
    """A group's clean and PGD-20 mean +- std reads the same in the claim block and the methods table (one rounding:
    percent of the fractions' mean)."""
    readme = reproduction.RESULTS_DOC.read_text()
    claim = readme[slice(*(readme.index(marker) for marker in reproduction.CLAIM_MARKERS))]
    methods = readme[slice(*(readme.index(marker) for marker in reproduction.METHODS_MARKERS))]
    groups = {tuple(names): group for group, names in reproduction.CLAIM_GROUPS.items()}
    compared = 0
    for label, names in reproduction.METHODS_COMPARED:
        if tuple(names) not in groups:
            continue
        claim_cells = next(line for line in claim.splitlines() if line.startswith(f"| {groups[tuple(names)]} |"))
        claim_cells = claim_cells.split(" | ")
        method_cells = next(line for line in methods.splitlines() if line.startswith(f"| {label} |")).split(" | ")
        if method_cells[1] != "0":
            assert (method_cells[5], method_cells[6]) == (claim_cells[2], claim_cells[4]), label  # clean, PGD-20
            compared += 1
    assert compared >= 2


def test_the_cost_figure_draws_points_at_one_cost_side_by_side_with_separate_labels(tmp_path):
    """Three methods at the same cost with AutoAttack within a point of each other (as the 40-epoch students and the
    20-epoch teacher): their points are drawn side by side around the cost, and no two labels overlap."""
    from benchmarks import studies

    def row(name: str, epochs: int, autoattack: float, backward_passes: int = 1) -> dict:
        return {"name": name, "epochs": epochs, "backward_passes_per_image": backward_passes, "autoattack": autoattack,
                "n_eval_autoattack": 500, "seconds": 90 * epochs * backward_passes, "seed": 0}  # fmt: skip

    rows = [row("m10", 10, 0.27), row("m40", 40, 0.345), row("k40", 40, 0.35), row("t20", 20, 0.355, 2)]
    study = {"MixACM": [["m10"], ["m40"]], "KD": [["k40"]], "teacher": [["t20"]]}
    path = tmp_path / "cost.png"
    figure = studies.plot_cost(study, rows, path, seconds_of=lambda r: r["seconds"], title="t",
                               estimated=lambda r: r["name"] == "k40")  # fmt: skip
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    hollow = [
        [(line.get_xdata()[0], line.get_ydata()[0]) for line in axes.lines if line.get_markerfacecolor() == "white"]
        for axes in figure.axes
    ]
    assert hollow[0] == [] and len(hollow[1]) == 1 and hollow[1][0][1] == pytest.approx(35.0)  # wall time estimated
    assert all(axes.get_xlabel().endswith(", log scale") for axes in figure.axes)
    assert "runs of equal cost are drawn side by side around their cost" in figure.texts[0].get_text()
    renderer = figure.canvas.get_renderer()
    for axes in figure.axes:
        texts = axes.texts
        assert len(texts) == 4
        boxes = [text.get_window_extent(renderer) for text in texts]
        assert not any(boxes[i].overlaps(boxes[j]) for i in range(4) for j in range(i)), [t.xyann for t in texts]
        bars = [  # each point's interval, in pixels
            axes.transData.transform(segment)
            for container in axes.containers for segment in container.lines[2][0].get_segments()
        ]  # fmt: skip
        for box in boxes:  # no label crosses another point's interval
            crossed = [bar for bar in bars if box.x0 < bar[0][0] < box.x1 and box.y0 < bar[1][1] and bar[0][1] < box.y1]
            assert not crossed, (box, crossed)
    at_40 = sorted(text.xy[0] for text in figure.axes[0].texts if text.xy[0] > 20)
    step = 10 ** (studies.DODGE * math.log10(40 / 10))  # the costs span 10 to 40
    assert at_40 == pytest.approx([40 / step, 40, 40 * step])  # cost 40: three methods side by side around it


def test_the_cost_figure_joins_one_methods_schedules_seed_by_seed(tmp_path):
    """A line joins one method's schedules of one training seed (a mean over other seeds at one schedule would bend
    the line by the seeds, not the schedule); each point is one run with its own 95% interval over its images; runs
    named but not measured are listed in the title."""
    from benchmarks import studies
    from mixacm_hf.statistics import wilson_interval

    def row(name: str, epochs: int, autoattack: float, seed: int) -> dict:
        return {"name": name, "epochs": epochs, "backward_passes_per_image": 1, "autoattack": autoattack,
                "n_eval_autoattack": 500, "seed": seed}  # fmt: skip

    rows = [row("m10-s0", 10, 0.30, 0), row("m10-s1", 10, 0.26, 1), row("m40-s0", 40, 0.33, 0)]
    study = {"MixACM": [["m10-s0", "m10-s1"], ["m40-s0", "m40-s1"]]}
    figure = studies.plot_cost(study, rows, tmp_path / "cost.png", seconds_of=lambda r: 60 * r["epochs"], title="t")
    for axes in figure.axes:
        lines = {container.lines[0].get_linestyle(): container for container in axes.containers}
        assert {style: tuple(c.lines[0].get_ydata()) for style, c in lines.items()} == {
            "-": (30.0, 33.0), "--": (26.0,)
        }  # fmt: skip
        (segment,) = lines["--"].lines[2][0].get_segments()  # seed 1's interval: its own 500 images
        assert [y for _, y in segment] == pytest.approx([100 * v for v in wilson_interval(130, 500)])
        assert [text.get_text() for text in axes.texts] == ["10 ep", "40 ep"]  # one label per schedule
    assert figure.texts[0].get_text().endswith("not yet measured: m40-s1")
    # the key's line styles: only seeds with a line (seed 1's lone point has none to tell apart)
    assert [text.get_text() for text in figure.legends[0].get_texts()] == ["MixACM", "seed 0"]
    unmeasured = [row("m10-s0", 10, None, 0), row("m10-s1", 10, 0.26, 1)]  # seed 0 has nothing drawn: not in the key
    figure = studies.plot_cost(study, unmeasured, tmp_path / "c.png", seconds_of=lambda r: 60, title="t")
    assert [text.get_text() for text in figure.legends[0].get_texts()] == ["MixACM"]
    long = {"MixACM": [[f"wrn16-2-mixacm-t20-mixup02-acm2k-inmem-{k}ep-seed{k}"] for k in range(8)]}
    figure = studies.plot_cost(long, unmeasured, tmp_path / "c.png", seconds_of=lambda r: 60, title="t")
    title = figure.texts[0].get_text()  # wrapped at TITLE_WIDTH, each name whole on its line
    assert max(map(len, title.splitlines())) <= studies.TITLE_WIDTH and title.count("\n") >= 2
    assert all(name in title.splitlines()[-1] or name in title for (name,) in long["MixACM"])
    listed = title[title.index("not yet measured") :].splitlines()  # the list wraps between names
    assert all(line.endswith(",") for line in listed[:-1])


def test_methods_table_averages_seeds_and_times_only_the_runs_trained_alone(tmp_path):
    from benchmarks import studies

    def row(name: str, clean: float, pgd20: float, autoattack: float | None, seconds: float, shared: bool) -> dict:
        return {
            "name": name, "clean": clean, "pgd20": pgd20, "autoattack": autoattack, "train_seconds": seconds,
            "shared_machine": shared, "teacher": "t", "backward_passes_per_image": 1, "n_eval_autoattack": 500,
            "train_fraction": 1.0, "params": 1e6,
        }  # fmt: skip

    rows = [row("m0", 0.70, 0.30, 0.28, 1200, False), row("m1", 0.68, 0.32, 0.26, 3600, True)]
    table = studies.methods_markdown([("MixACM", ["m0", "m1"]), ("absent", ["x"])], rows)
    assert table.splitlines()[2] == (
        "| MixACM | 2 | t | 1 | 20 min (1 of 2 seeds) | 69.0 +- 1.4 | 31.0 +- 1.4 | 27.0 +- 1.4 (500) |"
    )
    assert table.splitlines()[3] == "| absent | 0 | not yet trained and evaluated: `x` | | | | | |"
    rows.append(row("m2", 0.66, 0.28, None, 1300, False))  # a seed not yet attacked with AutoAttack
    table = studies.methods_markdown([("MixACM", ["m0", "m1", "m2"])], rows)
    assert table.splitlines()[2].endswith(
        "| 21 min (2 of 3 seeds) | 68.0 +- 2.0 | 30.0 +- 2.0 | 27.0 +- 1.4 (500, 2 of 3 seeds) |"
    )
    assert studies.average(rows, "autoattack") == (pytest.approx(27.0), pytest.approx(2**0.5))
    assert studies.average([row("a", 0.5, 0.2, None, 1, False)], "autoattack") is None
    path = tmp_path / "study.png"
    studies.plot_study(
        {"MixACM": [["m0", "m1"], ["missing"]]}, rows, path, x_of=lambda r: 100 * r["train_fraction"], xlabel="x",
        title="t", references=[("teacher", ["m0"])],
    )  # fmt: skip
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_model_a_summary_group_names_is_a_stage():
    """A misspelt name in a group would read as 'waiting for records' forever instead of failing."""
    stages = {stage.name for stage in reproduction.STAGES}
    for groups in (reproduction.CLAIM_GROUPS, reproduction.STUDY_GROUPS):
        for group, names in groups.items():
            assert names and set(names) <= stages, (group, set(names) - stages)


def test_writing_results_refuses_a_group_naming_no_stage(monkeypatch):
    monkeypatch.setitem(reproduction.CLAIM_GROUPS, "kd", ["wrn16-2-kd-t20-inmem-sed1"])
    with pytest.raises(ValueError, match=r"no stage: \['wrn16-2-kd-t20-inmem-sed1'\]"):
        reproduction.write_results()


def test_the_equal_compute_answer_says_what_the_costs_leave_out():
    """The students' costs leave out their teacher's training: the README says what it took (minutes alone on the
    machine) and how robust the teacher is itself, and the recipe's 40 epochs with it against PGD-7 AT's 10 (wall
    times on the idle machine: measured, or steps x the per-step time measured alone)."""
    rows = {row["name"]: row for row in json.loads(RESULTS.read_text())["rows"]}
    names = [reproduction.COST_GROUPS[group][0] for group in ("teacher", "mixacm, 40 epochs", "pgd-7 AT, 10 epochs")]
    readme = (REPO / "README.md").read_text()
    block = readme[slice(*(readme.index(marker) for marker in reproduction.COST_ANSWER_MARKERS))]
    if any(rows.get(name, {}).get("autoattack") is None for name in names):
        assert "The costs count" not in block
        pytest.skip("the teacher, the recipe's 40 epochs or PGD-7 AT is not evaluated yet")
    per_step = json.loads((REPO / "benchmarks/results/method_cost.json").read_text())["seconds_per_step"]
    minutes = []
    for name in names:
        row = rows[name]
        assert row["train_fraction"] == 1.0
        reference = rows.get(reproduction.ALONE_REFERENCE.get(name, ""))  # a whole run of its configuration, alone
        if reference and not reference["shared_machine"]:
            step_seconds = reference["train_seconds"] / (391 * reference["epochs"] * reference["train_fraction"])
        else:
            step_seconds = per_step[reproduction.COST_KEYS[row["method"]]]
        minutes.append((391 * row["epochs"] * step_seconds if row["shared_machine"] else row["train_seconds"]) / 60)
    teacher = rows[names[0]]
    assert (
        f"the teacher (N-FGSM, {teacher['epochs']:g} epochs) took {minutes[0]:.0f} min and reaches "
        f"{100 * teacher['autoattack']:.1f} AutoAttack itself; trained for this student alone, it brings the recipe's "
        f"40 epochs to {minutes[0] + minutes[1]:.0f} min against PGD-7 AT's {minutes[2]:.0f} for 10"
    ) in block.replace("\n", " ")


def test_a_shared_runs_wall_time_comes_from_a_run_of_its_own_configuration_alone():
    """A shared run's wall time is estimated from the per-step time of its ALONE_REFERENCE run, which must have
    trained alone with the same training command but for its epochs, seed, output folder, card dataset id and the
    copy of the same teacher (the published model card of the run folder), and the same config file settings at its
    code commit (the input pipeline, say: in memory or per image), evaluation settings aside."""
    rows = {row["name"]: row for row in json.loads(RESULTS.read_text())["rows"]}
    free = {"--num_train_epochs", "--seed", "--output_dir", "--card_dataset_id"}

    def settings(command: str) -> dict[str, str]:
        words = shlex.split(command)
        flags = {word: value for word, value in zip(words[1:], [*words[2:], ""]) if word.startswith("--")}
        flags = {flag: value for flag, value in flags.items() if flag not in free}
        if "--teacher" in flags:  # the published copy of a run folder is the same teacher
            flags["--teacher"] = Path(flags["--teacher"]).name
        return flags

    def config_at(row: dict) -> dict | None:  # the config file's training settings at the run's commit, if in history
        commit = row.get("code_commit") or row.get("summary_commit")
        path = shlex.split(row["train_command"])[shlex.split(row["train_command"]).index("--config") + 1]
        shown = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=REPO, capture_output=True, text=True)
        if shown.returncode:  # a shallow clone: the commands alone are compared
            return None
        return {key: value for key, value in yaml.safe_load(shown.stdout).items() if "eval" not in key}

    for name, reference in reproduction.ALONE_REFERENCE.items():
        if name not in rows:
            continue
        assert not rows[reference]["shared_machine"], reference
        assert settings(rows[name]["train_command"]) == settings(rows[reference]["train_command"]), name
        configs = [config_at(rows[name]), config_at(rows[reference])]  # e.g. the same input pipeline
        assert None in configs or configs[0] == configs[1], name
        expected = rows[reference]["train_seconds"] * rows[name]["epochs"] / rows[reference]["epochs"]
        assert reproduction.training_seconds(rows[name], list(rows.values())) == pytest.approx(expected)
    alone = next(row for row in rows.values() if not row["shared_machine"])
    assert reproduction.training_seconds(alone, []) == alone["train_seconds"]  # measured alone: as measured


def test_a_resumed_runs_code_history_says_which_steps_are_unrecorded():
    """A run resumed from a checkpoint written before the code was recorded lists those steps as unrecorded (commit
    None), never as trained by the first recorded commit; every committed row's history starts at step 0."""
    from benchmarks import reporting

    part = {"from_step": 8993, "commit": "b" * 40, "dirty": False}
    unrecorded = {"from_step": 0, "commit": None, "dirty": None}
    assert reporting.code_history({"code": {"history": [part]}}) == [unrecorded, part]
    assert reporting.code_history({"code": {"history": [{**part, "from_step": 0}]}}) == [{**part, "from_step": 0}]
    assert reporting.code_history({"code": {}}) is None
    for row in json.loads(RESULTS.read_text())["rows"]:
        assert not row["code_history"] or row["code_history"][0]["from_step"] == 0, row["name"]


def test_every_compared_run_publishes_its_per_example_records():
    """Every run a summary comparison pairs has its per-example records in per_example.parquet, the same as in its
    robustness.json (so any reader can recompute the comparisons from the published files)."""
    from mixacm_hf.hub import load_reports
    from mixacm_hf.hub.per_example import read_per_example

    results = json.loads(RESULTS.read_text())["summary"]
    sections = [results, *(results[key] for key in ("studies", "methods", "equal_compute"))]
    used = [result.get(column, {}).get("used", []) for section in sections for result in section["comparisons"].values()
            for column in ("pgd20", "autoattack")]  # fmt: skip
    paired = {name for pairs in used for pair in pairs for name in pair}
    assert len(paired) >= 10
    for name in sorted(paired):
        folder = reproduction.model_folder(name)  # the published folder, where the stage is published
        published = read_per_example(folder)
        reports = load_reports(folder)
        assert published and all(reports[number].per_example == report.per_example for number, report in
                                  published.items()), name  # fmt: skip


def test_a_summary_commit_is_the_one_that_committed_its_content_marks_aside(tmp_path):
    """Marking a summary shared_machine after its run does not make it look newer: its commit stays the one that
    committed its content; a change of content moves it."""
    git = {"cwd": tmp_path, "check": True, "capture_output": True}
    subprocess.run(["git", "init", "-q"], **git)
    path = tmp_path / "train_summary.json"

    def commit(summary: dict) -> str:
        path.write_text(json.dumps(summary))
        subprocess.run(["git", "add", path.name], **git)
        env = ["-c", "user.name=t", "-c", "user.email=t@t"]
        subprocess.run(["git", *env, "commit", "-q", "-m", "m"], **git)
        return subprocess.run(["git", "rev-parse", "HEAD"], **git, text=True).stdout.strip()

    first = commit({"epochs": 10})
    commit({"epochs": 10, "shared_machine": True})
    assert reporting.summary_commit(path) == first
    changed = commit({"epochs": 20, "shared_machine": True})
    assert reporting.summary_commit(path) == changed


def test_a_stage_trained_beside_other_jobs_is_marked_in_its_summary(monkeypatch, tmp_path):
    monkeypatch.setattr(reproduction, "RUNS", tmp_path)
    for shared in (True, False):
        stage = reproduction.Stage(f"s{shared}", "student", "kd", "wrn-16-2", shared_machine=shared)
        stage.output_dir.mkdir()
        (stage.output_dir / "train_summary.json").write_text(json.dumps({"train_seconds": 60.0}))
        reproduction.mark_shared(stage)
        summary = json.loads((stage.output_dir / "train_summary.json").read_text())
        assert summary == ({"train_seconds": 60.0, "shared_machine": True} if shared else {"train_seconds": 60.0})


def test_a_bad_dataset_or_stage_is_refused_before_any_work_naming_it(layout, monkeypatch, capsys):
    """--dataset: a path (".", "/", "~" or existing) must be a folder, read from the repository when relative (as the
    trainings run); anything else must be a Hub id. --only: an unknown stage gets its close matches; repeated --only
    flags add up. All refused before anything runs."""
    monkeypatch.setattr(reproduction, "run", lambda *args, **kwargs: pytest.fail("it ran"))
    (layout / "data").mkdir()
    (layout / "file.txt").write_text("x")
    assert reproduction.dataset_problem("data") is None and reproduction.dataset_problem("./data") is None
    assert reproduction.dataset_problem("uoft-cs/cifar10") is None
    for dataset, message in [
        ("../nowhere/cifar10", "no such folder"),
        ("/nonexistent/cifar", "no such folder"),
        ("file.txt", "a file, not a folder"),
        ("~/surely-no-such-folder-here", "no such folder"),
        ("", "neither a folder"),
        ("a b", "neither a folder"),
    ]:
        with pytest.raises(SystemExit):
            reproduction.main(["--dataset", dataset, "--dry_run"])
        error = capsys.readouterr().err
        assert f"--dataset {dataset!r}" in error and message in error, dataset
    monkeypatch.setattr(reproduction, "dataset_problem", lambda dataset: None)
    with pytest.raises(SystemExit):
        reproduction.main(["--only", "wrn16-2-mixacm-t2O", "--dry_run"])
    assert "'wrn16-2-mixacm-t2O' (did you mean wrn16-2-mixacm-t20" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a shortened name: the stages holding each of its parts come first
        reproduction.main(["--only", "wrn16-2-mixacm-40ep", "--dry_run"])
    assert "(did you mean wrn16-2-mixacm-t20-mixup02-acm2k-inmem-40ep or " in capsys.readouterr().err
    ran = []
    monkeypatch.setattr(reproduction, "run", lambda stages, *args: ran.append(([s.name for s in stages], args[0])))
    reproduction.main(["--only", "wrn16-2-kd", "--only", "wrn16-2-natural", "--dry_run"])
    assert ran == [(["wrn16-2-kd", "wrn16-2-natural"], reproduction.DEFAULT_DATASET)]
    home = Path.home() / "surely-no-such-folder-here"
    ran.clear()
    reproduction.main(["--only", "wrn16-2-kd", "--dataset", "~/surely-no-such-folder-here", "--dry_run"])
    assert ran == [(["wrn16-2-kd"], str(home))]  # "~" expanded, as a shell would, before the trainings read it


def test_a_failed_training_names_its_log_and_a_dry_run_its_resume_point(layout, monkeypatch, capsys):
    stage = reproduction.Stage("s", "student", "kd", "wrn-16-2")
    for step, complete in ((10, True), (20, False)):  # the newest is half-written: the run resumes the one before
        (stage.output_dir / f"checkpoint-{step}").mkdir(parents=True)
        if complete:
            (stage.output_dir / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    reproduction.train(stage, reproduction.DEFAULT_DATASET, dry_run=True)
    assert capsys.readouterr().out.startswith("[train] s (resumes from checkpoint-10): accelerate launch")
    monkeypatch.setattr("subprocess.run", lambda *args, **kwargs: SimpleNamespace(returncode=3))
    with pytest.raises(SystemExit, match=f"failed \\(exit 3\\): its log is {stage.output_dir / 'train.log'}"):
        reproduction.train(stage, reproduction.DEFAULT_DATASET, dry_run=False)


def test_a_stage_in_training_elsewhere_is_not_launched_again(layout, monkeypatch, capsys):
    """While another process trains a stage (it holds the folder's lock), a rerun stops before launching (nothing
    appended to that run's log) and says to wait; a dry run says the same and lists no training command."""
    stage = reproduction.Stage("s", "student", "kd", "wrn-16-2")
    stage.output_dir.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from mixacm_hf.files import held_alone\n"
         f"with held_alone({str(stage.output_dir)!r}, '--output_dir'):\n print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        launched = []
        monkeypatch.setattr("subprocess.run", lambda *args, **kwargs: launched.append(args))
        reproduction.train(stage, reproduction.DEFAULT_DATASET, dry_run=True)
        out = capsys.readouterr().out
        assert "is being trained by another process now" in out and "accelerate launch" not in out
        with pytest.raises(SystemExit, match="s is being trained by another process now .*wait for it to end"):
            reproduction.train(stage, reproduction.DEFAULT_DATASET, dry_run=False)
        assert not launched and not (stage.output_dir / "train.log").exists()
    finally:
        holder.kill()
        holder.wait()
    reproduction.train(stage, reproduction.DEFAULT_DATASET, dry_run=True)  # released: the command is listed again
    assert "[train] s: accelerate launch" in capsys.readouterr().out
