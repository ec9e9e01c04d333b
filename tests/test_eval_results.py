"""Published results formats: `.eval_results/*.yaml` beside the model-index (huggingface_hub's own entries, the same
values through card updates, read by the leaderboard alone) and `per_example.parquet` (round trip through `datasets`,
paired comparisons of two folders equal to `RobustnessReport.compare`, refused for other images or settings)."""

import importlib.util
import json
import random
import re
from dataclasses import replace
from pathlib import Path

import pandas
import pytest
import yaml
from huggingface_hub import EvalResult, ModelCard, metadata_load, metadata_save, parse_eval_result_entries

from mixacm_hf.hub import (
    EVAL_RESULTS_NAME,
    PER_EXAMPLE_NAME,
    compare_models,
    format_comparison,
    load_eval_results,
    main,
    read_per_example,
    task_id,
    update_model_card,
    write_model_card,
)
from mixacm_hf.hub import folders as folders_module
from mixacm_hf.hub.leaderboard import leaderboard
from mixacm_hf.hub.leaderboard_format import comparisons, format_leaderboard
from mixacm_hf.robustness import RobustnessReport, parse_attack, wilson_interval

REPO = Path(__file__).resolve().parents[1]
EPS = 8 / 255
SUMMARY = {"method": "natural", "params": 77850, "epochs": 1.0, "train_seconds": 1.0, "backward_passes_per_image": 1}


def _report(model: str, seed: int, rates: dict[str, float], n: int = 200, start: int = 0, eps: float = EPS):
    """A report of `model` on rows start..start+n-1 of uoft-cs/cifar10's test split: each attack keeps an image the
    previous one kept with probability `rates[attack]` (clean first), records and accuracies consistent."""
    draw = random.Random(seed)
    flags, kept = {}, [True] * n
    for name, rate in rates.items():
        kept = [flag and draw.random() < rate for flag in kept]
        flags[name] = kept
    per_example = {"index": list(range(start, start + n)), **flags, "all": kept}
    accuracy = {name: sum(column) / n for name, column in per_example.items() if name != "index"}
    return RobustnessReport(
        clean_accuracy=accuracy.pop("clean"), robust_accuracy=accuracy, n_examples=n, eps=eps, norm="Linf",
        attacks={name: parse_attack(name).settings(eps, "Linf", 0) for name in rates}, seed=0,
        seconds=dict.fromkeys(rates, 2.0), model={"name": f"outputs/{model}", "revision": None},
        dataset={"name": "uoft-cs/cifar10", "split": "test", "revision": None},
        intervals={name: wilson_interval(sum(column), n) for name, column in per_example.items() if name != "index"},
        per_example=per_example, date="2026-01-02T03:04:05Z",
    )  # fmt: skip


def _folder(root: Path, name: str, *reports: RobustnessReport) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "train_summary.json").write_text(json.dumps(SUMMARY))  # what update_model_card reads
    write_model_card(folder, list(reports), SUMMARY)
    return folder


def _entries(folder: Path):
    (path,) = (folder / ".eval_results").glob("*.yaml")
    return parse_eval_result_entries(yaml.safe_load(path.read_text()))


def _agree(folder: Path) -> list[EvalResult]:
    """Assert that the folder's `.eval_results` entries say what its model-index says, result by result."""
    results = ModelCard.load(folder / "README.md").data.eval_results
    entries = _entries(folder)
    assert len(entries) == len(results)
    for entry, result in zip(entries, results, strict=True):
        notes = json.loads(entry.notes)
        args = result.metric_args or {}
        assert (entry.dataset_id, entry.dataset_revision, entry.value) == (
            result.dataset_type, result.dataset_revision, result.metric_value,
        )  # fmt: skip
        assert (notes.get("split"), notes.get("dataset_name"), notes.get("metric_name")) == (
            result.dataset_split, result.dataset_name, result.metric_name,
        )  # fmt: skip
        assert notes.get("attack") == result.metric_config and notes.get("args", {}) == args
        assert entry.date == args.get("date") and entry.task_id == task_id(result.metric_config or
                                                                           result.metric_name, args)  # fmt: skip
    return results


