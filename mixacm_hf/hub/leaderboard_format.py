"""Leaderboard output: markdown tables, CSV and a static HTML page (sortable, with a search box) of a `Leaderboard`."""

from __future__ import annotations

import base64
import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2

from .compare import compare_rows
from .leaderboard_cards import Accuracy, Leaderboard, Row, Table, coerce_number
from .results import format_duration

HTML_TEMPLATE = Path(__file__).with_name("leaderboard.html.j2")
CSV_COLUMNS = (
    "dataset", "split", "norm", "eps", "rank", "model", "architecture", "params", "clean", "clean_low", "clean_high",
    "clean_n", "autoattack", "autoattack_low", "autoattack_high", "autoattack_n", "p_value_vs_next", "epochs",
    "backward_passes_per_image", "train_seconds", "device", "link",
)  # fmt: skip


def _cost(facts: dict[str, Any]) -> str:
    epochs, passes, seconds = facts.get("epochs"), facts.get("backward_passes_per_image"), facts.get("train_seconds")
    if coerce_number(epochs) is None or passes is None:
        return "–"
    cost = f"{coerce_number(epochs):g} epochs × {passes} backward/image"
    seconds = coerce_number(seconds)
    return cost + (f", {format_duration(seconds)} on {facts.get('device', '?')}" if seconds is not None else "")


def _params(facts: dict[str, Any]) -> str:
    params = coerce_number(facts.get("params"))
    return "–" if params is None else f"{params / 1e6:.2f}M"


def _cells(row: Row) -> dict[str, str]:
    def accuracy(value: Accuracy | None) -> tuple[str, str]:
        if value is None:
            return "–", "–"
        interval = f"[{value.interval[0]:.1f}, {value.interval[1]:.1f}]" if value.interval else "–"
        return f"{value.value:.2f}", interval

    ns = [value.n for value in (row.clean, row.autoattack) if value is not None]
    clean, clean_interval = accuracy(row.clean)
    robust, robust_interval = accuracy(row.autoattack)
    return {
        "model": row.model, "architecture": str(row.facts.get("architecture") or "–"), "params": _params(row.facts),
        "clean": clean, "clean_interval": clean_interval, "autoattack": robust, "autoattack_interval": robust_interval,
        "n": " / ".join(dict.fromkeys("?" if n is None else str(n) for n in ns)) or "–",
        "p": "" if row.p_value_vs_next is None else f"{row.p_value_vs_next:.3g}", "cost": _cost(row.facts),
    }  # fmt: skip


def table_records(table: Table) -> list[dict[str, str]]:
    """The display cells of each row of `table`, rank first (what the markdown, HTML and Gradio tables show)."""
    return [{"rank": str(rank), **_cells(row)} for rank, row in enumerate(table.rows, 1)]


def _markdown(table: Table) -> str:
    significance = any(row.p_value_vs_next is not None for row in table.rows)
    header = "| Rank | Model | Architecture | Params | Clean (%) | 95% interval "
    header += f"| {table.ranked} (%) | 95% interval | n |"
    header += " p vs next |" if significance else ""
    separator = "|---:|---|---|---:|---:|---|---:|---|---:|" + ("---:|" if significance else "") + "---|"
    lines = [f"### {table.title}", "", header + " Training cost |", separator]
    for cells in table_records(table):
        p = f" {cells['p'] or '–'} |" if significance else ""
        lines.append(
            f"| {cells['rank']} | {cells['model']} | {cells['architecture']} | {cells['params']} | {cells['clean']} "
            f"| {cells['clean_interval']} | {cells['autoattack']} | {cells['autoattack_interval']} | {cells['n']} |"
            f"{p} {cells['cost']} |"
        )
    return "\n".join(lines) + "\n"


def _csv(tables: Sequence[Table]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for table in tables:
        for rank, row in enumerate(table.rows, 1):
            clean, robust = row.clean, row.autoattack
            writer.writerow({
                "dataset": table.dataset, "split": table.split, "norm": table.norm, "eps": table.eps, "rank": rank,
                "model": row.model, "clean": clean and clean.value, "clean_n": clean and clean.n,
                "clean_low": clean and clean.interval and clean.interval[0],
                "clean_high": clean and clean.interval and clean.interval[1],
                "autoattack": robust and robust.value, "autoattack_n": robust and robust.n,
                "autoattack_low": robust and robust.interval and robust.interval[0],
                "autoattack_high": robust and robust.interval and robust.interval[1],
                "p_value_vs_next": row.p_value_vs_next, "link": row.link,
                **{key: row.facts.get(key) for key in CSV_COLUMNS if key in row.facts},
            })  # fmt: skip
    return out.getvalue()


def _image_source(plot: str | None) -> str | None:
    """A Hub URL as it is; a local PNG inlined as a data URI, so the HTML file stands alone."""
    if plot is None or plot.startswith("http"):
        return plot
    return "data:image/png;base64," + base64.b64encode(Path(plot).read_bytes()).decode("ascii")


def _href(row: Row, base: Path | None) -> str:
    """A Hub link as it is; a local card relative to `base` (the HTML file's folder), or as an absolute file URI
    without one (the page may be saved anywhere)."""
    if row.folder is None:
        return row.link
    if base is None:
        return Path(row.link).resolve().as_uri()
    return quote(Path(os.path.relpath(Path(row.link).resolve(), base.resolve())).as_posix())


def comparisons(table: Table) -> dict[str, str]:
    """`"i-j"` (rows i and j, from 0 in rank order) -> `compare_rows` of the two (or why they are not compared), for
    every ordered pair of a table with a threat model; {} for a clean-only or common-corruptions table (no
    per-example records) or one with a single row."""
    if table.norm is None or table.corruptions:
        return {}
    rows = list(enumerate(table.rows))
    return {f"{i}-{j}": compare_rows(table, first, second) for i, first in rows for j, second in rows if i != j}


def render_html(board: Leaderboard, link_base: Path | None = None) -> str:
    """A standalone HTML page: one sortable table per dataset/threat model, a search box, links to the cards, each
    model's robustness-vs-eps plot (local plots inlined) and, per table, the paired comparison of any two models
    chosen (`comparisons`, computed when the page is written). Needs no server and no network. Links to local cards
    are relative to `link_base`, the folder the page is written to (absolute file URIs without one)."""
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    tables = [
        {"title": table.title, "ranked": table.ranked,
         "entries": list(zip(table_records(table), table.rows, strict=True)),
         "significance": any(row.p_value_vs_next is not None for row in table.rows),
         "comparisons": comparisons(table)}
        for table in board.tables
    ]  # fmt: skip
    images = {row.link: _image_source(row.plot) for table in board.tables for row in table.rows}
    hrefs = {row.link: _href(row, link_base) for table in board.tables for row in table.rows}
    return environment.from_string(HTML_TEMPLATE.read_text(encoding="utf-8")).render(
        tables=tables, notes=board.notes, images=images, hrefs=hrefs
    )


def format_leaderboard(board: Leaderboard, fmt: str = "markdown", *, link_base: Path | None = None) -> str:
    """The tables as markdown (one `###` section each), CSV (one row per model and table, raw numbers) or HTML (its
    local links relative to `link_base`, the folder it is written to; see `render_html`).

    Raises:
        ValueError: for a format other than markdown, csv or html.
    """
    if fmt == "csv":
        return _csv(board.tables)
    if fmt == "html":
        return render_html(board, link_base)
    if fmt != "markdown":
        raise ValueError(f"Unknown leaderboard format {fmt!r}: use markdown, csv or html.")
    return "\n".join(_markdown(table) for table in board.tables)
