"""Statistics of the CPU reproduction's claims over training seeds (`reproduce_cifar10_cpu.py`): the mean and sample
standard deviation of a recipe's accuracies over seeds, and paired comparisons of two groups of models on the same
test images from their per-example records (`RobustnessReport.per_example`), per seed and pooled over seeds.

Pooled comparisons pair seed s of one group with seed s of the other (a single model, e.g. the teacher or PGD-7 AT,
is paired with every seed). The same test images recur in every seed, so the pairs are not independent: the pooled
difference, its 95% interval and p-value come from a paired t-test over images (`scipy.stats.ttest_1samp` on each
image's difference averaged over the seeds), which holds the sampling of test images; `between_seeds` is the t
interval of the seeds' differences (df = seeds - 1), which holds the variation between training seeds. One pair of
models is compared exactly: Newcombe's interval and the exact McNemar p (`mixacm_hf.statistics`).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.studies import check_accuracies, mean_seconds_alone
from mixacm_hf.robustness import RobustnessReport
from mixacm_hf.statistics import paired_difference, t_interval


def mean_std(values: Sequence[float]) -> dict[str, Any]:
    """{"mean", "std" (sample standard deviation, None for one value), "n", "values"} of accuracies in [0, 1]."""
    values = check_accuracies(values)
    std = statistics.stdev(values) if len(values) > 1 else None
    return {"mean": statistics.fmean(values), "std": std, "n": len(values), "values": values}


def _distinct_models(first: Sequence[RobustnessReport], second: Sequence[RobustnessReport]) -> None:
    """Refuse a group that holds one model twice, or two groups that share a model (`RobustnessReport.same_model`,
    or one name): pooled, either would read as seeds that were never trained."""
    for group, reports in (("first", first), ("second", second if len(second) > 1 else [])):
        for i, report in enumerate(reports):
            for earlier in reports[:i]:
                if report.model.get("name") == earlier.model.get("name") or report.same_model(earlier):
                    raise ValueError(f"The {group} group holds the same model more than once "
                                     f"({report.model.get('name')}): give one report per training seed.")  # fmt: skip
    for report in first:
        for other in second:
            if report.same_model(other):
                raise ValueError(f"Both groups hold the model {report.model.get('name')}: compare distinct models.")


def compare_groups(
    first: Sequence[RobustnessReport], second: Sequence[RobustnessReport], attack: str
) -> dict[str, Any]:
    """Per-seed and pooled paired comparisons of `first` (one report per seed) with `second` (one report per seed,
    or a single report paired with every seed) under `attack`: {"attack", "per_seed": [paired_difference, ...],
    "pooled"}, differences and intervals as fractions (accuracy in [0, 1]). With one pair, "pooled" is its
    `paired_difference`; with several, {"n" (images), "n_seeds", "difference", "interval", "p_value", "accuracy",
    "other_accuracy", "between_seeds", "test"} from a paired t-test over the images all pairs evaluated (each image's
    difference averaged over the seeds) and the t interval of the seeds' differences (module docstring).

    Raises:
        ValueError: an empty group, sizes that do not pair up, a model given twice, or records that are missing,
            malformed or not paired (`RobustnessReport.paired_flags`).
    """
    if not first or not second:
        raise ValueError(f"Cannot compare an empty group ({len(first)} and {len(second)} reports given).")
    if len(second) not in (1, len(first)):
        raise ValueError(f"Cannot pair {len(first)} reports with {len(second)}: give one per seed or a single one.")
    _distinct_models(first, second)
    pairs = [(report, second[0] if len(second) == 1 else second[i]) for i, report in enumerate(first)]
    per_seed = [paired_difference(*a.paired_flags(b, attack)) for a, b in pairs]
    if len(pairs) == 1:
        return {"attack": attack, "per_seed": per_seed, "pooled": {**per_seed[0], "n_seeds": 1}}
    flags = [(dict(zip(*a.records(attack))), dict(zip(*b.records(attack)))) for a, b in pairs]
    shared = [set(mine) & set(theirs) for mine, theirs in flags]
    images = sorted(set.intersection(*shared))
    if not images or any(len(common) != len(images) for common in shared):
        raise ValueError(
            f"The seeds' pairs were evaluated on different test images ({[len(common) for common in shared]} shared "
            f"per seed, {len(images)} by all): evaluate every model on the same images to pool them."
        )
    seeds = len(pairs)
    differences = [sum(mine[i] - theirs[i] for mine, theirs in flags) / seeds for i in images]
    interval, p_value = t_interval(differences)
    return {
        "attack": attack,
        "per_seed": per_seed,
        "pooled": {
            "n": len(images),
            "n_seeds": seeds,
            "difference": statistics.fmean(differences),
            "interval": interval,
            "p_value": p_value,
            "accuracy": statistics.fmean(mine[i] for mine, _ in flags for i in images),
            "other_accuracy": statistics.fmean(theirs[i] for _, theirs in flags for i in images),
            "between_seeds": t_interval([seed["difference"] for seed in per_seed])[0],
            "test": "paired t-test over images, each image's difference averaged over the seeds",
        },  # fmt: skip
    }


def _compare_available(
    first: Sequence[str], second: Sequence[str], attack: str, report_of: Callable[[str, str], RobustnessReport | None]
) -> dict[str, Any]:
    """`compare_groups` over the seeds whose models both have per-example records of `attack` (a single model of
    `second` pairs with every seed), with the models `used` and those still `missing` records."""

    def recorded(name: str) -> RobustnessReport | None:
        report = report_of(name, attack)
        return report if report is not None and report.per_example and attack in report.per_example else None

    if not first or len(second) not in (1, len(first)):
        raise ValueError(f"Cannot pair the models {list(first)} with {list(second)}: one per seed, or a single one.")
    pairs = [(a, second[0] if len(second) == 1 else second[i]) for i, a in enumerate(first)]
    usable = [(a, b) for a, b in pairs if recorded(a) and recorded(b)]
    missing = sorted({name for pair in pairs for name in pair if not recorded(name)})
    if not usable:
        return {"missing_per_example_records": missing}
    others = [recorded(second[0])] if len(second) == 1 else [recorded(b) for _, b in usable]
    result = compare_groups([recorded(a) for a, _ in usable], others, attack)
    return {"used": [list(pair) for pair in usable], "missing_per_example_records": missing, **result}


ACCURACIES = ("clean", "fgsm", "pgd20", "autoattack")  # the result rows' accuracy columns
ATTACK_OF = {"pgd20": "pgd-20", "autoattack": "autoattack"}  # the columns compared on per-example records


def claim_summary(
    rows: Sequence[dict[str, Any]],
    groups: dict[str, Sequence[str]],
    comparisons: dict[str, tuple[str, str] | tuple[str, str, Sequence[str]]],
    report_of: Callable[[str, str], RobustnessReport | None],
) -> dict[str, Any]:
    """The `summary` of the results: per group of rows (e.g. a recipe's seeds) the `mean_std` of each accuracy
    (fractions in [0, 1]) over the rows that measured it (its "n" says how many of the group's models), and per
    comparison ("mixacm - kd": (group, group[, columns])) the paired comparisons of the columns ("pgd20" and
    "autoattack" unless given; `compare_groups`, differences as fractions) over the seeds whose models both have
    per-example records, with the models still missing them. `report_of(row name, attack)` gives the report that
    measured it."""
    by_name = {row["name"]: row for row in rows}
    if len(by_name) != len(rows):
        names = [row["name"] for row in rows]
        raise ValueError(
            f"Result rows must have distinct names; repeated: {sorted({n for n in names if names.count(n) > 1})}."
        )
    summary: dict[str, Any] = {"groups": {}, "comparisons": {}}
    for group, names in groups.items():
        if len(set(names)) != len(names):
            raise ValueError(f"Group {group!r} names a model more than once: {list(names)}.")
        present = [by_name[name] for name in names if name in by_name]
        summary["groups"][group] = {
            "models": [row["name"] for row in present],
            "missing": [name for name in names if name not in by_name],
            **{
                column: mean_std(measured)
                for column in ACCURACIES
                if (measured := [row[column] for row in present if row[column] is not None])
            },
        }
    for label, (first, second, *columns) in comparisons.items():
        unknown = [group for group in (first, second) if group not in groups or not groups[group]]
        if unknown:
            raise ValueError(f"Comparison {label!r} names groups without models: {unknown} (groups: {list(groups)}).")
        result: dict[str, Any] = {"groups": [first, second]}
        chosen = columns[0] if columns else tuple(ATTACK_OF)
        if isinstance(chosen, str) or not set(chosen) <= set(ATTACK_OF):
            raise ValueError(f"Comparison {label!r}: columns must be a tuple of {list(ATTACK_OF)}, got {chosen!r}.")
        for column in chosen:
            result[column] = _compare_available(groups[first], groups[second], ATTACK_OF[column], report_of)
        summary["comparisons"][label] = result
    return summary


def _mean(summary: dict[str, Any], group: str, column: str) -> float | None:
    """The group's mean of `column` once every one of its models (trained or not) has measured it, else None."""
    group_entry = summary["groups"].get(group, {})
    entry = group_entry.get(column)
    complete = entry and entry["n"] == len(group_entry["models"]) + len(group_entry["missing"])
    return entry["mean"] if complete else None


def claim_criteria(
    summary: dict[str, Any],
    rows: Sequence[dict[str, Any]],
    *,
    recipe: str,
    soft_labels: str,
    adversarial_training: str,
    teacher: str,
    groups: dict[str, Sequence[str]],
) -> list[dict[str, Any]]:
    """The CPU reproduction's claim (MixACM paper, Tables 3/4, scaled down) as criteria on the group means of
    `summary`: AutoAttack >= 0.8 x the teacher's, >= soft labels alone + 5 points, >= adversarial training - 5
    points, clean accuracy above adversarial training's, and training wall time <= 1/4 of adversarial training's
    (the mean over the recipe's rows not trained on a shared machine). Each: {"criterion", "measured", "target",
    "met"}; `measured` and `met` are None while a group lacks the numbers."""
    by_name = {row["name"]: row for row in rows}

    def seconds(group: str) -> float | None:
        return mean_seconds_alone([by_name[name] for name in groups[group] if name in by_name])

    recipe_aa, teacher_aa = _mean(summary, recipe, "autoattack"), _mean(summary, teacher, "autoattack")
    kd_aa, at_aa = _mean(summary, soft_labels, "autoattack"), _mean(summary, adversarial_training, "autoattack")
    recipe_clean, at_clean = _mean(summary, recipe, "clean"), _mean(summary, adversarial_training, "clean")
    recipe_seconds, at_seconds = seconds(recipe), seconds(adversarial_training)

    def criterion(name: str, measured: float | None, target: str, met: Callable[[float], bool]) -> dict[str, Any]:
        return {"criterion": name, "measured": measured, "target": target,
                "met": None if measured is None else bool(met(measured))}  # fmt: skip

    def known(*values: float | None) -> bool:
        return all(value is not None for value in values)

    def ratio(numerator: float | None, denominator: float | None) -> float | None:  # a zero one measures nothing
        return numerator / denominator if known(numerator, denominator) and denominator != 0 else None

    return [
        criterion("AutoAttack / teacher's AutoAttack", ratio(recipe_aa, teacher_aa), ">= 0.8", lambda r: r >= 0.8),
        criterion("AutoAttack - soft labels' AutoAttack (points)",
                  100 * (recipe_aa - kd_aa) if known(recipe_aa, kd_aa) else None, ">= 5", lambda points: points >= 5),
        criterion("AutoAttack - PGD-7 AT's AutoAttack (points)",
                  100 * (recipe_aa - at_aa) if known(recipe_aa, at_aa) else None, ">= -5", lambda points: points >= -5),
        criterion("clean - PGD-7 AT's clean (points)",
                  100 * (recipe_clean - at_clean) if known(recipe_clean, at_clean) else None, "> 0",
                  lambda points: points > 0),
        criterion("wall time / PGD-7 AT's (runs trained alone)", ratio(recipe_seconds, at_seconds), "<= 0.25",
                  lambda r: r <= 0.25),
    ]  # fmt: skip


def format_mean_std(entry: dict[str, Any] | None) -> str:
    """Percent, e.g. "31.5 +- 2.0" for a `mean_std` entry of several values, "31.5" for one, "-" for none."""
    if not entry:
        return "-"
    if entry["std"] is None:
        return f"{100 * entry['mean']:.1f}"
    return f"{100 * entry['mean']:.1f} +- {100 * entry['std']:.1f}"


def _points(value: float) -> str:
    """A difference in points with its sign, one decimal, two where one would round it to 0 (the verdict's
    boundary)."""
    return f"{100 * value:+.2f}" if abs(100 * value) < 0.05 else f"{100 * value:+.1f}"


def format_paired(result: dict[str, Any]) -> str:
    """Points, e.g. "-6.2 [-8.0, -4.4], p < 1e-4 (n = 1000 images x 3 seeds; per seed -4.4 / -7.2 / -7.0, between
    seeds [-10.1, -2.3])", for a pooled comparison (`compare_groups`), naming the models still without per-example
    records when some pairs were left out, or which models lack them when none could be compared."""
    missing = result.get("missing_per_example_records") or []
    if "pooled" not in result:
        if not missing:
            raise ValueError(f"A comparison without a pooled result names no model missing records: {result}.")
        count = len(missing)
        return f"waiting for the per-example records of {count} model{'s' if count != 1 else ''}: {', '.join(missing)}"
    pooled = result["pooled"]
    if pooled["interval"] is None:
        p = pooled["p_value"]
        p_text = "p < 1e-4" if p is not None and p < 1e-4 else f"p = {p:.2g}" if p is not None else "no p"
        interval_text = f"(no interval: every image's difference is the same; sign test {p_text})"
    else:
        low, high = (_points(value) for value in pooled["interval"])
        p = pooled["p_value"]
        p_text = "p < 1e-4" if p < 1e-4 else f"p = {p:.3g}" if 0.045 <= p <= 0.055 else f"p = {p:.2g}"
        interval_text = f"[{low}, {high}], {p_text}"
    seeds = pooled.get("n_seeds", 1)
    detail = f"n = {pooled['n']}" + (f" images x {seeds} seeds" if seeds > 1 else "")
    if seeds > 1:
        differences = " / ".join(f"{100 * seed['difference']:+.1f}" for seed in result["per_seed"])
        between = pooled["between_seeds"]
        between = f"[{100 * between[0]:+.1f}, {100 * between[1]:+.1f}]" if between else "not estimable"
        detail += f"; per seed {differences}, between seeds {between}"
    if missing:
        detail += f"; without {', '.join(missing)}: no per-example records yet"
    return f"{100 * pooled['difference']:+.1f} {interval_text} ({detail})"


def groups_markdown(summary: dict[str, Any]) -> list[str]:
    """The table of each group's mean +- std (percent) over its models, saying how many are not yet trained and, in a
    cell, how many of them it averages when not all."""
    lines = ["| group | models | clean | FGSM | PGD-20 | AutoAttack |", "|---|---|---|---|---|---|"]

    def cell(entry: dict[str, Any], column: str) -> str:
        value, total = entry.get(column), len(entry["models"]) + len(entry["missing"])
        partial = f" ({value['n']} of {total})" if value and value["n"] < total else ""
        return format_mean_std(value) + partial

    for group, entry in summary["groups"].items():
        cells = " | ".join(cell(entry, column) for column in ACCURACIES)
        missing = f" ({len(entry['missing'])} not yet measured)" if entry["missing"] else ""
        lines.append(f"| {group} | {len(entry['models'])}{missing} | {cells} |")
    return lines


def comparisons_markdown(summary: dict[str, Any]) -> list[str]:
    """The table of the pooled paired comparisons (PGD-20 and AutoAttack; "not compared" where a comparison leaves a
    column out)."""
    lines = ["| comparison | PGD-20 | AutoAttack |", "|---|---|---|"]
    for label, result in summary["comparisons"].items():
        cells = [format_paired(result[column]) if column in result else "not compared" for column in ATTACK_OF]
        lines.append(f"| {label} | {' | '.join(cells)} |")
    return lines


def paired_verdict(result: dict[str, Any]) -> str | None:
    """How the first group of a comparison stands against the second on the paired differences it measured:
    "below" when one lies significantly below 0 (its 95% interval wholly below 0 and p < 0.05), else "above" when
    every one lies significantly above 0, else "not distinguishable"; None while none is measured."""
    pooled = [result[column]["pooled"] for column in ATTACK_OF if "pooled" in result.get(column, {})]
    if not pooled:
        return None
    for entry in pooled:
        interval, p = entry.get("interval"), entry.get("p_value")
        valid_p = isinstance(p, int | float) and 0 <= p <= 1
        valid_interval = interval is None or (
            -1 <= interval[0] <= entry["difference"] <= interval[1] <= 1
        )  # fmt: skip
        if not (valid_p and valid_interval and -1 <= entry["difference"] <= 1):
            raise ValueError(f"Not a paired comparison (difference inside its interval, p in [0, 1]): {entry}.")

    def significant(entry: dict[str, Any], sign: int) -> bool:  # without an interval (no spread), by p and sign
        side = entry["interval"][1 if sign < 0 else 0] if entry["interval"] is not None else entry["difference"]
        return entry["p_value"] < 0.05 and sign * side > 0

    if any(significant(entry, -1) for entry in pooled):
        return "below"
    return "above" if all(significant(entry, 1) for entry in pooled) else "not distinguishable"


POOLED_CAPTION = (
    "Paired on the same test images, pooled over seeds (difference in points; its 95% interval and p from a paired "
    "t-test over the images, each image's difference averaged over the seeds; the per-seed differences and the "
    "t interval of their mean, which holds the variation between the first group's training seeds, not that of a "
    "single-run baseline; with one pair of models, Newcombe's interval and the exact McNemar p):"
)
SINGLE_CAPTION = "Paired on the same test images (difference in points, Newcombe's 95% interval, exact McNemar p):"


def paired_caption(summary: dict[str, Any]) -> str:
    """The caption of the paired comparisons' table: the pooled t-test's basis when any comparison pools several
    seeds, else the single pair's (Newcombe's interval, McNemar p)."""
    pooled = (
        result.get(column, {}).get("pooled", {}) for result in summary["comparisons"].values() for column in ATTACK_OF
    )
    return POOLED_CAPTION if any(entry.get("n_seeds", 1) > 1 for entry in pooled) else SINGLE_CAPTION


def claim_markdown(summary: dict[str, Any], n_eval: int, n_autoattack: int) -> str:
    """The claim's numbers as markdown: each group's mean +- std over its models (seeds), the criteria on the means
    and the pooled paired comparisons. Accuracies in percent."""
    criteria = summary.get("criteria", [])
    failed = [item["criterion"] for item in criteria if item["met"] is False]
    pending = [item["criterion"] for item in criteria if item["met"] is None]
    if failed:
        verb = "is" if len(failed) == 1 else "are"
        verdict = f"**On the means, {len(failed)} of the claim's {len(criteria)} criteria {verb} not met: "
        verdict += f"{'; '.join(failed)}.**"
    elif len(pending) < len(criteria):
        verdict = f"**On the means, every criterion measured so far is met ({len(criteria) - len(pending)} of "
        verdict += f"{len(criteria)}).**"
    else:
        verdict = "**No criterion of the claim is measured yet.**"
    if pending and len(pending) < len(criteria):
        verdict += f" Not yet measured: {'; '.join(pending)}."
    lines = [
        verdict,
        "",
        f"Mean +- sample std over training seeds (clean, FGSM, PGD-20 on the first {n_eval} CIFAR-10 test images, "
        f"AutoAttack on the first {n_autoattack}; Linf eps = 8/255):",
        "",
        *groups_markdown(summary),
    ]
    lines += ["", "| criterion, on the means | measured | target | met |", "|---|---|---|---|"]
    for item in summary.get("criteria", []):
        measured = "-" if item["measured"] is None else f"{item['measured']:.2f}"
        met = {None: "not yet measured", True: "yes", False: "**no**"}[item["met"]]
        lines.append(f"| {item['criterion']} | {measured} | {item['target']} | {met} |")
    lines += [
        "",
        paired_caption(summary),
        "",
        *comparisons_markdown(summary),
    ]
    return "\n".join(lines)


ANSWERS = {
    None: "not yet measured",
    "below": "**no**, below",
    "above": "**yes**, above",
    "not distinguishable": "**not distinguishable** at this sample size",
}


def answers_markdown(summary: dict[str, Any], questions: dict[str, str]) -> str:
    """One line per question (`questions`: comparison label -> question): its answer from `paired_verdict` and the
    paired differences (points, 95% interval, p) it rests on."""
    lines = []
    for label, question in questions.items():
        result = summary["comparisons"][label]
        answer = ANSWERS[paired_verdict(result)]
        measured = [f"{name} {format_paired(result[column])}" for column, name in (("pgd20", "PGD-20"),
                    ("autoattack", "AutoAttack")) if column in result]  # fmt: skip
        lines.append(f"- {question} {answer} ({label}, paired: {'; '.join(measured)}).")
    return "\n".join(lines)


def questions_markdown(summary: dict[str, Any], questions: dict[str, str], n_eval: int, n_autoattack: int) -> str:
    """A study's questions answered from its paired comparisons (`paired_verdict`; `questions`: comparison label ->
    question), then its groups' mean +- std and the pooled paired comparisons. Accuracies in percent."""
    return "\n".join(
        [
            answers_markdown(summary, questions),
            "",
            "No: a paired difference lies significantly below 0 (95% interval wholly below 0, p < 0.05); yes: every "
            "one measured lies significantly above 0; not distinguishable: otherwise, which is no evidence of a match "
            "(the verdicts read the 95% interval over the test images; an interval between training seeds, where "
            "shown, is not part of them). Mean "
            f"+- std (clean, FGSM, PGD-20 on the first {n_eval} CIFAR-10 test images, AutoAttack on the first "
            f"{n_autoattack}; Linf eps = 8/255):",
            "",
            *groups_markdown(summary),
            "",
            paired_caption(summary),
            "",
            *comparisons_markdown(summary),
        ]
    )
