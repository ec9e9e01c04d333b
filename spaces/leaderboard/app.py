"""Robustness leaderboard: a Gradio app (Hugging Face Space) over the model cards of robust image classifiers.

    python spaces/leaderboard/app.py [FOLDER_OR_HUB_ID ...] [--host 127.0.0.1] [--port 7860]

Sources are model folders, README.md files or Hub model ids (local glob patterns are expanded); without any, the
space-separated `LEADERBOARD_SOURCES` environment variable (a Space variable), else the `model_cards/*` folders of
the mixacm-hf repository. One table per dataset, split and threat model (as `python -m mixacm_hf.hub leaderboard`),
sortable by any column, a search box over all tables, links to the cards, each model's robustness-vs-eps plot, and
the paired comparison of any two models of a table (as `python -m mixacm_hf.hub compare`). The page's URL can choose
the comparison it opens with: `/?first=MODEL&second=MODEL` (and `&table=TITLE` where the pair is in several tables).
"""

from __future__ import annotations

import argparse
import glob
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import gradio as gr
import pandas as pd

from mixacm_hf.hub.compare import compare_rows
from mixacm_hf.hub.leaderboard import Leaderboard, Row, Table, leaderboard
from mixacm_hf.hub.leaderboard_format import table_records

HERE = Path(__file__).resolve().parent
DEFAULT_PATTERN = str(HERE.parents[1] / "model_cards" / "*")
COLUMNS = {
    "rank": "Rank", "model": "Model", "architecture": "Architecture", "params": "Params", "clean": "Clean (%)",
    "clean_interval": "95% interval", "autoattack": "AutoAttack (%)", "autoattack_interval": "AutoAttack 95% interval",
    "n": "n", "p": "p vs next", "cost": "Training cost",
}  # fmt: skip


def expand_sources(sources: Sequence[str]) -> list[str]:
    """Local glob patterns expanded (sorted); Hub ids and plain paths as they are."""
    expanded = []
    for source in sources:
        matches = sorted(glob.glob(source)) if glob.has_magic(source) else []
        expanded.extend(matches or [source])
    return expanded


def default_sources() -> list[str]:
    return expand_sources(os.environ.get("LEADERBOARD_SOURCES", DEFAULT_PATTERN).split())


def _link(row: Row) -> str:
    """A Hub card's URL; a local card through Gradio's file route (the folders are in `allowed_paths`)."""
    return row.link if row.link.startswith("http") else f"/gradio_api/file={Path(row.link).resolve()}"


def table_frame(table: Table, query: str = "") -> pd.DataFrame:
    """The display cells of `table` (model names as markdown links), rows whose model contains `query` only."""
    records = [
        {**cells, "model": f"[{cells['model']}]({_link(row)})"}
        for cells, row in zip(table_records(table), table.rows, strict=True)
        if query.strip().lower() in row.model.lower()
    ]
    columns = [key for key in COLUMNS if key != "p" or any(row.p_value_vs_next is not None for row in table.rows)]
    labels = {**COLUMNS, "autoattack": f"{table.ranked} (%)", "autoattack_interval": f"{table.ranked} 95% interval"}
    return pd.DataFrame(records, columns=columns).rename(columns=labels)


def plots(board: Leaderboard) -> dict[str, str]:
    """Model name -> its robustness-vs-eps plot (local path or Hub URL), for the models that have one."""
    return {row.model: row.plot for table in board.tables for row in table.rows if row.plot}


def comparable(board: Leaderboard) -> dict[str, Table]:
    """Title -> table, for the tables with an L-norm threat model and at least two models (what can be compared)."""
    return {
        table.title: table for table in board.tables if table.norm and not table.corruptions and len(table.rows) > 1
    }


def comparison(table: Table, first: str, second: str) -> str:
    """The paired AutoAttack comparison of two models of `table` by name (`compare_rows`), or why there is none."""
    rows = {row.model: row for row in table.rows}
    if first not in rows or second not in rows:
        return "Choose two models of this table."
    return "Choose two different models." if first == second else compare_rows(table, rows[first], rows[second])


