"""Robustness reports as model-index results: metric names, eps formatting, dataset identity (Hub id or local copy).

A card's metrics live in its `model-index` metadata: one `accuracy` result per measurement, value in %, the attack name
as metric config and its settings, n and 95% interval as metric args (docs/design.md, section 5).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, metadata_load

from ..robustness import RobustnessReport, attack_title

CARD_NAME = "README.md"
REPORTS_NAME = "robustness.json"
SUMMARY_NAME = "train_summary.json"
PLOT_NAME = "robustness_vs_eps.png"
PROCESSOR_NAME = "preprocessor_config.json"
LOCAL_COPY_SUFFIX = "-local-copy"


def format_eps(eps: float, norm: str) -> str:
    """`8/255` for Linf budgets on the 1/255 grid, else the number (`0.5`)."""
    steps = eps * 255
    if norm == "Linf" and math.isclose(steps, round(steps), abs_tol=1e-6):
        return f"{round(steps)}/255"
    return f"{eps:g}"


def metric_name(attack: str, norm: str, eps: float) -> str:
    """`Clean accuracy` or e.g. `Robust accuracy (AutoAttack, Linf, eps=8/255)`."""
    if attack == "clean":
        return "Clean accuracy"
    return f"Robust accuracy ({attack_title(attack)}, {norm}, eps={format_eps(eps, norm)})"


def _percent(fraction: float) -> float:
    return round(100 * fraction, 2)


def _local_dataset(path: str | None) -> Path | None:
    return Path(path) if path and Path(path).is_dir() else None


def _fingerprint(folder: Path) -> str:
    """A short revision for a local dataset copy: SHA-256 of its files' relative paths and sizes (12 hex digits)."""
    files = sorted(path for path in folder.rglob("*") if path.is_file() and not path.name.startswith("."))
    listing = "\n".join(f"{path.relative_to(folder).as_posix()}:{path.stat().st_size}" for path in files)
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()[:12]


def dataset_identity(path_or_id: str | None, dataset_id: str | None = None) -> dict[str, Any]:
    """How a card names a dataset: `type` (model-index `dataset.type`), pretty `name`, `revision`, and `local`.

    A Hub id stays itself. A local folder is named as what it is, a local copy: `type` is `<folder>-local-copy`
    (never a Hub id, so the Hub does not index the results as results on the original dataset), `name` its README's
    `pretty_name`, `revision` a fingerprint of its files. `dataset_id` (the user's statement that the copy *is* that
    Hub dataset, `--card_dataset_id`) replaces the type; the name, revision and `local` keep the copy's provenance.
    """
    local = _local_dataset(path_or_id)
    if local is None:
        return {"type": dataset_id or path_or_id or "unknown", "name": dataset_id or path_or_id or "unknown",
                "revision": None, "local": False}  # fmt: skip
    readme = local / CARD_NAME
    own = f"{local.resolve().name}{LOCAL_COPY_SUFFIX}"
    name = (metadata_load(readme) or {}).get("pretty_name", own) if readme.is_file() else own
    return {"type": dataset_id or own, "name": name, "revision": _fingerprint(local), "local": True}


def report_results(report: RobustnessReport, dataset_id: str | None = None) -> list[EvalResult]:
    """One `accuracy` result (in %) per measurement of the report: clean, then each attack (not the worst case)."""
    dataset = dataset_identity(report.dataset.get("name"), dataset_id)
    accuracy = {"clean": report.clean_accuracy, **report.robust_accuracy}
    results = []
    for attack in ["clean", *(name for name in report.attacks if name != "clean")]:
        args: dict[str, Any] = {**report.attacks.get(attack, {"type": "clean"}), "n_examples": report.n_examples}
        if attack in report.intervals:
            args["interval_95"] = [_percent(bound) for bound in report.intervals[attack]]
        if attack in report.seconds:
            args["seconds"] = round(report.seconds[attack], 1)
        results.append(
            EvalResult(
                task_type="image-classification",
                task_name="Image Classification",
                dataset_type=dataset["type"],
                dataset_name=dataset["name"],
                dataset_split=report.dataset.get("split"),
                dataset_revision=report.dataset.get("revision") or dataset["revision"],
                metric_type="accuracy",
                metric_value=_percent(accuracy[attack]),
                metric_name=metric_name(attack, report.norm, report.eps),
                metric_config=attack,
                metric_args=args,
            )
        )
    return results


def merge_results(*groups: Iterable[EvalResult]) -> list[EvalResult]:
    """All results, where a later one replaces an earlier one measuring the same metric (dataset, split, name)."""
    merged: dict[tuple, EvalResult] = {}
    for group in groups:
        for result in group:
            merged[(*result.unique_identifier, result.metric_type, result.metric_name)] = result
    return list(merged.values())


def format_duration(seconds: float) -> str:
    """`4.2 s`, `42 s`, `23.9 min` or `2.2 h`."""
    if seconds < 120:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
