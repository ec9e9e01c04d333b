"""The CPU reproduction's studies beside the headline claim (`reproduce_cifar10_cpu.py`): few data (the paper's
Figure 3: accuracy against the fraction of the training set), compression (the paper's Table 4: accuracy against the
student's parameters) and the methods compared on one table (robustness, clean accuracy, wall time and backward
passes per image).

A study is a mapping label -> points, each point the names of the result rows (training seeds) it averages; a point
shows their mean, with the sample std as an error bar when there are several. Accuracies are the result rows'
fractions in [0, 1], drawn in percent: clean and PGD-20 on the first `n_eval` CIFAR-10 test images, AutoAttack on the
first `n_autoattack` (Linf eps = 8/255).
"""

from __future__ import annotations

import math
import statistics
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.plotting import around, place_labels, plain_log_ticks
from mixacm_hf.statistics import wilson_interval

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Study = dict[str, list[list[str]]]  # label -> points -> the names of the rows a point averages
DODGE = 0.04  # methods' points at one cost are drawn this share of the panel's span of costs apart (room for a label)
TITLE_WIDTH = 140  # characters of a title line in the cost figure (10-point type, 12 inches wide)
SEED_DODGE = 0.25  # one method's seeds at one cost are drawn this share of DODGE apart
PANELS = [("clean", "clean"), ("pgd20", "PGD-20"), ("autoattack", "AutoAttack")]
LINE_STYLES = ["-", "--", ":", "-."]  # the cost figure's training seeds, in order


def check_accuracies(values: Sequence[float]) -> list[float]:
    """`values` as floats once each is a finite accuracy in [0, 1] (not a percentage, not a bool).

    Raises:
        ValueError: naming the values.
    """
    if not values or not all(
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and 0 <= value <= 1
        for value in values
    ):
        raise ValueError(
            f"Expected one or more finite accuracies in [0, 1] (fractions, not percent), got {list(values)}."
        )
    return [float(value) for value in values]


def average(rows: Sequence[dict], column: str) -> tuple[float, float | None] | None:
    """(mean, sample std or None for one value) of `column` over the rows that measured it, in percent; None when
    none did.

    Raises:
        ValueError: a measured value is no accuracy in [0, 1] (`check_accuracies`).
    """
    values = [row[column] for row in rows if row.get(column) is not None]
    if values:
        values = check_accuracies(values)
    else:
        return None  # percent of the fractions' mean, as `seed_statistics.format_mean_std` shows it (same rounding)
    return 100 * statistics.fmean(values), 100 * statistics.stdev(values) if len(values) > 1 else None


def mean_seconds_alone(rows: Sequence[dict]) -> float | None:
    """Mean training wall time in seconds over the rows not trained on a shared machine (the only ones whose wall
    time is a cost measurement); None when every row shared the machine."""
    timed = [row["train_seconds"] for row in rows if not row.get("shared_machine")]
    return statistics.fmean(timed) if timed else None