def test_task_ids_name_threat_model_budget_and_attack():
    aa = parse_attack("autoattack").settings(EPS, "Linf", 0)
    assert task_id("autoattack", aa) == "linf-8-255-autoattack-standard"
    custom = parse_attack("autoattack:apgd-ce+square").settings(EPS, "Linf", 0)
    assert task_id("autoattack:apgd-ce+square", custom) == "linf-8-255-autoattack-custom-apgd-ce-square"
    assert task_id("pgd-20", parse_attack("pgd-20").settings(0.5, "L2", 0)) == "l2-0.5-pgd-20"
    assert task_id("clean", {"type": "clean", "n_examples": 10}) == "clean"
    assert task_id("their-pgd", {"norm": "Linf", "eps": "8/255"}) == "linf-8-255-their-pgd"
    assert task_id("Corruption accuracy", {}) == "corruption-accuracy"


def test_saved_folder_has_eval_results_equal_to_its_model_index(tmp_path):
    report = _report("a", 0, {"clean": 0.8, "pgd-20": 0.6, "autoattack": 0.9})
    folder = _folder(tmp_path, "a", report)
    results = _agree(folder)
    entries = {entry.task_id: entry for entry in _entries(folder)}
    assert list(entries) == ["clean", "linf-8-255-pgd-20", "linf-8-255-autoattack-standard"]
    aa = entries["linf-8-255-autoattack-standard"]
    assert aa.dataset_id == "uoft-cs/cifar10" and aa.value == round(100 * report.robust_accuracy["autoattack"], 2)
    assert aa.date == "2026-01-02T03:04:05Z" and results[2].metric_args["date"] == aa.date
    notes = json.loads(aa.notes)
    assert notes["split"] == "test" and notes["args"]["n_examples"] == 200 and notes["args"]["version"] == "standard"
    assert notes["args"]["interval_95"] == [round(100 * b, 2) for b in report.intervals["autoattack"]]
    assert [entry.task_id for entry in load_eval_results(folder)] == list(entries)
    assert "`.eval_results/robustness.yaml`" in (folder / "README.md").read_text()


def test_card_updates_keep_both_blocks_in_agreement(tmp_path):
    folder = _folder(tmp_path, "a", _report("a", 0, {"clean": 0.8, "pgd-20": 0.6}))
    card = ModelCard.load(folder / "README.md")
    card.data.eval_results.append(
        EvalResult(task_type="image-classification", dataset_type="cifar10-c", dataset_name="CIFAR-10-C",
                   metric_type="accuracy", metric_value="41.0 ± 2", metric_name="Corruption accuracy")
    )  # fmt: skip
    card.save(folder / "README.md")
    new = _report("a", 1, {"clean": 0.7, "pgd-20": 0.5, "autoattack": 0.9}, n=300)
    update_model_card(folder, new)
    results = _agree(folder)
    values = {result.metric_name: result.metric_value for result in results}
    assert values["Robust accuracy (PGD-20, Linf, eps=8/255)"] == round(100 * new.robust_accuracy["pgd-20"], 2)
    assert values["Robust accuracy (AutoAttack, Linf, eps=8/255)"] == round(100 * new.robust_accuracy["autoattack"], 2)
    entries = {entry.task_id: entry.value for entry in _entries(folder)}
    assert entries["linf-8-255-autoattack-standard"] == round(100 * new.robust_accuracy["autoattack"], 2)
    assert entries["corruption-accuracy"] == "41.0 ± 2" and entries["clean"] == round(100 * new.clean_accuracy, 2)
    # the records of both reports, each under its own number
    assert sorted(read_per_example(folder)) == [0, 1] and read_per_example(folder)[1].n_examples == 300


def test_leaderboard_ranks_a_folder_with_only_eval_results_as_before(tmp_path):
    rates = {"a": 0.9, "b": 0.5, "c": 0.7}
    folders = [_folder(tmp_path, name, _report(name, seed, {"clean": 0.8, "autoattack": rate}))
               for seed, (name, rate) in enumerate(rates.items())]  # fmt: skip
    before = leaderboard(folders)
    for folder in folders[1:]:
        metadata = metadata_load(folder / "README.md")
        del metadata["model-index"]
        metadata_save(folder / "README.md", metadata)
        assert "model-index" not in metadata_load(folder / "README.md") and "mixacm" in metadata
    after = leaderboard(folders)
    assert after.notes == [] and [row.model for row in after.tables[0].rows] == ["a", "c", "b"]
    assert [(t.title, t.rows) for t in after.tables] == [(t.title, t.rows) for t in before.tables]
    assert format_leaderboard(after) == format_leaderboard(before)
    (folders[2] / EVAL_RESULTS_NAME).write_text("dataset: not a list\n")
    notes = leaderboard(folders).notes
    assert notes == [f"{folders[2] / EVAL_RESULTS_NAME}: not a list of evaluation results (a dict, not a list of "
                     "entries); skipped"]  # fmt: skip