def preselection(tables: dict[str, Table], params: Mapping[str, str]) -> tuple[str, str, str]:
    """The table title and the two models the comparison opens with: `params` (the page URL's query) `table`, `first`
    and `second` where they name a table of `tables` and models of it (without `table`: the first table that has the
    named models); a model not named (or not in the table) is the table's first other than the one named."""
    wanted = [params.get(key) or "" for key in ("first", "second")]

    def has(title: str) -> bool:
        return all(name in {row.model for row in tables[title].rows} for name in wanted if name)

    title = params.get("table") or ""
    if title not in tables:
        title = next((title for title in tables if has(title)), next(iter(tables)))
    names = [row.model for row in tables[title].rows]
    first = wanted[0] if wanted[0] in names else next(name for name in names if name != wanted[1])
    return title, first, wanted[1] if wanted[1] in names else next(name for name in names if name != first)


def build_app(sources: Sequence[str]) -> gr.Blocks:
    """The leaderboard page of `sources` (read once, when the app is built)."""
    board = leaderboard(sources)
    images = plots(board)
    with gr.Blocks(title="Robustness leaderboard") as app:
        gr.Markdown(
            "# Robustness leaderboard\n\nOne table per dataset, split and threat model: results measured on different "
            "data or budgets are never ranked together. Accuracies in %, with 95% intervals; n = evaluated images "
            "(clean / AutoAttack). Click a column header to sort; the model name links to its card."
        )
        search = gr.Textbox(label="Search models", placeholder="e.g. mixacm")
        frames = []
        for table in board.tables:
            gr.Markdown(f"## {table.title}")
            frame = table_frame(table)
            datatypes = ["markdown" if column == COLUMNS["model"] else "str" for column in frame.columns]
            frames.append(gr.Dataframe(value=frame, datatype=datatypes, interactive=False, wrap=True))
        if images:
            gr.Markdown("## Robust accuracy against the attack budget eps")
            first = next(iter(images))
            choice = gr.Dropdown(choices=list(images), value=first, label="Model")
            plot = gr.Image(value=images[first], label="Accuracy vs eps", show_label=False)
            choice.change(lambda name: images[name], inputs=choice, outputs=plot)
        tables = comparable(board)
        if tables:
            title, a, b = preselection(tables, {})
            names = [row.model for row in tables[title].rows]
            with gr.Column(elem_id="compare"):
                gr.Markdown(
                    "## Compare two models\n\nPaired on the images both were evaluated on (their per_example.parquet): "
                    "difference in AutoAttack accuracy, 95% interval and exact McNemar p; models evaluated on other "
                    "images or settings are not compared. The URL can choose them: `?first=MODEL&second=MODEL`."
                )
                chosen = gr.Dropdown(choices=list(tables), value=title, label="Table")
                with gr.Row():
                    first = gr.Dropdown(choices=names, value=a, label="First model")
                    second = gr.Dropdown(choices=names, value=b, label="Second model")
                verdict = gr.Textbox(value=comparison(tables[title], a, b), label="Comparison", lines=3)

            def models(title: str, a: str, b: str) -> tuple[dict, dict]:
                """The model menus of table `title`, keeping the chosen models that it has."""
                _, a, b = preselection(tables, {"table": title, "first": a, "second": b})
                names = [row.model for row in tables[title].rows]
                return gr.update(choices=names, value=a), gr.update(choices=names, value=b)

            def opened(request: gr.Request) -> tuple[str, dict, dict, str]:
                """The comparison that the page's URL asks for (`preselection` of its query)."""
                title, a, b = preselection(tables, request.query_params)
                return title, *models(title, a, b), comparison(tables[title], a, b)

            app.load(opened, outputs=[chosen, first, second, verdict], show_progress="hidden")
            chosen.change(models, inputs=[chosen, first, second], outputs=[first, second])
            for choice in (first, second):
                choice.change(
                    lambda title, a, b: comparison(tables[title], a, b), inputs=[chosen, first, second], outputs=verdict
                )
        if board.notes:
            gr.Markdown("## Skipped\n\n" + "\n".join(f"- {note}" for note in board.notes))
        if frames:
            search.change(
                lambda query: [table_frame(table, query) for table in board.tables], inputs=search, outputs=frames
            )
    return app


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="*", help="model folders, README.md files or Hub ids (default: see above)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    args = parser.parse_args(argv)
    sources = expand_sources(args.sources) if args.sources else default_sources()
    folders = [str(Path(source).resolve()) for source in sources if Path(source).exists()]
    build_app(sources).launch(server_name=args.host, server_port=args.port, allowed_paths=folders)


if __name__ == "__main__":
    main()