def plot_study(
    study: Study,
    rows: Sequence[dict],
    path: Path,
    *,
    x_of: Callable[[dict], float],
    xlabel: str,
    title: str,
    references: Sequence[tuple[str, list[str]]] = (),
    xscale: str = "linear",
    tick_label: Callable[[dict], str] | None = None,
) -> None:
    """One panel per accuracy (clean, PGD-20, AutoAttack), one line per study label through its points at
    `x_of(row)` (the first row of the point), and each reference (label, row names) as a star; a point averages the
    rows present (none: left out), its value written where it overlaps nothing drawn (`plotting.place_labels`). The x
    ticks are the points' x values, labelled `tick_label(row)` (default: the value). Saved as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    by_name = {row["name"]: row for row in rows}
    named = [names for points in study.values() for names in points] + [names for _, names in references]
    figure = Figure(figsize=(12, 4.6))
    FigureCanvasAgg(figure)
    placed = []
    for axes, (column, name) in zip(figure.subplots(1, 3), PANELS):
        labels = []  # each value's label and its places (`plotting.place_labels`), placed once the layout is final
        for color, (label, points) in enumerate(study.items()):
            found = [[by_name[n] for n in names if n in by_name] for names in points]
            found = [point for point in found if point]
            measured = [(x_of(point[0]), average(point, column)) for point in found]
            measured = sorted((x, value) for x, value in measured if value is not None)
            if not measured:
                continue
            xs = [x for x, _ in measured]
            means = [value[0] for _, value in measured]
            errors = [value[1] or 0.0 for _, value in measured]
            axes.errorbar(xs, means, yerr=errors, marker="o", capsize=4, color=f"C{color}", label=label)
            for x, mean in zip(xs, means):
                text = axes.annotate(f"{mean:.1f}", (x, mean), xytext=(6, 0), textcoords="offset points", fontsize=8,
                                     color=f"C{color}")  # fmt: skip
                labels.append((text, around((x, mean))))
        for offset, (label, names) in enumerate(references):
            reference = [by_name[n] for n in names if n in by_name]
            value = average(reference, column) if reference else None
            if value is not None:
                x = x_of(reference[0])
                axes.scatter(x, value[0], marker="*", s=120, color=f"C{len(study) + offset}", label=label, zorder=3)
                text = axes.annotate(f"{value[0]:.1f}", (x, value[0]), xytext=(6, 0), textcoords="offset points",
                                     fontsize=8)  # fmt: skip
                labels.append((text, around((x, value[0]))))
        axes.set(xlabel=xlabel, ylabel=f"{name} accuracy (%)", title=name, xscale=xscale)
        ticks = {x_of(row): row for row in rows if any(row["name"] in names for names in named)}
        axes.set_xticks(sorted(ticks), [tick_label(ticks[x]) if tick_label else f"{x:g}" for x in sorted(ticks)])
        axes.minorticks_off()
        axes.grid(alpha=0.3)
        axes.margins(x=0.1, y=0.15)  # room for the value labels
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=8, loc="best")  # clear of the points and their error bars
        placed.append((axes, labels))
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    for axes, labels in placed:
        place_labels(figure, axes, labels)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)


def methods_markdown(entries: Sequence[tuple[str, list[str]]], rows: Sequence[dict]) -> str:
    """The methods compared on one table: per entry (label, the row names of its training seeds) the method, its
    teacher, backward passes per training image, training wall time (minutes; mean over the rows trained alone on
    the machine, saying how many of the seeds when not all), clean, PGD-20 and AutoAttack accuracy (mean +- std
    over the seeds that measured it, percent; the AutoAttack cell names its sample sizes and how many seeds it
    averages when not all). An entry without rows says which runs it waits for."""
    by_name = {row["name"]: row for row in rows}
    lines = [
        "| method | seeds | teacher | backward passes / image | train time (alone) | clean | PGD-20 | AutoAttack (n) |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def cell(found: list[dict], column: str) -> str:
        value = average(found, column)
        if value is None:
            return "-"
        return f"{value[0]:.1f}" if value[1] is None else f"{value[0]:.1f} +- {value[1]:.1f}"

    for label, names in entries:
        found = [by_name[name] for name in names if name in by_name]
        if not found:
            lines.append(f"| {label} | 0 | not yet trained and evaluated: `{'`, `'.join(names)}` | | | | | |")
            continue
        seconds, alone = mean_seconds_alone(found), sum(not row.get("shared_machine") for row in found)
        minutes = "not measured alone" if seconds is None else f"{seconds / 60:.0f} min"
        minutes += f" ({alone} of {len(found)} seeds)" if 0 < alone < len(found) else ""
        attacked = [row for row in found if row["autoattack"] is not None]
        sizes = "/".join(str(n) for n in sorted({row["n_eval_autoattack"] for row in attacked}))
        partial = f", {len(attacked)} of {len(found)} seeds" if attacked and len(attacked) < len(found) else ""
        autoattack = cell(found, "autoattack") + (f" ({sizes}{partial})" if attacked else "")
        lines.append(
            f"| {label} | {len(found)} | {found[0]['teacher'] or '-'} | {found[0]['backward_passes_per_image']} "
            f"| {minutes} | {cell(found, 'clean')} | {cell(found, 'pgd20')} | {autoattack} |"
        )
    return "\n".join(lines)


def autoattack_interval(row: dict) -> tuple[float, float, float] | None:
    """(accuracy, low, high) of one run's AutoAttack in percent, with the 95% Wilson interval over its
    `n_eval_autoattack` test images (test-image sampling only); None when it was not measured."""
    if row.get("autoattack") is None:
        return None
    (value,) = check_accuracies([row["autoattack"]])
    low, high = wilson_interval(round(value * row["n_eval_autoattack"]), row["n_eval_autoattack"])
    return 100 * value, 100 * low, 100 * high


def slot(sharing: list[tuple[str, int]], key: tuple[str, int]) -> float:
    """Where the series `key` (method, seed) is drawn among the series `sharing` a cost, in DODGE steps from the cost:
    methods DODGE apart, centred on it, and one method's seeds SEED_DODGE of a step apart around its place."""
    methods = list(dict.fromkeys(method for method, _ in sharing))
    seeds = [other for other in sharing if other[0] == key[0]]
    place = methods.index(key[0]) - (len(methods) - 1) / 2
    return place + SEED_DODGE * (seeds.index(key) - (len(seeds) - 1) / 2)


