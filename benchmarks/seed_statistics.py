"""Statistics of the CPU reproduction's claims over training seeds (`reproduce_cifar10_cpu.py`): the mean and sample
standard deviation of a recipe's accuracies over seeds, and paired comparisons of two groups of models on the same
test images from their per-example records (`RobustnessReport.per_example`), per seed and pooled over seeds.

Pooled comparisons concatenate, seed by seed, the examples two paired models both evaluated (seed s of one group
with seed s of the other; a single model, e.g. the teacher or PGD-7 AT, is paired with every seed), then give the
difference in accuracy with its 95% interval (normal approximation for paired proportions) and the exact McNemar
p-value of the pooled discordant pairs (`mixacm_hf.robustness.report`).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

from mixacm_hf.robustness import RobustnessReport
from mixacm_hf.robustness.report import paired_difference


def mean_std(values: Sequence[float]) -> dict[str, Any]:
    """{"mean", "std" (sample standard deviation, None for one value), "n", "values"} of accuracies in [0, 1]."""
    values = [float(value) for value in values]
    if not values:
        raise ValueError("mean_std needs at least one value.")
    std = statistics.stdev(values) if len(values) > 1 else None
    return {"mean": statistics.fmean(values), "std": std, "n": len(values), "values": values}


def compare_groups(
    first: Sequence[RobustnessReport], second: Sequence[RobustnessReport], attack: str
) -> dict[str, Any]:
    """Per-seed and pooled paired comparisons of `first` (one report per seed) with `second` (one report per seed,
    or a single report paired with every seed) under `attack`.

    Raises:
        ValueError: the groups' sizes do not pair up, or records are missing.
    """
    if len(second) not in (1, len(first)):
        raise ValueError(f"Cannot pair {len(first)} reports with {len(second)}: give one per seed or a single one.")
    pairs = [(report, second[0] if len(second) == 1 else second[i]) for i, report in enumerate(first)]
    flags = [a.paired_flags(b, attack) for a, b in pairs]
    pooled_first = [flag for mine, _ in flags for flag in mine]
    pooled_second = [flag for _, theirs in flags for flag in theirs]
    return {
        "attack": attack,
        "per_seed": [paired_difference(mine, theirs) for mine, theirs in flags],
        "pooled": paired_difference(pooled_first, pooled_second),
    }


def _compare_available(
    first: Sequence[str], second: Sequence[str], attack: str, report_of: Callable[[str, str], RobustnessReport | None]
) -> dict[str, Any]:
    """`compare_groups` over the seeds whose models both have per-example records of `attack` (a single model of
    `second` pairs with every seed), with the models `used` and those still `missing` records."""

    def recorded(name: str) -> RobustnessReport | None:
        report = report_of(name, attack)
        return report if report is not None and report.per_example and attack in report.per_example else None

    pairs = [
        (a, second[0] if len(second) == 1 else second[i]) for i, a in enumerate(first) if len(second) in (1, len(first))
    ]
    usable = [(a, b) for a, b in pairs if recorded(a) and recorded(b)]
    missing = sorted({name for pair in pairs for name in pair if not recorded(name)})
    if not usable:
        return {"missing_per_example_records": missing}
    result = compare_groups([recorded(a) for a, _ in usable], [recorded(b) for _, b in usable], attack)
    return {"used": [list(pair) for pair in usable], "missing_per_example_records": missing, **result}


ACCURACIES = ("clean", "fgsm", "pgd20", "autoattack")  # the result rows' accuracy columns
ATTACK_OF = {"pgd20": "pgd-20", "autoattack": "autoattack"}  # the columns compared on per-example records


def claim_summary(
    rows: Sequence[dict[str, Any]],
    groups: dict[str, Sequence[str]],
    comparisons: dict[str, tuple[str, str]],
    report_of: Callable[[str, str], RobustnessReport | None],
) -> dict[str, Any]:
    """The `summary` of the results: per group of rows (e.g. a recipe's seeds) the mean and std of each accuracy
    over the rows present, and per comparison ("mixacm - kd": (group, group)) the paired comparisons of PGD-20 and
    AutoAttack (`compare_groups`). `report_of(row name, attack)` gives the report that measured it. A comparison
    whose models are not all trained and evaluated with per-example records says which are missing instead."""
    by_name = {row["name"]: row for row in rows}
    summary: dict[str, Any] = {"groups": {}, "comparisons": {}}
    for group, names in groups.items():
        present = [by_name[name] for name in names if name in by_name]
        summary["groups"][group] = {
            "models": [row["name"] for row in present],
            "missing": [name for name in names if name not in by_name],
            **{
                column: mean_std([row[column] for row in present])
                for column in ACCURACIES
                if present and all(row[column] is not None for row in present)
            },
        }
    for label, (first, second) in comparisons.items():
        result: dict[str, Any] = {"groups": [first, second]}
        for column, attack in ATTACK_OF.items():
            result[column] = _compare_available(groups[first], groups[second], attack, report_of)
        summary["comparisons"][label] = result
    return summary