def test_per_example_records_round_trip_through_datasets_and_pandas(tmp_path):
    from datasets import load_dataset

    first = _report("a", 0, {"clean": 0.8, "fgsm": 0.7, "pgd-20": 0.8}, n=50)
    second = _report("a", 1, {"clean": 0.8, "autoattack": 0.6}, n=30, eps=4 / 255)
    folder = _folder(tmp_path, "a", first, second)
    path = folder / PER_EXAMPLE_NAME
    rows = load_dataset("parquet", data_files=str(path), split="train", cache_dir=str(tmp_path / "cache"))
    assert rows.column_names == [
        "report", "model", "model_revision", "dataset", "dataset_name", "dataset_revision", "split", "norm", "eps",
        "n_examples", "seed", "attacks", "index", "clean", "fgsm", "pgd-20", "autoattack", "all",
    ]  # fmt: skip
    assert rows.num_rows == 80
    frame = pandas.read_parquet(path)
    assert frame.equals(rows.to_pandas())
    for number, report in enumerate((first, second)):
        mine = frame[frame.report == number]
        assert mine["index"].tolist() == report.per_example["index"]
        for name in ("clean", *report.attacks, "all"):
            assert mine[name].tolist() == report.per_example[name], (number, name)
        assert set(mine.eps) == {report.eps} and set(mine.n_examples) == {report.n_examples}
        assert {json.dumps(json.loads(value)) for value in mine.attacks} == {json.dumps(report.attacks)}
    assert frame[frame.report == 1]["fgsm"].isna().all() and frame[frame.report == 0]["autoattack"].isna().all()
    text = (folder / "README.md").read_text()
    snippet = text.split("```python\n", 1)[1].split("```", 1)[0]
    assert 'load_dataset("parquet", data_files=path, split="train")' in snippet
    compile(snippet, "per-example", "exec")


def test_records_that_are_no_evidence_are_not_published(tmp_path, caplog):
    good = _report("a", 0, {"clean": 0.8, "pgd-20": 0.6})
    folder = _folder(tmp_path, "a", good)
    assert (folder / PER_EXAMPLE_NAME).is_file()
    with caplog.at_level("WARNING", logger="mixacm_hf.hub.per_example"):
        write_model_card(folder, [replace(good, clean_accuracy=0.1), replace(good, per_example=None)], SUMMARY)
    assert "reports [0] left out, their records are no evidence (report 0 (outputs/a): its 'clean' flags" in caplog.text
    assert not (folder / PER_EXAMPLE_NAME).exists()  # the records of the reports given, none
    assert "Per-example records" not in (folder / "README.md").read_text()


def test_a_failed_write_leaves_no_eval_results_behind(tmp_path, monkeypatch):
    folder = tmp_path / "a"
    folder.mkdir()
    write = folders_module.atomic_write_bytes
    attempts = []

    def fail_on_card(path, data):
        attempts.append(str(Path(path).relative_to(folder)))
        if Path(path).name == "README.md":
            raise PermissionError(f"{path} is read-only")
        return write(path, data)

    monkeypatch.setattr(folders_module, "atomic_write_bytes", fail_on_card)
    report = _report("a", 0, {"clean": 0.8, "pgd-20": 0.6})
    with pytest.raises(PermissionError, match="read-only"):
        write_model_card(folder, [report], SUMMARY)
    assert attempts == ["robustness.json", "per_example.parquet", ".eval_results/robustness.yaml", "README.md"]
    assert sorted(path.name for path in folder.iterdir()) == [".README.md.lock"]
    # a removal is rolled back too: the records of a folder whose new reports have none come back
    monkeypatch.setattr(folders_module, "atomic_write_bytes", write)
    write_model_card(folder, [report], SUMMARY)
    before = {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}
    monkeypatch.setattr(folders_module, "atomic_write_bytes", fail_on_card)
    with pytest.raises(PermissionError, match="read-only"):
        write_model_card(folder, [replace(report, per_example=None)], SUMMARY)
    assert {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()} == before
    assert PER_EXAMPLE_NAME in {path.name for path in before}


