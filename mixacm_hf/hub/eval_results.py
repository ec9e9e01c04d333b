"""The Hub's evaluation-results format (`.eval_results/*.yaml`, https://huggingface.co/docs/hub/eval-results) beside
a card's model-index: one `EvalResultEntry` per model-index result, written and parsed with huggingface_hub's own
helpers, and read back as model-index results by the leaderboard.

An entry holds the dataset id (the model-index `dataset.type`) and revision, a task id naming the threat model, budget
and attack (`linf-8-255-autoattack-standard`, `linf-8-255-pgd-20`, `clean`; `cifar10-c` or `cifar10-c-generated` for
common corruptions), the value (in %, as in the model-index),
the date of the evaluation and, as `notes`, a JSON object with what the format has no field for: the split, dataset
name, metric type and name, the attack, and the metric's args (attack settings, n, 95% interval, seconds, date).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, EvalResultEntry, eval_result_entries_to_yaml, parse_eval_result_entries

from .results import format_eps

EVAL_RESULTS_DIR = ".eval_results"
EVAL_RESULTS_NAME = f"{EVAL_RESULTS_DIR}/robustness.yaml"  # the file mixacm-hf writes; others in the folder are kept
HEADER = "# Written by mixacm-hf with README.md's model-index, from the same reports (notes: JSON).\n"


def task_id(attack: str, args: dict[str, Any]) -> str:
    """`clean`, else `<norm>-<eps>-<attack>[-<version>][-<components>]` in lower case: `linf-8-255-autoattack-standard`,
    `linf-8-255-pgd-20`, `l2-0.5-fgsm`, `linf-8-255-autoattack-custom-apgd-ce-square`, `l1-12-autoattack-standard`,
    `linf-8-255-autoattack-rand`, `linf-8-255-transfer-teacher-folder` (a result without norm or eps in its args: the
    attack or metric name alone); a corruptions evaluation's is its benchmark: `cifar10-c` (published files) or
    `cifar10-c-generated` (imagecorruptions), a subset's with its corruptions (`cifar10-c-fog-snow` for
    `corruptions:fog+snow`: another measurement than the whole benchmark's)."""
    if args.get("type") == "corruptions" and isinstance(args.get("benchmark"), str):
        subset = attack.partition(":")[2]
        return re.sub(r"[^a-z0-9.]+", "-", f"{args['benchmark']} {subset}".lower()).strip("-")
    base, _, components = attack.partition(":")
    version = args.get("version") if isinstance(args.get("version"), str) else None
    components = "" if components == version else components  # autoattack:plus -> version plus
    norm, eps = args.get("norm"), args.get("eps")
    threat: list[str] = []
    if base != "clean" and norm is not None and eps is not None:
        number = isinstance(eps, int | float) and not isinstance(eps, bool)
        threat = [str(norm), format_eps(float(eps), str(norm)) if number else str(eps)]
    text = "-".join(part for part in (*threat, base, version, components) if part)
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-")


def eval_result_entries(results: Sequence[EvalResult]) -> list[EvalResultEntry]:
    """One entry per model-index result, in the same order, with the same dataset, revision, value and args."""
    entries = []
    for result in results:
        args = dict(result.metric_args or {})
        notes = {
            "split": result.dataset_split, "dataset_name": result.dataset_name, "metric_type": result.metric_type,
            "metric_name": result.metric_name, "attack": result.metric_config, "args": args,
        }  # fmt: skip
        entries.append(
            EvalResultEntry(
                dataset_id=result.dataset_type,
                task_id=task_id(result.metric_config or result.metric_name or result.metric_type, args),
                value=result.metric_value,
                dataset_revision=result.dataset_revision,
                date=None if args.get("date") is None else str(args["date"]),
                notes=json.dumps({k: v for k, v in notes.items() if v not in (None, {})}, default=str),
            )
        )
    return entries


def eval_results_yaml(results: Sequence[EvalResult]) -> bytes | None:
    """The `.eval_results` file of a card's model-index results (`eval_result_entries`); None without results."""
    if not results:
        return None
    data = eval_result_entries_to_yaml(eval_result_entries(results))
    return (HEADER + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1000)).encode("utf-8")


def load_eval_results(folder: str | Path) -> list[EvalResultEntry]:
    """The entries of every `.eval_results/*.yaml` file of `folder` (files by name), parsed by huggingface_hub's
    `parse_eval_result_entries`; [] without any.

    Raises:
        ValueError: naming the file that is not YAML or not a list of entries with dataset id, task id and value.
    """
    entries = []
    for path in sorted((Path(folder) / EVAL_RESULTS_DIR).glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
                raise ValueError(f"a {type(data).__name__}, not a list of entries")
            entries += parse_eval_result_entries(data)
        except (yaml.YAMLError, ValueError, KeyError, TypeError, AttributeError) as error:
            first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ValueError(f"{path}: not a list of evaluation results ({first_line})") from error
    return entries


def _notes(entry: EvalResultEntry) -> dict[str, Any]:
    """The JSON object of an entry's notes; {} for notes of other tools (free text)."""
    try:
        notes = json.loads(entry.notes) if entry.notes else {}
    except json.JSONDecodeError:
        return {}
    return notes if isinstance(notes, dict) else {}


def entries_model_index(entries: Sequence[EvalResultEntry], name: str) -> list[dict[str, Any]]:
    """The entries as a `model-index` (the leaderboard reads both alike): dataset, split and metric from each entry
    and its JSON notes; an entry of another tool (notes not such JSON) keeps its dataset id, task id (as metric name)
    and value only."""
    results = []
    for entry in entries:
        notes = _notes(entry)
        metric = {
            "type": notes.get("metric_type", "accuracy"), "value": entry.value,
            "name": notes.get("metric_name", entry.task_id), "config": notes.get("attack"),
            "args": notes.get("args") if isinstance(notes.get("args"), dict) else {},
        }  # fmt: skip
        dataset = {
            "type": entry.dataset_id, "name": notes.get("dataset_name", entry.dataset_id), "split": notes.get("split"),
            "revision": entry.dataset_revision,
        }  # fmt: skip
        results.append({
            "task": {"type": "image-classification"},
            "dataset": {key: value for key, value in dataset.items() if value is not None},
            "metrics": [{key: value for key, value in metric.items() if value is not None}],
        })  # fmt: skip
    return [{"name": name, "results": results}]