def plot_cost(
    study: Study,
    rows: Sequence[dict],
    path: Path,
    *,
    seconds_of: Callable[[dict], float],
    title: str,
    estimated: Callable[[dict], bool] | None = None,
) -> Figure:
    """AutoAttack accuracy against training cost: one panel with the cost in backward passes per image x epochs,
    one in wall time (`seconds_of(row)`, minutes; hollow where `estimated(row)`). Every run is its own point with its
    95% interval
    (`autoattack_interval`); a line joins one method's (study label's) schedules of one training seed (color: method,
    line style: seed), so a line never mixes seeds. Each method's schedule is labelled with its epochs once. Points at
    the same cost are drawn side by side (`slot`); each label goes beside its point or above or below its interval,
    where it overlaps nothing drawn (`plotting.place_labels`). Runs the study names whose AutoAttack `rows` lack are
    listed under the title as not yet measured; title lines are wrapped at TITLE_WIDTH characters. Saved as PNG;
    returns the figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    by_name = {row["name"]: row for row in rows}
    named = {label: [n for names in points for n in names] for label, points in study.items()}
    drawn = [by_name[n] for names in named.values() for n in names if autoattack_interval(by_name.get(n, {}))]
    seeds = sorted({row["seed"] for row in drawn})
    styles = {seed: LINE_STYLES[index % len(LINE_STYLES)] for index, seed in enumerate(seeds)}
    figure = Figure(figsize=(12, 5.6))
    FigureCanvasAgg(figure)
    panels = [
        (lambda row: row["backward_passes_per_image"] * row["epochs"], "backward passes per image x epochs", None),
        (lambda row: seconds_of(row) / 60, "training wall time (min)", estimated),
    ]
    placed, lined_seeds = [], set()
    for axes, (x_of, xlabel, hollow_of) in zip(figure.subplots(1, 2, sharey=True), panels):
        series = {}  # (method, seed) -> (color, [(cost, epochs, labelled, (accuracy, low, high))])
        for color, (label, points) in enumerate(study.items()):
            for names in points:
                found = [by_name[n] for n in names if n in by_name]
                measured = [(row, value) for row in found if (value := autoattack_interval(row)) and x_of(row) > 0]
                for index, (row, value) in enumerate(measured):  # a log axis has no place for no cost
                    point = (x_of(row), row["epochs"], index == 0, value, bool(hollow_of and hollow_of(row)))
                    series.setdefault((label, row["seed"]), (color, []))[1].append(point)
        ties: dict[float, list[tuple[str, int]]] = {}
        for key, (_, measured) in series.items():
            for x, *_ in measured:
                ties.setdefault(round(math.log10(x), 3), []).append(key)
        costs = [x for _, measured in series.values() for x, *_ in measured]
        span = math.log10(max(costs) / min(costs)) if len(ties) > 1 else 1.0  # the panel's costs, in decades
        labels = []  # each point's label and its places (`plotting.place_labels`), placed once the layout is final
        for key, (color, measured) in series.items():
            measured.sort()
            xs = [x * 10 ** (DODGE * span * slot(ties[round(math.log10(x), 3)], key)) for x, *_ in measured]
            values = [value for *_, value, _ in measured]
            means = [value[0] for value in values]
            errors = [[value[0] - value[1] for value in values], [value[2] - value[0] for value in values]]
            axes.errorbar(xs, means, yerr=errors, marker="o", capsize=4, color=f"C{color}", linestyle=styles[key[1]])
            if len(measured) > 1:
                lined_seeds.add(key[1])
            hollow = [(x, value[0]) for x, (*_, value, empty) in zip(xs, measured) if empty]
            if hollow:
                axes.plot(*zip(*hollow), "o", color=f"C{color}", markerfacecolor="white", zorder=3)
            for x, (_, epochs, labelled, value, _) in zip(xs, measured):
                if not labelled:
                    continue
                text = axes.annotate(
                    f"{epochs:g} ep", (x, value[0]), xytext=(6, 0), textcoords="offset points", fontsize=7,
                    color=f"C{color}",
                )  # fmt: skip
                mean, low, high = value  # beside the point, else above or below its interval
                labels.append((text, [
                    ((x, mean), (6, 0), "left", "center"), ((x, mean), (-6, 0), "right", "center"),
                    *(((x, high), (0, 5 + 10 * k), "center", "bottom") for k in range(4)),
                    *(((x, low), (0, -5 - 10 * k), "center", "top") for k in range(4)),
                ]))  # fmt: skip
        axes.set(xlabel=f"{xlabel}, log scale", xscale="log")
        axes.margins(x=0.1)  # room for the labels of the rightmost points
        plain_log_ticks(axes.xaxis)
        axes.tick_params(axis="x", which="minor", labelsize=7)
        axes.grid(alpha=0.3)
        placed.append((axes, labels))
    figure.axes[0].set_ylabel("AutoAttack accuracy (%)")
    handles = [
        Line2D([], [], color=f"C{color}", marker="o", label=label)
        for color, (label, names) in enumerate(named.items())
        if any(by_name.get(n, {}).get("autoattack") is not None for n in names)
    ]
    handles += [
        Line2D([], [], color="0.4", linestyle=styles[seed], label=f"seed {seed}") for seed in sorted(lined_seeds)
    ]
    figure.legend(handles=handles, fontsize=8, loc="lower center", ncols=len(handles))  # clear of every point
    title += "\nruns of equal cost are drawn side by side around their cost"
    pending = [n for names in named.values() for n in names if by_name.get(n, {}).get("autoattack") is None]
    if pending:
        title += f"\nnot yet measured: {', '.join(pending)}"
    lines = [
        wrapped
        for line in title.split("\n")
        for wrapped in textwrap.wrap(line, TITLE_WIDTH, break_on_hyphens=False) or [""]
    ]
    figure.suptitle("\n".join(lines), fontsize=10)
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    for axes, labels in placed:
        place_labels(figure, axes, labels)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return figure