def test_a_card_update_onto_unreadable_files_is_refused_naming_the_file_before_any_work(tmp_path):
    from training.evaluate_robustness import main as evaluate_main

    report = _report("a", 0, {"clean": 0.8, "pgd-20": 0.6})
    broken = {
        "README.md": ("---\nmodel-index: [unclosed\n---\ntext\n", r"README\.md cannot be read \(while parsing a flow"),
        "robustness.json": ("{not json", r"robustness\.json cannot be read \(Expecting property name"),
        "train_summary.json": ("[1, 2]", r"train_summary\.json cannot be read \(a JSON list, not an object\)"),
        "README.md ": ("---\nmodel-index:\n- name: x\n  results:\n  - task: 5\n---\n",
                       r"README\.md cannot be read \(Invalid `model_index` in metadata cannot be parsed: [^)`]*\)"),
    }  # fmt: skip
    for name, (text, message) in broken.items():
        folder = _folder(tmp_path, name.strip().replace(".", "-") + ("-index" if name.endswith(" ") else ""), report)
        (folder / name.strip()).write_text(text)
        before = {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}
        with pytest.raises(ValueError, match=message + r".*: fix it, or move it out of the folder"):
            update_model_card(folder, report)
        argv = ["--model", str(folder), "--dataset", str(tmp_path / "no-such-dataset"), "--update_card"]
        with pytest.raises(SystemExit, match=r"^error: \S+" + message):  # before the dataset is even looked at
            evaluate_main(argv)
        assert {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()} == before


@pytest.fixture
def three(tmp_path):
    """Models a and b evaluated on rows 0..199 with the same settings; c on rows 1000..1199; d at eps 4/255."""
    rates = {"clean": 0.8, "pgd-20": 0.6, "autoattack": 0.9}
    reports = {
        "a": _report("a", 0, rates), "b": _report("b", 1, {**rates, "pgd-20": 0.5}),
        "c": _report("c", 2, rates, start=1000), "d": _report("d", 3, rates, eps=4 / 255),
    }  # fmt: skip
    return {name: _folder(tmp_path, name, report) for name, report in reports.items()}, reports


@pytest.mark.parametrize("attack", ["autoattack", "pgd-20", "clean", "all"])
def test_comparison_of_two_folders_is_compare_on_their_reports(three, attack):
    folders, reports = three
    expected = reports["a"].compare(reports["b"], attack)
    result = compare_models(folders["a"], folders["b"], attack=attack)
    assert {key: result[key] for key in expected} == expected
    assert result["reports"] == [0, 0] and result["n_common"] == 200 and result["norm"] == "Linf"
    assert result["difference"] == pytest.approx(
        reports["a"].robust_accuracy.get(attack, reports["a"].clean_accuracy)
        - reports["b"].robust_accuracy.get(attack, reports["b"].clean_accuracy)
    )  # fmt: skip


def test_comparison_is_refused_for_other_images_or_settings(three):
    folders, reports = three
    with pytest.raises(ValueError, match="share no evaluated example") as refused:
        reports["a"].compare(reports["c"], "autoattack")
    with pytest.raises(ValueError, match=re.escape(str(refused.value))):
        compare_models(folders["a"], folders["c"])
    with pytest.raises(ValueError, match=r"report 0\) vs .*: These reports are not paired measurements: threat model"):
        compare_models(folders["a"], folders["d"])
    with pytest.raises(ValueError, match=r"no per-example 'autoattack' records with threat model L2"):
        compare_models(folders["a"], folders["b"], threat_model="L2")
    with pytest.raises(ValueError, match=re.escape("eps=8 spans the whole [0, 1] pixel range")):
        compare_models(folders["a"], folders["b"], threat_model="Linf", eps=8)
    with pytest.raises(ValueError, match="no per_example.parquet"):
        compare_models(folders["a"], REPO / "model_cards" / "wrn16-1-mixacm")


