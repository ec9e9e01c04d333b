"""Reporting of the CPU reproduction (`reproduce_cifar10_cpu.py`): result rows from the run folders' records, the
markdown table laid out like the paper's Tables 3/4, the results plot and the READMEs' results block.

A row's accuracies are fractions in [0, 1] measured on the first `n_eval` CIFAR-10 test images (clean, FGSM, PGD-20,
Linf eps = 8/255) and on the first `n_eval_autoattack` (AutoAttack standard); see `docs/design.md`, "Evaluation
protocol".
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from benchmarks.plotting import around, place_labels, plain_log_ticks
from benchmarks.studies import average, mean_seconds_alone
from mixacm_hf.files import atomic_write_text, replace_marked_block
from mixacm_hf.hub import load_reports
from mixacm_hf.methods import relevant_hyperparameters
from mixacm_hf.resume import UNRECORDED
from mixacm_hf.robustness import RobustnessReport

if TYPE_CHECKING:
    from matplotlib.figure import Figure

TABLE_START, TABLE_END = "<!-- cifar10-cpu-results:start -->", "<!-- cifar10-cpu-results:end -->"
# The paper's Table 3 (CIFAR-10, WRN-28-10 teacher -> WRN-16-10 students, 200 epochs, original CIFAR-10 files):
# clean, FGSM, PGD-20, AutoAttack. For orientation only: different scale, epochs and data copy.
PAPER_TABLE3 = {
    "natural": (93.79, 5.34, 0.0, 0.0),
    "pgd-at": (83.90, 53.07, 47.55, 44.51),
    "kd": (88.60, 27.37, 0.12, 0.0),
    "mixacm-no-mixup": (90.47, 56.98, 40.69, 36.42),
    "mixacm": (89.93, 59.48, 48.09, 43.64),
}
SHARED_KEY = "shared_machine"  # a run trained beside other jobs: its train_seconds are no cost measurement
LATER_KEYS = (SHARED_KEY,)  # written into a run's train_summary.json after it trained, by the reproduction
SHARED_ALPHA = 0.3  # the opacity of runs trained beside other jobs on the wall-time panel
METHOD_COLORS = {
    "natural": "C7", "kd": "C3", "mixacm-no-mixup": "C4", "mixacm": "C0", "pgd-at": "C2", "n-fgsm": "C8",
    "trades": "C1", "ard": "C5", "rslad": "C6",
}  # fmt: skip


class Stage(Protocol):
    """What a row needs to know about a reproduction stage (`reproduce_cifar10_cpu.Stage`)."""

    name: str
    role: str
    method: str
    arch: str
    seed: int
    train_fraction: float
    code_commit: str | None
    shared_machine: bool
    commit_recorded: bool

    @property
    def output_dir(self) -> Path: ...


def measured(run_folder: Path, attack: str) -> RobustnessReport | None:
    """The newest report in `run_folder`'s robustness.json that measured `attack` (e.g. "fgsm", "autoattack")."""
    return next((r for r in reversed(load_reports(run_folder)) if attack in r.robust_accuracy), None)


def summary_commit(summary_path: Path) -> str | None:
    """The git commit that first committed `summary_path` with its content as it is, the keys added after the run
    (`LATER_KEYS`) aside (None outside a git checkout or if uncommitted): for a run trained before training summaries
    recorded their code's commit, its code is this commit's or older."""

    def content(text: str) -> dict:
        return {key: value for key, value in json.loads(text).items() if key not in LATER_KEYS}

    git = {"cwd": summary_path.parent, "capture_output": True, "text": True, "check": False}
    log = subprocess.run(["git", "log", "--format=%H", "--", summary_path.name], **git)
    current, found = content(summary_path.read_text()), None
    for commit in log.stdout.split() if log.returncode == 0 else []:  # newest first, back while the content holds
        shown = subprocess.run(["git", "show", f"{commit}:./{summary_path.name}"], **git)
        if shown.returncode != 0 or content(shown.stdout) != current:
            break
        found = commit
    return found


