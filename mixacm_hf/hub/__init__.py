"""Robust models on the Hugging Face Hub: model cards with attack results, save / push / card updates, a leaderboard.

    python -m mixacm_hf.hub leaderboard FOLDER_OR_HUB_ID [...] [--format markdown|csv|html] [-o FILE]
    python -m mixacm_hf.hub push FOLDER REPO_ID [--private]

Modules: `results` (reports as model-index results), `cards` (rendering from the package's `template.md`),
`folders` (save / write / update a model folder's card files, all-or-nothing), `push` (Hub uploads, reading cards),
`leaderboard` and `leaderboard_format` (one table per dataset, split, threat model and eps), `cli`.
"""

from ..robustness import attack_title
from .cards import TEMPLATE, architecture_name, create_model_card, input_sentence, relevant_hyperparameters
from .cli import main
from .folders import (
    load_reports,
    replace_files,
    save_image_processor,
    save_robust_model,
    update_model_card,
    write_model_card,
)
from .leaderboard import Leaderboard, leaderboard
from .leaderboard_format import format_leaderboard, render_html
from .push import HUB_IGNORE, HubPushError, load_card, push_or_exit, push_robust_model
from .results import (
    CARD_NAME,
    LOCAL_COPY_SUFFIX,
    PLOT_NAME,
    PROCESSOR_NAME,
    REPORTS_NAME,
    SUMMARY_NAME,
    dataset_identity,
    format_duration,
    format_eps,
    merge_results,
    metric_name,
    report_results,
)

__all__ = [
    "CARD_NAME", "HUB_IGNORE", "LOCAL_COPY_SUFFIX", "PLOT_NAME", "PROCESSOR_NAME", "REPORTS_NAME", "SUMMARY_NAME",
    "TEMPLATE", "HubPushError", "Leaderboard", "architecture_name", "attack_title", "create_model_card",
    "dataset_identity", "format_duration", "format_eps", "format_leaderboard", "input_sentence", "leaderboard",
    "load_card", "load_reports", "main", "merge_results", "metric_name", "push_or_exit", "push_robust_model",
    "relevant_hyperparameters", "render_html", "replace_files", "report_results", "save_image_processor",
    "save_robust_model", "update_model_card", "write_model_card",
]  # fmt: skip
