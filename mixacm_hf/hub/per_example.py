"""Per-example records published beside a card: `per_example.parquet`, one row per evaluated image and report, read
back as reports that `RobustnessReport.compare` pairs exactly as the reports of robustness.json.

Columns: `report` (the report's position in robustness.json), what the report measured (`model`, `model_revision`,
`dataset` (its Hub id or local-copy type), `dataset_name`, `dataset_revision`, `split`, `norm`, `eps`, `n_examples`,
`seed`, `attacks`: the attacks' settings as JSON), `index` (the split row), then whether the image was classified
correctly: `clean`, one column per attack and `all` (empty where that report did not run the attack). Rows of
different reports (other n, eps, attacks or settings) never mix: filter on `report`.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..robustness import RobustnessReport

PER_EXAMPLE_NAME = "per_example.parquet"
KEYS = {
    "report": pa.int64(), "model": pa.string(), "model_revision": pa.string(), "dataset": pa.string(),
    "dataset_name": pa.string(), "dataset_revision": pa.string(), "split": pa.string(), "norm": pa.string(),
    "eps": pa.float64(), "n_examples": pa.int64(), "seed": pa.int64(), "attacks": pa.string(), "index": pa.int64(),
}  # fmt: skip
logger = logging.getLogger(__name__)


def _checked_flags(report: RobustnessReport, position: int) -> dict[str, list[Any]]:
    """The report's split indices ("index") and correctness flags per column ("clean", each attack, "all"), each
    checked against the report (`RobustnessReport.records`); common corruptions have no per-example column.

    Raises:
        ValueError: records that are no evidence (malformed, incomplete or contradicting the report's accuracies), or
            an attack named as one of the file's other columns.
    """
    attacks = [name for name in report.attacks if name not in (report.corruptions or {})]
    names = dict.fromkeys(["clean", *attacks, *report.per_example, "all"])
    names.pop("index", None)
    clashes = sorted(names.keys() & KEYS.keys())
    if clashes:
        raise ValueError(f"Report {position}: attack names {clashes} clash with the columns of {PER_EXAMPLE_NAME}.")
    columns = {name: report.records(name, f"report {position}") for name in names}
    index = columns["clean"][0]
    return {"index": index, **{name: list(flags) for name, (_, flags) in columns.items()}}


def per_example_parquet(reports: Sequence[RobustnessReport]) -> bytes | None:
    """The `per_example.parquet` of a folder's reports (in robustness.json's order) as bytes; None when no report
    has records that check out. Reports without records are left out, and so, with one warning for all, are reports
    whose records are no evidence (malformed, incomplete or contradicting their accuracies)."""
    rows: dict[str, list[Any]] = {key: [] for key in KEYS}
    flags: dict[str, list[bool | None]] = {}
    refused: dict[int, str] = {}
    for position, report in enumerate(reports):
        if report.per_example is None:
            continue
        try:
            records = _checked_flags(report, position)
        except ValueError as error:
            refused[position] = str(error)
            continue
        identity = report.dataset.get("identity") or {}
        n = len(records["index"])
        facts = {
            "report": position, "model": report.model.get("name"), "model_revision": report.model.get("revision"),
            "dataset": identity.get("type") or report.dataset.get("name"),
            "dataset_name": identity.get("name") or report.dataset.get("name"),
            "dataset_revision": identity.get("revision") or report.dataset.get("revision"),
            "split": report.dataset.get("split"), "norm": report.norm, "eps": float(report.eps),
            "n_examples": report.n_examples, "seed": report.seed, "attacks": json.dumps(report.attacks),
        }  # fmt: skip
        done = len(rows["index"])
        for key, value in facts.items():
            rows[key] += [value] * n
        rows["index"] += records.pop("index")
        for name in records:
            flags.setdefault(name, [None] * done)
        for name, column in flags.items():
            column += records.get(name) or [None] * n
    if refused:
        first = next(iter(refused.values()))
        logger.warning("%s: reports %s left out, their records are no evidence (%s)", PER_EXAMPLE_NAME, list(refused),
                       first if len(refused) == 1 else f"{first}; ...")  # fmt: skip
    if not rows["index"]:
        return None
    order = ["clean", *(name for name in flags if name not in ("clean", "all")), "all"]
    schema = pa.schema([*KEYS.items(), *((name, pa.bool_()) for name in order)])
    table = pa.table({**rows, **{name: flags[name] for name in order}}, schema=schema)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def read_per_example(path: str | Path) -> dict[int, RobustnessReport]:
    """The reports of a `per_example.parquet` (a file, or a model folder holding one) by their `report` number, rebuilt
    for `RobustnessReport.compare`: model, dataset, split, threat model, attack settings, seed, records, and
    accuracies computed from the records.

    Raises:
        FileNotFoundError: no such file.
        ValueError: naming the file: not a parquet file of these columns, a report whose settings change between its
            rows, or whose attack columns are partly empty.
    """
    path = Path(path)
    path = path / PER_EXAMPLE_NAME if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no per-example records (the folder's {PER_EXAMPLE_NAME} is missing).")
    try:
        columns = pq.read_table(path).to_pydict()
    except (pa.ArrowException, OSError) as error:
        raise ValueError(f"{path}: not a parquet file ({error}).") from error
    missing = [key for key in (*KEYS, "clean", "all") if key not in columns]
    if missing:
        raise ValueError(f"{path}: not a {PER_EXAMPLE_NAME} of mixacm-hf: columns {missing} are missing.")
    rows: dict[int, list[int]] = {}
    for row, number in enumerate(columns["report"]):
        rows.setdefault(number, []).append(row)
    return {number: _report(columns, selected, f"{path}, report {number}") for number, selected in rows.items()}


def _report(columns: dict[str, list[Any]], rows: list[int], label: str) -> RobustnessReport:
    facts = {}
    for key in KEYS.keys() - {"report", "index"}:
        values = {columns[key][row] for row in rows}
        if len(values) != 1:
            raise ValueError(f"{label}: {key!r} changes between its rows ({sorted(map(str, values))}).")
        facts[key] = values.pop()
    flags = {}
    for name in (name for name in columns if name not in KEYS):
        values = [columns[name][row] for row in rows]
        if any(value is None for value in values) and not all(value is None for value in values):
            raise ValueError(f"{label}: column {name!r} is empty for some of its rows only.")
        if values[0] is not None:
            flags[name] = values
    if "clean" not in flags or "all" not in flags:
        raise ValueError(f"{label}: no 'clean' or 'all' records.")
    accuracy = {name: sum(values) / len(values) for name, values in flags.items()}
    return RobustnessReport(
        clean_accuracy=accuracy.pop("clean"), robust_accuracy=accuracy, n_examples=facts["n_examples"],
        eps=facts["eps"], norm=facts["norm"], attacks=json.loads(facts["attacks"]), seconds={}, seed=facts["seed"],
        model={"name": facts["model"], "revision": facts["model_revision"]},
        dataset={"name": facts["dataset"], "split": facts["split"], "identity": {
            "type": facts["dataset"], "name": facts["dataset_name"], "revision": facts["dataset_revision"]}},
        per_example={"index": [columns["index"][row] for row in rows], **flags},
    )  # fmt: skip