def code_history(summary: dict) -> list[dict] | None:
    """The code of each part of a run (`resume.CodeHistory`), the steps before its first recorded part said to be
    unrecorded (runs that resumed a checkpoint written before the record, whose summaries leave them out)."""
    history = (summary.get("code") or {}).get("history")
    if history and history[0]["from_step"] > 0:
        return [dict(UNRECORDED), *history]
    return history


def result_row(stage: Stage, command: Callable[[str], str]) -> dict | None:
    """One row of results/cifar10_cpu.json from the stage's run folder (train_summary.json and robustness.json), or
    None while the stage is untrained or its clean/FGSM/PGD-20 evaluation is missing. `command(dataset)` reproduces
    the row, given the dataset its evaluation recorded (a path or Hub id, as given)."""
    summary_path = stage.output_dir / "train_summary.json"
    report = measured(stage.output_dir, "fgsm") if summary_path.exists() else None
    if report is None:
        return None
    summary = json.loads(summary_path.read_text())
    autoattack = measured(stage.output_dir, "autoattack")
    recorded = (summary.get("code") or {}).get("commit") if stage.commit_recorded else None
    code_commit = recorded or stage.code_commit
    return {
        "name": stage.name,
        "role": stage.role,
        "method": stage.method,
        "arch": stage.arch,
        "params": summary["params"],
        "epochs": summary["epochs"],
        "train_seconds": summary["train_seconds"],
        "images_per_second": summary["images_per_second"],
        "backward_passes_per_image": summary.get("backward_passes_per_image"),
        "clean": report.clean_accuracy,
        "fgsm": report.robust_accuracy["fgsm"],
        "pgd20": report.robust_accuracy["pgd-20"],
        "autoattack": autoattack.robust_accuracy["autoattack"] if autoattack else None,
        "n_eval": report.n_examples,
        "n_eval_autoattack": autoattack.n_examples if autoattack else 0,
        "seed": stage.seed,
        "teacher": Path(summary["teacher"]).name if summary.get("teacher") else None,  # its published folder's name
        "train_fraction": stage.train_fraction,
        "hyperparameters": relevant_hyperparameters(stage.method, summary.get("hyperparameters", {})),
        "code_commit": code_commit,
        # a run resumed across checkouts: the code of each part ({"from_step", "commit", "dirty"}), where recorded
        "code_history": code_history(summary) if stage.commit_recorded else None,
        # where the commit was not recorded: the commit that added the summary (its code is this one's or older)
        "summary_commit": None if code_commit else summary_commit(summary_path),
        SHARED_KEY: stage.shared_machine,  # its train_seconds are no cost measurement
        "command": command(report.dataset["name"]),
        # the training command the run recorded: every flag, including those that are no method hyperparameter
        # (gradient clipping, input pipeline, teacher compilation)
        "train_command": summary.get("command"),
    }


