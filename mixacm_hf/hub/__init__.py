"""Robust models on the Hugging Face Hub: model cards with attack results, save / push / card updates, a leaderboard.

    python -m mixacm_hf.hub leaderboard FOLDER_OR_HUB_ID [...] [--format markdown|csv|html] [-o FILE]
    python -m mixacm_hf.hub compare FIRST SECOND [--attack autoattack] [--threat-model Linf] [--eps 8/255]
    python -m mixacm_hf.hub push FOLDER REPO_ID [--private]

Modules: `results` (reports as model-index results), `eval_results` (the same results as `.eval_results/*.yaml`),
`per_example` (`per_example.parquet`), `cards` (rendering from the package's `template.md`), `folders` (save / write
/ update a model folder's card files, all-or-nothing), `push` (Hub uploads, reading cards), `leaderboard`,
`leaderboard_cards` and `leaderboard_format` (one table per dataset, split, threat model and eps), `compare` (two
models paired on their per-example records), `cli`.
"""

from ..robustness import attack_title
from .cards import TEMPLATE, architecture_name, create_model_card, input_sentence, relevant_hyperparameters
from .cli import main
from .compare import compare_models, format_comparison, load_records
from .eval_results import EVAL_RESULTS_NAME, eval_result_entries, eval_results_yaml, load_eval_results, task_id
from .folders import (
    load_reports,
    read_card_folder,
    record_input_normalization,
    replace_files,
    save_image_processor,
    save_robust_model,
    update_model_card,
    write_model_card,
)
from .leaderboard import Leaderboard, leaderboard
from .leaderboard_format import format_leaderboard, render_html
from .per_example import PER_EXAMPLE_NAME, per_example_parquet, read_per_example
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
    "CARD_NAME", "EVAL_RESULTS_NAME", "HUB_IGNORE", "LOCAL_COPY_SUFFIX", "PER_EXAMPLE_NAME", "PLOT_NAME",
    "PROCESSOR_NAME", "REPORTS_NAME", "SUMMARY_NAME", "TEMPLATE", "HubPushError", "Leaderboard", "architecture_name",
    "attack_title", "compare_models", "create_model_card", "dataset_identity", "eval_result_entries",
    "eval_results_yaml", "format_comparison", "format_duration", "format_eps", "format_leaderboard", "input_sentence",
    "leaderboard", "load_card", "load_eval_results", "load_records", "load_reports", "main", "merge_results",
    "metric_name", "per_example_parquet", "push_or_exit", "push_robust_model", "read_card_folder", "read_per_example",
    "record_input_normalization", "relevant_hyperparameters", "render_html", "replace_files", "report_results",
    "save_image_processor", "save_robust_model", "task_id", "update_model_card", "write_model_card",
]  # fmt: skip
