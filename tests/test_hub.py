"""Hub integration: card metadata round trip, trust_remote_code loading, failed pushes, card updates, leaderboard."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml
from huggingface_hub import EvalResult, ModelCard, constants, metadata_load, parse_eval_result_entries
from test_models import load_without_package

from mixacm_hf import WideResNetConfig, WideResNetForImageClassification
from mixacm_hf.hub import (
    HubPushError,
    create_model_card,
    load_reports,
    push_robust_model,
    save_robust_model,
    update_model_card,
)
from mixacm_hf.robustness import evaluate_robustness, parse_attack

REPO = Path(__file__).resolve().parents[1]
SUMMARY = {
    "method": "mixacm", "student": "wrn-10-1", "teacher": None, "params": 77850, "epochs": 2.0, "steps": 10,
    "n_train": 320, "train_seconds": 65.2, "backward_passes_per_image": 1, "dataset": "uoft-cs/cifar10",
    "device": "cpu", "world_size": 1, "hyperparameters": {"method": "mixacm", "alpha_acm": 5000.0, "alpha_kld": 0.95},
}  # fmt: skip


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny WRN evaluated on random images (clean, FGSM, PGD-2, eps sweep) and saved with its card."""
    torch.manual_seed(0)
    config = WideResNetConfig.from_name("wrn-10-1", num_labels=10, id2label={i: f"class_{i}" for i in range(10)})
    model = WideResNetForImageClassification(config).eval()
    x, y = torch.rand(16, 3, 32, 32), torch.randint(0, 10, (16,))
    report = evaluate_robustness(
        model, (x, y), ["clean", "fgsm", "pgd-2"], n_examples=16, eps_sweep=[0, 4 / 255, 8 / 255],
        dataset_name="uoft-cs/cifar10", progress=False,
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("hub") / "wrn10-1-robust"
    save_robust_model(model, folder, [report], SUMMARY)
    return folder, model, report


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def _with_results(report, clean: float, n: int, **robust: float):
    """A copy of `report` that measured `robust` (attack name -> accuracy) on n examples, without a sweep."""
    attacks = {name: parse_attack(name).settings(report.eps, report.norm, report.seed) for name in ["clean", *robust]}
    return replace(
        report, clean_accuracy=clean, robust_accuracy=robust, n_examples=n, attacks=attacks, seconds={},
        intervals={}, sanity_checks=[], eps_sweep=None,
    )  # fmt: skip


def test_card_metadata_files_and_values(saved):
    folder, _, report = saved
    card = ModelCard.load(folder / "README.md")
    results = {result.metric_config: result for result in card.data.eval_results}
    assert list(results) == ["clean", "fgsm", "pgd-2"]
    expected = {"clean": report.clean_accuracy, **report.robust_accuracy}
    for attack, result in results.items():
        assert result.metric_value == round(100 * expected[attack], 2)
        assert (result.task_type, result.dataset_type, result.dataset_split) == (
            "image-classification", "uoft-cs/cifar10", "test",
        )  # fmt: skip
        assert result.metric_type == "accuracy" and result.metric_args["n_examples"] == 16
        low, high = report.intervals[attack]
        assert result.metric_args["interval_95"] == [round(100 * low, 2), round(100 * high, 2)]
    assert results["clean"].metric_name == "Clean accuracy"
    assert results["pgd-2"].metric_name == "Robust accuracy (PGD-2, Linf, eps=8/255)"
    assert results["pgd-2"].metric_args["steps"] == 2 and results["pgd-2"].metric_args["norm"] == "Linf"
    assert results["fgsm"].metric_args["eps"] == pytest.approx(8 / 255)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", report.date)  # when the evaluation finished, UTC
    assert all(result.metric_args["date"] == report.date for result in results.values())
    # the same results in the Hub's evaluation-results format, parsed by huggingface_hub
    entries = parse_eval_result_entries(yaml.safe_load((folder / ".eval_results" / "robustness.yaml").read_text()))
    assert [(e.task_id, e.dataset_id, e.value, e.date) for e in entries] == [
        (task, "uoft-cs/cifar10", results[attack].metric_value, report.date)
        for task, attack in [("clean", "clean"), ("linf-8-255-fgsm", "fgsm"), ("linf-8-255-pgd-2", "pgd-2")]
    ]
    assert [json.loads(e.notes)["args"] for e in entries] == [r.metric_args for r in results.values()]

    metadata = metadata_load(folder / "README.md")
    assert metadata["library_name"] == "transformers" and metadata["pipeline_tag"] == "image-classification"
    assert {"adversarial-robustness", "mixacm", "knowledge-distillation"} <= set(metadata["tags"])
    assert metadata["datasets"] == ["uoft-cs/cifar10"] and metadata["license"] == "apache-2.0"
    assert metadata["model-index"][0]["name"] == "wrn10-1-robust"
    assert metadata["mixacm"]["architecture"] == "WRN-10-1" and metadata["mixacm"]["params"] == 77850

    assert "![Accuracy against the attack budget eps](robustness_vs_eps.png)" in card.text
    assert (folder / "robustness_vs_eps.png").read_bytes().startswith(b"\x89PNG")
    for name in ("model.safetensors", "modeling_wide_resnet.py", "preprocessor_config.json", "train_summary.json"):
        assert (folder / name).is_file(), name
    assert not list(folder.glob("*.bin"))
    assert [r.to_dict() for r in load_reports(folder)] == [report.to_dict()]
    assert "| PGD-2 | Linf, eps=8/255 |" in card.text and "Sanity checks" in card.text


@pytest.mark.parametrize(
    ("method", "tags", "cited"),
    [
        ("mixacm", {"mixacm", "knowledge-distillation"}, None),
        ("acm-only", {"mixacm", "knowledge-distillation"}, None),
        ("kd", {"knowledge-distillation"}, "hinton2015distilling"),
        ("natural", set(), None),
        ("pgd-at", {"adversarial-training"}, "madry2018towards"),
        ("n-fgsm", {"adversarial-training"}, "dejorge2022nfgsm"),
        ("trades", {"adversarial-training", "trades"}, "zhang2019trades"),
        (None, set(), None),  # a model evaluated here, trained elsewhere
    ],
)
def test_cards_are_tagged_and_cited_by_the_method_that_trained_the_model(method, tags, cited):
    summary = {**SUMMARY, "method": method, "hyperparameters": {"method": method}} if method else None
    card = create_model_card("m", [], summary)
    assert set(card.data.tags) == {"adversarial-robustness", *tags}
    cited_keys = set(re.findall(r"@\w+\{(\w+),", card.text))
    assert cited_keys == {"awais2021mixacm", "croce2020reliable", *([cited] if cited else [])}


def test_card_usage_snippet_is_valid_python_within_120_columns_for_a_long_repo_id(saved):
    _, _, report = saved
    repo_id = "model_cards/teacher-wrn16-2-nfgsm-20ep-with-a-much-longer-name-than-usual"
    text = create_model_card("robust", [report], repo_id=repo_id).text
    snippet = text.split("```python\n", 1)[1].split("```", 1)[0]
    compile(snippet, "usage", "exec")
    assert snippet.count(repo_id) == 1 and max(len(line) for line in snippet.splitlines()) <= 120


def test_loads_with_remote_code_and_pipeline_without_the_package(saved, tmp_path):
    folder, model, _ = saved
    x = torch.rand(2, 3, 32, 32)
    result = load_without_package(folder, x, tmp_path)  # AutoModelForImageClassification, AutoModel and pipeline
    with torch.no_grad():
        assert torch.allclose(torch.tensor(result["logits"]), model(x).logits, atol=1e-6)
    assert result["top"].startswith("class_")


def test_push_in_offline_mode_is_a_clear_error_and_keeps_the_folder(saved, monkeypatch):
    folder = saved[0]
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    before = _snapshot(folder)
    with pytest.raises(HubPushError, match="offline mode") as error:
        push_robust_model(folder, "someone/wrn10-1-robust", private=True)
    assert f"python -m mixacm_hf.hub push {folder} someone/wrn10-1-robust --private" in str(error.value)
    assert "is intact" in str(error.value)
    assert _snapshot(folder) == before


def test_push_command_to_unreachable_endpoint_exits_nonzero(saved, tmp_path):
    folder = saved[0]
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{probe.getsockname()[1]}"
    before = _snapshot(folder)
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf"), "HF_TOKEN": "hf_test"}
    done = subprocess.run(
        [sys.executable, "-m", "mixacm_hf.hub", "push", str(folder), "someone/robust", "--endpoint", endpoint],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1
    assert "Could not push" in done.stderr and "Traceback" not in done.stderr
    assert f"mixacm_hf.hub push {folder} someone/robust --endpoint {endpoint}" in done.stderr
    assert _snapshot(folder) == before


def test_update_card_keeps_other_metadata_and_replaces_remeasured_metrics(saved, tmp_path, caplog):
    folder = tmp_path / "model"
    shutil.copytree(saved[0], folder)
    report = saved[2]
    card = ModelCard.load(folder / "README.md")
    card.data.base_model = "someone/robust-teacher"
    card.data.tags.append("cifar10")
    card.data.eval_results.append(
        EvalResult(task_type="image-classification", dataset_type="cifar10-c", dataset_name="CIFAR-10-C",
                   metric_type="accuracy", metric_value=41.0, metric_name="Corruption accuracy")
    )  # fmt: skip
    card.text += "\n## Notes\n\nWritten by hand.\n"
    card.save(folder / "README.md")
    old = {r.metric_config: r.metric_value for r in card.data.eval_results}

    updated = update_model_card(folder, _with_results(report, clean=0.75, n=16, **{"pgd-2": 0.5, "pgd-5": 0.25}))

    reloaded = ModelCard.load(folder / "README.md")
    assert str(reloaded) == str(updated)
    assert reloaded.data.base_model == "someone/robust-teacher" and "cifar10" in reloaded.data.tags
    assert reloaded.data["mixacm"] == card.data["mixacm"] and reloaded.data.license == "apache-2.0"
    values = {
        r.metric_name: (r.metric_value, (r.metric_args or {}).get("n_examples")) for r in reloaded.data.eval_results
    }
    expected = {
        "Clean accuracy": (75.0, 16),
        "Robust accuracy (FGSM, Linf, eps=8/255)": (old["fgsm"], 16),
        "Robust accuracy (PGD-2, Linf, eps=8/255)": (50.0, 16),
        "Corruption accuracy": (41.0, None),
        "Robust accuracy (PGD-5, Linf, eps=8/255)": (25.0, 16),
    }
    assert values == expected
    # a quick check on fewer examples never replaces a measurement on more: kept, with a warning
    with caplog.at_level("WARNING", logger="mixacm_hf.hub.results"):
        quick = update_model_card(folder, _with_results(report, clean=0.25, n=8, **{"pgd-2": 0.125}))
    values = {r.metric_name: (r.metric_value, (r.metric_args or {}).get("n_examples")) for r in quick.data.eval_results}
    assert values == expected
    kept = [line for line in caplog.messages if "keeping the measurement on n=16, not the new one on n=8" in line]
    assert sorted(line.split(" on ")[0] for line in kept) == [
        "Clean accuracy",
        "Robust accuracy (PGD-2, Linf, eps=8/255)",
    ]
    caplog.clear()  # the next update warns of its own measurements only, never of the older quick check again
    with caplog.at_level("WARNING", logger="mixacm_hf.hub.results"):
        update_model_card(folder, _with_results(report, clean=0.75, n=16, **{"pgd-2": 0.5}))
    assert not [line for line in caplog.messages if "keeping" in line]
    assert "Written by hand." in reloaded.text
    assert (
        "| PGD-2 | Linf, eps=8/255 | 50.00 |" in reloaded.text
        and "| PGD-5 | Linf, eps=8/255 | 25.00 |" in reloaded.text
    )
    assert len(load_reports(folder)) == 4 and metadata_load(folder / "README.md")["base_model"]


def test_run_mixacm_ends_with_card_and_a_failed_push_keeps_it(tmp_path, cifar10_path):
    from training.run_mixacm import main as run_main

    output = tmp_path / "student"
    with pytest.raises(SystemExit) as exit_info:
        run_main(
            ["--student", "wrn-10-1", "--method", "natural", "--dataset", str(cifar10_path), "--max_train_samples",
             "64", "--per_device_train_batch_size", "16", "--max_steps", "2",
             "--report_to", "none", "--use_cpu", "true", "--save_strategy", "no", "--disable_tqdm", "true",
             "--output_dir", str(output), "--eval_attacks", "clean,pgd-5", "--eval_n", "16", "--eval_eps_sweep",
             "0,8/255", "--card_dataset_id", "uoft-cs/cifar10", "--push_to_hub", "--hub_model_id", "someone/student"]
        )  # fmt: skip
    assert str(exit_info.value.code).startswith("error: Could not push") and "is intact" in str(exit_info.value.code)
    (report,) = load_reports(output)
    assert report.n_examples == 16 and set(report.attacks) == {"clean", "pgd-5"}
    results = {r.metric_config: r for r in ModelCard.load(output / "README.md").data.eval_results}
    assert results["clean"].metric_value == round(100 * report.clean_accuracy, 2)
    assert results["pgd-5"].metric_value == round(100 * report.robust_accuracy["pgd-5"], 2)
    assert (
        results["pgd-5"].dataset_name == "CIFAR-10 (JPEG copy)" and results["pgd-5"].dataset_type == "uoft-cs/cifar10"
    )
    assert (output / "robustness_vs_eps.png").is_file() and (output / "model.safetensors").is_file()
    summary = json.loads((output / "train_summary.json").read_text())
    assert summary["n_train"] == 64 and summary["method"] == "natural"

    update_model_card(output, _with_results(report, clean=0.5, n=16, **{"pgd-5": 0.25}))  # same local dataset copy
    results = ModelCard.load(output / "README.md").data.eval_results
    assert [(r.dataset_type, r.metric_config, r.metric_value) for r in results] == [
        ("uoft-cs/cifar10", "clean", 50.0), ("uoft-cs/cifar10", "pgd-5", 25.0),
    ]  # fmt: skip


def test_evaluate_robustness_cli_updates_the_card_then_fails_push_cleanly(saved, tmp_path, cifar10_path, capsys):
    from training.evaluate_robustness import main as evaluate_main

    folder = tmp_path / "model"
    shutil.copytree(saved[0], folder)
    before = {
        r.metric_config: r.metric_args["n_examples"] for r in ModelCard.load(folder / "README.md").data.eval_results
    }
    argv = ["--model", str(folder), "--dataset", str(cifar10_path), "--attacks", "clean,pgd-1", "--n_examples", "8",
            "--output", str(tmp_path / "report.json"), "--update_card",
            "--card_dataset_id", "uoft-cs/cifar10"]  # fmt: skip
    report = evaluate_main(argv)
    after = {r.metric_config: r for r in ModelCard.load(folder / "README.md").data.eval_results}
    assert after["pgd-1"].metric_value == round(100 * report.robust_accuracy["pgd-1"], 2)
    assert after["clean"].metric_args["n_examples"] == 8 and after["fgsm"].metric_args["n_examples"] == before["fgsm"]
    snapshot = _snapshot(folder)
    with pytest.raises(SystemExit) as exit_info:
        evaluate_main([*argv[:-3], "--push_to_hub", "--hub_model_id", "org/model"])
    assert exit_info.value.code not in (0, None)
    assert _snapshot(folder).keys() == snapshot.keys()
    assert "org/model" in capsys.readouterr().err + str(exit_info.value.code)


def test_cards_render_with_the_template_of_the_code_that_runs(saved, monkeypatch):
    """A run that outlived an upgrade of the package read the new template.md with its old code at its end and lost
    its card (a newer template needs context the old code does not give): the template is read at import."""
    from pathlib import Path

    from mixacm_hf.hub import cards

    _, _, report = saved
    expected = create_model_card("robust", [report]).text
    read_text = Path.read_text

    def refuse_the_template(path, *args, **kwargs):
        assert path != cards.TEMPLATE, "template.md read at render time"
        return read_text(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", refuse_the_template)
    assert create_model_card("robust", [report]).text == expected