def markdown_table(rows: list[dict]) -> str:
    """Rows laid out like the paper's Tables 3/4 (accuracies in %), with the paper's Table 3 numbers beside ours."""

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f}"

    lines = [
        "| model | method | params | epochs | train time | clean | FGSM | PGD-20 | AutoAttack (n) "
        "| paper clean / PGD-20 / AA |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        paper = PAPER_TABLE3.get(row["method"])
        paper_text = f"{paper[0]:.1f} / {paper[2]:.1f} / {paper[3]:.1f}" if paper and row["role"] == "student" else ""
        autoattack = f"{pct(row['autoattack'])} ({row['n_eval_autoattack']})" if row["autoattack"] is not None else "-"
        minutes = f"{row['train_seconds'] / 60:.0f} min" + ("*" if row.get(SHARED_KEY) else "")
        lines.append(
            f"| {row['name']} ({row['role']}) | {row['method']} | {row['params'] / 1e6:.2f}M | {row['epochs']:g} "
            f"| {minutes} | {pct(row['clean'])} | {pct(row['fgsm'])} | {pct(row['pgd20'])} | {autoattack} "
            f"| {paper_text} |"
        )
    if any(row.get(SHARED_KEY) for row in rows):
        lines.append(
            "\n\\* trained while other jobs shared the 2 cores: its wall time is no measure of the method's cost."
        )
    return "\n".join(lines)


def plot_results(rows: list[dict], path: Path, n_eval: int, n_autoattack: int) -> Figure:
    """Robust vs clean accuracy per model, and robust accuracy vs training wall time (log scale), saved as a PNG.
    Colour: method; stars: teachers; filled markers: PGD-20 on the first `n_eval` images (every model); hollow
    markers joined to them: AutoAttack on the first `n_autoattack` (where measured); pale on the wall-time panel: runs
    trained beside other jobs (`shared_machine`: their wall time is no cost measurement). Each model is numbered
    (where the number overlaps nothing drawn: `plotting.place_labels`), the key below the plots. Returns the figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    columns = 3
    per_column = -(-len(rows) // columns)
    key_inches = 0.3 + per_column * 8 * 1.25 / 72  # the key's lines: 8-point type
    figure = Figure(figsize=(12, 5.4 + key_inches))
    FigureCanvasAgg(figure)
    axes_pair = figure.subplots(1, 2)
    labels: dict = {axes: [] for axes in axes_pair}  # each number's label and places (`plotting.place_labels`)
    for number, row in enumerate(rows, start=1):
        color = METHOD_COLORS.get(row["method"], "k")
        marker = "*" if row["role"] == "teacher" else "o"
        pgd20 = 100 * row["pgd20"]
        for axes, x in zip(axes_pair, (100 * row["clean"], row["train_seconds"] / 60)):
            alpha = SHARED_ALPHA if axes is axes_pair[1] and row.get(SHARED_KEY) else 1.0
            axes.scatter(x, pgd20, marker=marker, s=70, color=color, alpha=alpha)
            text = axes.annotate(str(number), (x, pgd20), xytext=(6, 0), textcoords="offset points", fontsize=7)
            labels[axes].append((text, around((x, pgd20))))
            if row["autoattack"] is not None:
                autoattack = 100 * row["autoattack"]
                axes.plot([x, x], [pgd20, autoattack], color=color, linewidth=1, alpha=alpha)
                axes.scatter(x, autoattack, marker=marker, s=70, facecolors="none", edgecolors=color, alpha=alpha)
    axes_pair[0].set(xlabel="clean accuracy (%)", ylabel="robust accuracy (%)", title="Robust vs clean accuracy")
    axes_pair[1].set(
        xlabel="training wall time (min, 2-core CPU, log scale)", ylabel="robust accuracy (%)",
        title="Robustness vs training cost\n(pale: trained beside other jobs, its wall time no cost)", xscale="log",
    )  # fmt: skip
    plain_log_ticks(axes_pair[1].xaxis)
    for axes in axes_pair:
        axes.grid(alpha=0.3, which="both")
    methods = [m for m in METHOD_COLORS if any(row["method"] == m for row in rows)]
    handles = [Line2D([], [], marker="o", linestyle="", color=METHOD_COLORS[m], label=m) for m in methods]
    axes_pair[0].legend(handles=handles, fontsize=8, loc="lower left")
    key = [f"{number:>2}  {row['name']}" for number, row in enumerate(rows, start=1)]
    key_share = key_inches / figure.get_figheight()  # the figure's bottom, below the plots
    for column in range(columns):
        lines = key[column * per_column : (column + 1) * per_column]
        figure.text(0.04 + column * 0.32, key_share - 0.1 / figure.get_figheight(), "\n".join(lines), fontsize=8,
                    va="top", family="monospace", linespacing=1.15)  # fmt: skip
    figure.suptitle(
        f"CIFAR-10, Linf eps = 8/255: PGD-20 on the first {n_eval} test images (filled), "
        f"AutoAttack on the first {n_autoattack} (hollow)",
        fontsize=10,
    )
    figure.tight_layout(rect=(0, key_share, 1, 1))
    for axes, placed in labels.items():
        place_labels(figure, axes, placed)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return figure


def replace_between_markers(path: Path, text: str, markers: tuple[str, str] = (TABLE_START, TABLE_END)) -> None:
    """Put `text` between the `markers` (start, end; the results table's by default) of a markdown file; a file
    without both markers is left alone."""
    replaced = replace_marked_block(path.read_text(), f"\n{text}\n", *markers)
    if replaced is not None:
        atomic_write_text(path, replaced)


def write_results(
    rows: list[dict],
    results: Path,
    name: str,
    *,
    n_eval: int,
    n_autoattack: int,
    readmes: Iterable[Path] = (),
    summary: dict | None = None,
) -> None:
    """Write `results/<name>.json` ({"rows": rows, "summary": summary}), `<name>.md` (the table) and `<name>.png`
    (the plot of `plot_results`), and put the table between the markers of each README."""
    results.mkdir(parents=True, exist_ok=True)
    atomic_write_text(results / f"{name}.json", json.dumps({"rows": rows, "summary": summary}, indent=2) + "\n")
    table = markdown_table(rows)
    atomic_write_text(results / f"{name}.md", table + "\n")
    plot_results(rows, results / f"{name}.png", n_eval, n_autoattack)
    for readme in readmes:
        replace_between_markers(readme, table)


def headline_label(label: str, rows: list[dict]) -> str:
    """A headline bar group's label: its name, the mean training time of its seeds trained alone, how many seeds it
    averages and, when AutoAttack measured only some of them, how many."""
    attacked = sum(row["autoattack"] is not None for row in rows)
    seconds = mean_seconds_alone(rows)
    lines = [label, "not timed alone" if seconds is None else f"{seconds / 60:.0f} min"]
    lines += [f"{len(rows)} seeds"] if len(rows) > 1 else []
    lines += [f"AutoAttack {attacked} of {len(rows)}"] if 0 < attacked < len(rows) else []
    return "\n".join(lines)  # one short line each, so that neighbouring labels do not overlap


def plot_headline(entries: list[tuple[str, list[dict]]], path: Path, n_eval: int, n_autoattack: int) -> Figure:
    """The headline comparison as grouped bars, one group per entry (label, its rows: one per training seed): clean
    and PGD-20 accuracy (first `n_eval` test images) and AutoAttack (first `n_autoattack`), the mean over the rows
    with the sample std as an error bar where there are several seeds, and the training wall time under each label.
    Entries without rows are left out; returns the figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    entries = [(label, rows) for label, rows in entries if rows]
    columns = [("clean", "clean", "C7"), ("pgd20", "PGD-20", "C0"), ("autoattack", "AutoAttack", "C3")]
    figure = Figure(figsize=(max(10, 1.25 * len(entries)), 4.8))
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    width = 0.8 / len(columns)
    for offset, (column, name, color) in enumerate(columns):
        for position, (_, rows) in enumerate(entries):
            value = average(rows, column)
            if value is None:
                continue
            mean, spread = value
            x = position + (offset - 1) * width
            axes.bar(x, mean, width, color=color, yerr=spread, capsize=4, label=name if position == 0 else None)
            axes.annotate(f"{mean:.1f}", (x, mean), xytext=(0, 3 if spread is None else 3 + 6), ha="center",
                          textcoords="offset points", fontsize=8)  # fmt: skip
    axes.set_xticks(range(len(entries)), [headline_label(label, rows) for label, rows in entries], fontsize=8)
    axes.set(ylabel="accuracy (%)", ylim=(0, 100))
    axes.legend(fontsize=8, loc="upper right", ncols=3)
    axes.grid(axis="y", alpha=0.3)
    axes.set_title(
        f"CIFAR-10, Linf eps = 8/255: clean and PGD-20 on the first {n_eval} test images, AutoAttack on the first "
        f"{n_autoattack}\nWRN-16-2 students, 10 epochs on a 2-core CPU (error bars: std over training seeds)",
        fontsize=9,
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return figure
