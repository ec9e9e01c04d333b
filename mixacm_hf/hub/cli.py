"""The hub command line.

python -m mixacm_hf.hub leaderboard FOLDER_OR_HUB_ID [...] [--format markdown|csv|html] [-o FILE]
    [--dataset ID] [--split test] [--threat_model Linf] [--eps 8/255]     (see mixacm_hf.hub.leaderboard)
python -m mixacm_hf.hub compare FIRST SECOND [--attack autoattack] [--dataset ID] [--split test]
    [--threat_model Linf] [--eps 8/255] [--json]                            (see mixacm_hf.hub.compare)
python -m mixacm_hf.hub push FOLDER REPO_ID [--private]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ..cli import parse_args, renamed_flags
from ..files import atomic_write_text
from ..robustness import parse_eps
from .compare import compare_models, format_comparison
from .leaderboard import leaderboard
from .leaderboard_format import format_leaderboard
from .push import push_or_exit

# The old spelling, accepted with a warning for one release (every flag is spelled with underscores).
RENAMED = {"--threat-model": "--threat_model"}


def _eps(text: str) -> float:
    """`parse_eps` as an argparse type: its message, not "invalid parse_eps value"."""
    try:
        return parse_eps(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mixacm_hf.hub",
        description="Robust models on the Hugging Face Hub: leaderboard, paired comparison and push.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    board = commands.add_parser("leaderboard", help="compare models by their cards' model-index")
    board.add_argument("sources", nargs="+", help="model folders, README.md files or Hub model ids")
    board.add_argument("--format", choices=("markdown", "csv", "html"), default="markdown")
    board.add_argument("-o", "--output", help="write to this file (atomically) instead of stdout")
    board.add_argument("--dataset", help="only this dataset (its Hub id / type or its name)")
    board.add_argument("--split", help="only this split (e.g. test)")
    board.add_argument(
        "--threat_model",
        "--norm",
        dest="threat_model",
        help="only this threat model (Linf, L2, L1, or corruptions for the common-corruptions tables)",
    )
    board.add_argument("--eps", type=_eps, help="only this budget (8/255)")
    pair = commands.add_parser(
        "compare", help="compare two models paired on their per_example.parquet (difference, interval, McNemar p)"
    )
    pair.add_argument("first", help="model folder, per_example.parquet file or Hub model id")
    pair.add_argument("second", help="model folder, per_example.parquet file or Hub model id")
    pair.add_argument("--attack", default="autoattack", help="clean, an attack name or all (default: autoattack)")
    pair.add_argument("--dataset", help="only reports on this dataset (its Hub id / type or its name)")
    pair.add_argument("--split", help="only reports on this split (e.g. test)")
    pair.add_argument("--threat_model", "--norm", dest="threat_model", help="only this threat model (Linf, L2 or L1)")
    pair.add_argument("--eps", type=_eps, help="only this budget (8/255)")
    pair.add_argument("--json", action="store_true", help="print the comparison as JSON (fractions, not %%)")
    push = commands.add_parser("push", help="upload a saved robust model folder in one commit")
    push.add_argument("folder")
    push.add_argument("repo_id")
    push.add_argument("--private", action="store_true")
    push.add_argument("--endpoint", help="Hub endpoint (default: HF_ENDPOINT or huggingface.co)")
    args = parse_args(parser, renamed_flags(sys.argv[1:] if argv is None else list(argv), RENAMED))
    if args.command == "leaderboard":
        folder = Path(args.output).parent if args.output else None
        if args.output and Path(args.output).is_dir():
            raise SystemExit(f"error: --output {args.output} is a folder: give a file name, e.g. {args.output}/lb.html")
        if folder and not folder.is_dir():
            raise SystemExit(
                f"error: --output {args.output}: its folder {folder} does not exist; create it (mkdir -p {folder}) "
                "or write elsewhere."
            )
        try:
            board = leaderboard(
                args.sources, dataset=args.dataset, split=args.split, threat_model=args.threat_model, eps=args.eps
            )
        except ValueError as error:
            raise SystemExit(f"error: {error}") from None
        for note in board.notes:
            print(f"note: {note}", file=sys.stderr)
        if not board.tables:
            raise SystemExit(
                f"error: {board.no_match}" if board.no_match
                else "error: no model card with usable results among the sources (see the notes above)."
            )  # fmt: skip
        text = format_leaderboard(board, args.format, link_base=folder)
        if args.output:
            atomic_write_text(args.output, text)
        else:
            print(text, end="")
    elif args.command == "compare":
        try:
            result = compare_models(
                args.first, args.second, attack=args.attack, dataset=args.dataset, split=args.split,
                threat_model=args.threat_model, eps=args.eps,
            )  # fmt: skip
        except ValueError as error:
            raise SystemExit(f"error: {error}") from None
        print(json.dumps(result, indent=2) if args.json else format_comparison(result), end="\n" if args.json else "")
    else:
        print(f"Pushed: {push_or_exit(args.folder, args.repo_id, args.private, endpoint=args.endpoint)}")
