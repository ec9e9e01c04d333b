"""Plot of robust accuracy against eps from a report's sweep (matplotlib, Agg canvas: no display needed)."""

from __future__ import annotations

from pathlib import Path, PureWindowsPath

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..teachers import is_zoo_spec
from .report import RobustnessReport


def shown_name(name: str | None, missing: str = "model") -> str:
    """A model's or dataset's name as a plot shows it: a local path (absolute, Windows-style, starting with ".",
    with more than one folder, or existing here) by its last part, so that no machine's folders are published; a
    zoo spec (`robustbench:...`), a Hub id (`org/name`) or a bare name as it is; `missing` for none."""
    if not name:
        return missing
    if is_zoo_spec(name):
        return name
    windows = PureWindowsPath(name)
    if windows.drive or "\\" in name:
        return windows.name
    path = Path(name)
    if path.is_absolute() or name.startswith(".") or len(path.parts) > 2 or path.exists():
        return path.name or str(path)
    return name


def plot_eps_sweep(report: RobustnessReport, path: str | Path) -> Path:
    """Write a PNG of accuracy versus eps, one line per attack plus clean accuracy, titled with the model's name
    (`shown_name`) and the data attacked; returns the path."""
    if report.eps_sweep is None:
        raise ValueError("The report has no eps sweep: run evaluate_robustness with eps_sweep=[...].")
    scale, unit = (255, " (x/255)") if report.norm == "Linf" else (1, "")
    figure = Figure(figsize=(5, 3.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    eps = report.eps_sweep["eps"]
    for name, accuracy in report.eps_sweep["robust_accuracy"].items():
        points = [(e * scale, a) for e, a in zip(eps, accuracy) if a is not None]
        axes.plot(*zip(*points), marker="o", label=name)
    axes.axhline(report.clean_accuracy, color="gray", linestyle="--", label="clean")
    axes.set(xlabel=f"{report.norm} eps{unit}", ylabel="accuracy", ylim=(0, 1))
    data = f"{shown_name(report.dataset.get('name'), 'data')} {report.dataset.get('split') or ''}".strip()
    axes.set_title(f"{shown_name(report.model.get('name'))}\n{data}: {report.n_examples} images", fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path
