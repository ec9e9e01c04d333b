"""Robustness reports as model-index results: metric names, eps formatting, dataset identity (Hub id or local copy).

A card's metrics live in its `model-index` metadata: one `accuracy` result per measurement, value in %, the attack name
as metric config and its settings, n, 95% interval and date as metric args (docs/design.md, section 5).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any

from huggingface_hub import EvalResult

from ..data.identity import LOCAL_COPY_SUFFIX, dataset_identity, recorded_identity  # noqa: F401 (re-exported)
from ..robustness import RobustnessReport, attack_title
from ..robustness.corruptions import GENERATED_NOTE

CARD_NAME = "README.md"
REPORTS_NAME = "robustness.json"
SUMMARY_NAME = "train_summary.json"
PLOT_NAME = "robustness_vs_eps.png"
logger = logging.getLogger(__name__)
PROCESSOR_NAME = "preprocessor_config.json"


def format_eps(eps: float, norm: str) -> str:
    """`8/255` for Linf budgets on the 1/255 grid, else the number (`0.5`)."""
    steps = eps * 255
    if norm == "Linf" and math.isclose(steps, round(steps), abs_tol=1e-6):
        return f"{round(steps)}/255"
    return f"{eps:g}"


def metric_name(attack: str, norm: str, eps: float, settings: dict[str, Any] | None = None) -> str:
    """`Clean accuracy`, e.g. `Robust accuracy (AutoAttack, Linf, eps=8/255)`, or for a corruptions evaluation (its
    `settings`) e.g. `Mean corruption accuracy (cifar10-c-generated: generated with imagecorruptions ...)`."""
    if attack == "clean":
        return "Clean accuracy"
    if (settings or {}).get("type") == "corruptions":
        source = GENERATED_NOTE if settings.get("source") == "generated" else "published files"
        return f"Mean corruption accuracy ({settings.get('benchmark')}: {source})"
    return f"Robust accuracy ({attack_title(attack)}, {norm}, eps={format_eps(eps, norm)})"


def _percent(fraction: float) -> float:
    return round(100 * fraction, 2)


def report_results(report: RobustnessReport, dataset_id: str | None = None) -> list[EvalResult]:
    """One `accuracy` result (in %) per measurement of the report: clean, then each attack (not the worst case)."""
    dataset = recorded_identity(report.dataset, dataset_id)
    accuracy = {"clean": report.clean_accuracy, **report.robust_accuracy}
    results = []
    for attack in ["clean", *(name for name in report.attacks if name != "clean")]:
        args: dict[str, Any] = {**report.attacks.get(attack, {"type": "clean"}), "n_examples": report.n_examples}
        if attack in report.intervals:
            args["interval_95"] = [_percent(bound) for bound in report.intervals[attack]]
        if attack in report.seconds:
            args["seconds"] = round(report.seconds[attack], 1)
        if report.date:
            args["date"] = report.date
        if attack in (report.corruptions or {}):  # measured per corruption and per severity, in %
            result = report.corruptions[attack]
            args["per_corruption"] = {name: _percent(value) for name, value in result["per_corruption"].items()}
            args["per_severity"] = {severity: _percent(value) for severity, value in result["per_severity"].items()}
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
                metric_name=metric_name(attack, report.norm, report.eps, report.attacks.get(attack)),
                metric_config=attack,
                metric_args=args,
            )
        )
    return results


def _sample_size(result: EvalResult) -> float:
    n = (result.metric_args or {}).get("n_examples")
    return n if isinstance(n, int | float) and not isinstance(n, bool) else 0


def merge_results(*groups: Iterable[EvalResult]) -> list[EvalResult]:
    """All results; of two measuring the same metric (dataset, split, name) the one on more examples is kept, the
    later one on as many or more: a quick small-sample check never replaces a larger measurement (a warning says
    so when the check is in the last group, the newest: earlier ones were merged before)."""
    merged: dict[tuple, EvalResult] = {}
    for position, group in enumerate(groups, start=1):
        for result in group:
            key = (*result.unique_identifier, result.metric_type, result.metric_name)
            kept = merged.get(key)
            if kept is not None and _sample_size(result) < _sample_size(kept):
                if position < len(groups):
                    continue
                logger.warning(
                    "%s on %s: keeping the measurement on n=%s, not the new one on n=%s (fewer examples).",
                    result.metric_name, result.dataset_name, _sample_size(kept), _sample_size(result),
                )  # fmt: skip
                continue
            merged[key] = result
    return list(merged.values())


def format_duration(seconds: float) -> str:
    """`4.2 s`, `42 s`, `23.9 min` or `2.2 h`."""
    if seconds < 120:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