def test_a_per_example_file_edited_to_contradict_its_folder_or_card_is_refused_naming_it(three):
    folders, reports = three
    path = folders["a"] / PER_EXAMPLE_NAME
    records = pandas.read_parquet(path)
    records["pgd-20"] = ~records["pgd-20"]  # a different accuracy than robustness.json's and the card's
    records.to_parquet(path)
    for source in (folders["a"], path):
        with pytest.raises(ValueError, match=r"per_example\.parquet, report 0, 'pgd-20': its records \(accuracy "
                           r"[0-9.]+%\) are not those of the folder's robustness\.json"):  # fmt: skip
            compare_models(source, folders["b"], attack="pgd-20")
    records["pgd-20"] = ~records["pgd-20"]
    records.to_parquet(path)
    saved = json.loads((folders["a"] / "robustness.json").read_text())
    saved[0]["per_example"]["clean"] = records["clean"].tolist()  # both files kept in step, the card not
    flipped = ~records["clean"]
    records["clean"], saved[0]["per_example"]["clean"] = flipped, flipped.tolist()
    records.to_parquet(path)
    (folders["a"] / "robustness.json").write_text(json.dumps(saved))
    card_value = round(100 * reports["a"].clean_accuracy, 2)
    with pytest.raises(ValueError, match=rf"'clean': its records give [0-9.]+%, but README\.md's model-index says "
                       rf"{card_value}% for that measurement"):  # fmt: skip
        compare_models(folders["a"], folders["b"], attack="clean")
    (folders["a"] / "robustness.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"robustness\.json cannot be read \(Expecting .*cannot be checked against it"):
        compare_models(folders["a"], folders["b"], attack="clean")


def test_cli_html_and_space_give_the_numbers_of_compare(three, capsys, tmp_path):
    folders, reports = three
    expected = reports["a"].compare(reports["b"], "autoattack")
    main(["compare", str(folders["a"]), str(folders["b"]), "--json"])
    printed = json.loads(capsys.readouterr().out)
    assert {key: printed[key] for key in expected} == expected
    main(["compare", str(folders["a"]), str(folders["b"]), "--threat_model", "Linf", "--eps", "8/255"])
    text = capsys.readouterr().out
    low, high = (100 * bound for bound in expected["interval"])
    assert f"difference {100 * expected['difference']:+.2f} points, 95% interval [{low:+.2f}, {high:+.2f}]" in text
    assert f"exact McNemar p = {expected['p_value']:.3g}" in text and "n = 200 common images" in text
    with pytest.raises(SystemExit, match=r"^error: .*share no evaluated example"):
        main(["compare", str(folders["a"]), str(folders["c"])])

    board = leaderboard([folders[name] for name in "abc"])
    (table,) = board.tables
    order = [row.model for row in table.rows]
    pairs = comparisons(table)
    first, second = order.index("a"), order.index("b")
    named = format_comparison({**compare_models(folders["a"], folders["b"]), "first": "a", "second": "b"})
    assert pairs[f"{first}-{second}"] == named
    assert pairs[f"{order.index('a')}-{order.index('c')}"].startswith("Not compared: ")
    main(["leaderboard", *(str(folders[name]) for name in "abc"), "--format", "html", "-o", str(tmp_path / "lb.html")])
    html = (tmp_path / "lb.html").read_text()
    embedded = json.loads(re.search(r'<script type="application/json" class="comparisons">(.*?)</script>', html,
                                    re.DOTALL).group(1))  # fmt: skip
    assert embedded == pairs

    if importlib.util.find_spec("gradio") is not None:
        spec = importlib.util.spec_from_file_location("leaderboard_app", REPO / "spaces" / "leaderboard" / "app.py")
        app = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(app)
        assert app.comparison(app.comparable(board)[table.title], "a", "b") == named


def test_a_file_that_is_not_per_example_records_is_refused_naming_it(tmp_path):
    path = tmp_path / PER_EXAMPLE_NAME
    pandas.DataFrame({"report": [0], "index": [3], "clean": [True]}).to_parquet(path)
    with pytest.raises(ValueError, match=re.escape(f"{path}: not a per_example.parquet of mixacm-hf: columns")):
        read_per_example(tmp_path)
    path.write_bytes(b"not parquet")
    with pytest.raises(ValueError, match=re.escape(f"{path}: not a parquet file")):
        read_per_example(path)
