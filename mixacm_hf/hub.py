"""Robust models on the Hugging Face Hub: model cards with attack results, save / push / card updates, a leaderboard.

    python -m mixacm_hf.hub leaderboard FOLDER_OR_HUB_ID [...] [--format markdown|csv] [--norm Linf] [--eps 8/255]
    python -m mixacm_hf.hub push FOLDER REPO_ID [--private]

A card's metrics live in its `model-index` metadata (one `accuracy` result per measurement, value in %, the attack
name as metric config and its settings, n and 95% interval as metric args), so the Hub's evaluation widget and the
leaderboard read them back; the card body is rendered from `model_cards/template.md`.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import shlex
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import jinja2
from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData, metadata_load
from transformers import PreTrainedModel

from .robustness import RobustnessReport, parse_eps, plot_eps_sweep

TEMPLATE = Path(__file__).resolve().parents[1] / "model_cards" / "template.md"
CARD_NAME = "README.md"
REPORTS_NAME = "robustness.json"
SUMMARY_NAME = "train_summary.json"
PLOT_NAME = "robustness_vs_eps.png"
TAGS = ("adversarial-robustness", "mixacm", "knowledge-distillation")
RESULTS_START, RESULTS_END = "<!-- mixacm-hf:results:start -->", "<!-- mixacm-hf:results:end -->"
# safetensors weights only; no checkpoints, logs, or the lock/temporary files of mixacm_hf.files
HUB_IGNORE = ["checkpoint-*", "runs/*", ".*.lock", ".*.tmp", "*.bin", "*.pt", "*.pth", "*.pkl", "*.ckpt"]
LEADERBOARD_COLUMNS = (
    "model", "architecture", "params", "clean", "autoattack", "epochs", "backward_passes_per_image", "train_seconds",
    "device",
)  # fmt: skip


class HubPushError(RuntimeError):
    """A push to the Hub failed. The local folder is untouched; the message says why and how to retry."""


def format_eps(eps: float, norm: str) -> str:
    """`8/255` for Linf budgets on the 1/255 grid, else the number (`0.5`)."""
    steps = eps * 255
    if norm == "Linf" and math.isclose(steps, round(steps), abs_tol=1e-6):
        return f"{round(steps)}/255"
    return f"{eps:g}"


def attack_title(name: str) -> str:
    """`clean` -> Clean, `pgd-20` -> PGD-20, `autoattack:apgd-ce+square` -> AutoAttack (apgd-ce+square)."""
    base, _, components = name.partition(":")
    title = {"clean": "Clean", "fgsm": "FGSM", "autoattack": "AutoAttack"}.get(base, base.replace("pgd", "PGD"))
    return f"{title} ({components})" if components else title


def metric_name(attack: str, norm: str, eps: float) -> str:
    """`Clean accuracy` or e.g. `Robust accuracy (AutoAttack, Linf, eps=8/255)`."""
    if attack == "clean":
        return "Clean accuracy"
    return f"Robust accuracy ({attack_title(attack)}, {norm}, eps={format_eps(eps, norm)})"


def _percent(fraction: float) -> float:
    return round(100 * fraction, 2)


def _local_dataset(path: str | None) -> Path | None:
    return Path(path) if path and Path(path).is_dir() else None


def dataset_identity(path_or_id: str | None, dataset_id: str | None = None) -> dict[str, str]:
    """The Hub id (`type`) and pretty `name` a card gives a dataset.

    `dataset_id` overrides the id (e.g. `uoft-cs/cifar10` for a local copy); otherwise a Hub id stays itself and a
    local folder is named after itself. A local folder's README `pretty_name` becomes the name.
    """
    local = _local_dataset(path_or_id)
    hub_id = dataset_id or (local.name if local else path_or_id) or "unknown"
    readme = local / CARD_NAME if local else None
    name = (metadata_load(readme) or {}).get("pretty_name", hub_id) if readme and readme.is_file() else hub_id
    return {"type": hub_id, "name": name}


def report_results(report: RobustnessReport, dataset_id: str | None = None) -> list[EvalResult]:
    """One `accuracy` result (in %) per measurement of the report: clean, then each attack (not the worst case)."""
    dataset = dataset_identity(report.dataset.get("name"), dataset_id)
    accuracy = {"clean": report.clean_accuracy, **report.robust_accuracy}
    results = []
    for attack in ["clean", *(name for name in report.attacks if name != "clean")]:
        args: dict[str, Any] = {**report.attacks.get(attack, {"type": "clean"}), "n_examples": report.n_examples}
        if attack in report.intervals:
            args["interval_95"] = [_percent(bound) for bound in report.intervals[attack]]
        if attack in report.seconds:
            args["seconds"] = round(report.seconds[attack], 1)
        results.append(
            EvalResult(
                task_type="image-classification",
                task_name="Image Classification",
                dataset_type=dataset["type"],
                dataset_name=dataset["name"],
                dataset_split=report.dataset.get("split"),
                dataset_revision=report.dataset.get("revision"),
                metric_type="accuracy",
                metric_value=_percent(accuracy[attack]),
                metric_name=metric_name(attack, report.norm, report.eps),
                metric_config=attack,
                metric_args=args,
            )
        )
    return results


def merge_results(*groups: Iterable[EvalResult]) -> list[EvalResult]:
    """All results, where a later one replaces an earlier one measuring the same metric (dataset, split, name)."""
    merged: dict[tuple, EvalResult] = {}
    for group in groups:
        for result in group:
            merged[(*result.unique_identifier, result.metric_type, result.metric_name)] = result
    return list(merged.values())


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _result_rows(results: Sequence[EvalResult]) -> list[dict[str, Any]]:
    rows = []
    for result in results:
        args = result.metric_args or {}
        interval = args.get("interval_95")
        rows.append({
            "name": attack_title(result.metric_config) if result.metric_config else result.metric_name,
            "threat": f"{args['norm']}, eps={format_eps(args['eps'], args['norm'])}" if "norm" in args else "–",
            "accuracy": f"{result.metric_value:.2f}",
            "interval": f"[{interval[0]:.1f}, {interval[1]:.1f}]" if interval else "",
            "n": args.get("n_examples", ""),
            "seconds": _duration(args["seconds"]) if "seconds" in args else "",
        })  # fmt: skip
    return rows


def _evaluation(results: Sequence[EvalResult]) -> dict[str, Any] | None:
    if not results:
        return None
    data = dict.fromkeys(f"the `{r.dataset_split}` split of {r.dataset_name}" for r in results)
    return {
        "data": " and ".join(data),
        "autoattack": any((r.metric_config or "").startswith("autoattack") for r in results),
    }


def relevant_hyperparameters(method: str, hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """The hyperparameters `method` uses (MixACM's loss weights mean nothing for natural training)."""
    from .trainer import ADVERSARIAL, USES_ACM, USES_KLD, USES_MIXUP

    used_by = {
        "mixup_alpha": USES_MIXUP, "alpha_kld": USES_KLD, "temperature": USES_KLD, "alpha_acm": USES_ACM,
        "acm_channel_align": USES_ACM, "acm_layer_mapping": USES_ACM, "acm_teacher_layers": USES_ACM,
        "acm_student_layers": USES_ACM, "pgd_eps": ADVERSARIAL, "pgd_step_size": {"pgd-at"}, "pgd_steps": {"pgd-at"},
    }  # fmt: skip
    return {
        key: value
        for key, value in hyperparameters.items()
        if key != "method" and value is not None and method in used_by.get(key, {method})
    }


def _teacher(name: str | None) -> dict[str, Any] | None:
    """The teacher's name and, when it is a folder with a card, the results its card reports."""
    if not name:
        return None
    card = Path(name) / CARD_NAME
    results = (ModelCard.load(card).data.eval_results or []) if card.is_file() else []
    lines = [
        f"{r.metric_name or r.metric_type}: {r.metric_value}% on {r.dataset_name} "
        f"(n={(r.metric_args or {}).get('n_examples', '?')})"
        for r in results
    ]
    return {"name": name, "results": lines}


def _training(summary: dict[str, Any] | None) -> dict[str, Any] | None:
    if summary is None:
        return None
    from .run import backward_passes_per_image

    return {
        "method": summary["method"],
        "teacher": _teacher(summary.get("teacher")),
        "hyperparameters": relevant_hyperparameters(summary["method"], summary.get("hyperparameters", {})),
        "dataset": summary.get("dataset"),
        "n_train": summary.get("n_train"),
        "epochs": summary.get("epochs"),
        "steps": summary.get("steps"),
        "wall_time": _duration(summary["train_seconds"]),
        "device": summary.get("device"),
        "world_size": summary.get("world_size", 1),
        "backward_passes": summary.get("backward_passes_per_image"),
        "pgd_backward_passes": backward_passes_per_image("pgd-at", 7),
        "command": summary.get("command"),
    }


def _card_facts(architecture: str, params: int | None, summary: dict[str, Any] | None) -> dict[str, Any]:
    """What the leaderboard needs beyond the metrics, stored in the card's `mixacm` metadata."""
    summary = summary or {}
    facts = {
        "architecture": architecture, "params": params, "method": summary.get("method"),
        "teacher": summary.get("teacher"), "epochs": summary.get("epochs"),
        "train_seconds": summary.get("train_seconds"), "device": summary.get("device"),
        "backward_passes_per_image": summary.get("backward_passes_per_image"),
    }  # fmt: skip
    return {key: value for key, value in facts.items() if value is not None}


def architecture_name(config: dict[str, Any]) -> str:
    """`WRN-16-2` / `DM-WRN-28-10` for WideResNets, else the config's first architecture (or its model type)."""
    if config.get("model_type") == "wide_resnet":
        prefix = "DM-" if config.get("variant") == "dm" else ""
        return f"{prefix}WRN-{config['depth']}-{config['widen_factor']}"
    return (config.get("architectures") or [config.get("model_type", "unknown")])[0]


def create_model_card(
    model_name: str,
    reports: Sequence[RobustnessReport],
    training_summary: dict[str, Any] | None = None,
    *,
    config: dict[str, Any] | None = None,
    params: int | None = None,
    repo_id: str | None = None,
    dataset_id: str | None = None,
    license: str = "apache-2.0",
    plot: str | None = None,
    previous_results: Sequence[EvalResult] = (),
    template_path: str | Path = TEMPLATE,
) -> ModelCard:
    """A model card for a robust classifier, rendered from `template_path` (Jinja2).

    Metadata: `library_name: transformers`, `pipeline_tag: image-classification`, tags, `datasets`, `license`, a
    `model-index` with one result per metric of `previous_results` and `reports` (later ones replace re-measured
    metrics), and `mixacm` (architecture, params, training cost) for the leaderboard. `training_summary` is
    `run_mixacm`'s summary (method, teacher, hyperparameters, compute); `config` the model's config as a dict;
    `plot` the file name of the robustness-vs-eps plot beside the card; `repo_id` the Hub id or path that the
    card's usage snippet loads (default: `model_name`); `dataset_id` the Hub id for a local dataset copy.
    """
    config = config or {}
    summary = training_summary or {}
    results = merge_results(previous_results, *(report_results(report, dataset_id) for report in reports))
    dataset = dataset_identity(reports[-1].dataset.get("name") if reports else summary.get("dataset"), dataset_id)
    training_data = dataset_identity(summary["dataset"], dataset_id)["type"] if "dataset" in summary else None
    datasets = list(dict.fromkeys(d for d in (training_data, *(r.dataset_type for r in results)) if d))
    architecture = architecture_name(config)
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag="image-classification",
        license=license,
        tags=list(TAGS),
        datasets=datasets or None,
        metrics=["accuracy"],
        model_name=model_name,
        eval_results=results or None,
        mixacm=_card_facts(architecture, params, training_summary),
    )
    checks = [check for report in reports for check in report.sanity_checks]
    local_paths = dict.fromkeys(p for p in (summary.get("dataset"), *(r.dataset.get("name") for r in reports)) if p)
    context = {
        "card_data": card_data.to_yaml(),
        "model_name": model_name,
        "repo_id": repo_id or model_name,
        "architecture": architecture,
        "params": f"{params / 1e6:.2f}M" if params else "an unknown number of",
        "image_size": config.get("image_size", "H"),
        "dataset_label": dataset["name"],
        "dataset_id": dataset["type"],
        "results": _result_rows(results),
        "evaluation": _evaluation(results),
        "checks": {
            "total": len(checks),
            "passed": list(dict.fromkeys(check["name"] for check in checks if check["passed"])),
            "failed": [check for check in checks if not check["passed"]],
        },
        "plot": plot,
        "local_copies": [
            {"path": path, "name": dataset_identity(path)["name"]} for path in local_paths if _local_dataset(path)
        ],
        "training": _training(training_summary),
    }
    environment = jinja2.Environment(
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True
    )
    return ModelCard(environment.from_string(Path(template_path).read_text(encoding="utf-8")).render(**context))


def load_reports(folder: str | Path) -> list[RobustnessReport]:
    """The reports in a model folder's robustness.json (oldest first; none when there is no file)."""
    path = Path(folder) / REPORTS_NAME
    return [RobustnessReport.from_dict(data) for data in json.loads(path.read_text())] if path.is_file() else []


def _save_reports(folder: Path, reports: Sequence[RobustnessReport]) -> None:
    (folder / REPORTS_NAME).write_text(json.dumps([report.to_dict() for report in reports], indent=2) + "\n")


def _count_parameters(folder: Path) -> int:
    import torch
    from transformers import AutoConfig, AutoModelForImageClassification

    with torch.device("meta"):
        model = AutoModelForImageClassification.from_config(AutoConfig.from_pretrained(folder))
    return sum(parameter.numel() for parameter in model.parameters())


def _folder_card(
    folder: Path,
    reports: Sequence[RobustnessReport],
    training_summary: dict[str, Any] | None,
    *,
    previous_results: Sequence[EvalResult] = (),
    repo_id: str | None = None,
    dataset_id: str | None = None,
    license: str = "apache-2.0",
) -> ModelCard:
    """The card of the model saved in `folder`, after (re)drawing the eps plot from the newest report with a sweep."""
    swept = [report for report in reports if report.eps_sweep is not None]
    if swept:
        plot_eps_sweep(swept[-1], folder / PLOT_NAME)
    config_file = folder / "config.json"
    return create_model_card(
        repo_id.split("/")[-1] if repo_id else folder.resolve().name,
        reports,
        training_summary,
        config=json.loads(config_file.read_text()) if config_file.is_file() else None,
        params=(training_summary or {}).get("params") or _count_parameters(folder),
        repo_id=repo_id or str(folder),
        dataset_id=dataset_id,
        license=license,
        plot=PLOT_NAME if (folder / PLOT_NAME).is_file() else None,
        previous_results=previous_results,
    )


def write_model_card(
    folder: str | Path,
    reports: Sequence[RobustnessReport],
    training_summary: dict[str, Any] | None = None,
    *,
    repo_id: str | None = None,
    dataset_id: str | None = None,
    license: str = "apache-2.0",
) -> ModelCard:
    """The card files of a model already saved in `folder`: README.md, robustness.json and the eps plot (PNG)."""
    folder = Path(folder)
    _save_reports(folder, reports)
    card = _folder_card(folder, reports, training_summary, repo_id=repo_id, dataset_id=dataset_id, license=license)
    card.save(folder / CARD_NAME)
    return card


def save_robust_model(
    model: PreTrainedModel,
    output_dir: str | Path,
    reports: Sequence[RobustnessReport],
    training_summary: dict[str, Any] | None = None,
    *,
    repo_id: str | None = None,
    dataset_id: str | None = None,
    license: str = "apache-2.0",
) -> ModelCard:
    """A Hub-ready folder: `save_pretrained` (safetensors, model code for `trust_remote_code`, image-processor
    config), train_summary.json, and the card files of `write_model_card`. Returns the card."""
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir)
    if training_summary is not None:
        (output_dir / SUMMARY_NAME).write_text(json.dumps(training_summary, indent=2, default=str))
    return write_model_card(
        output_dir, reports, training_summary, repo_id=repo_id, dataset_id=dataset_id, license=license
    )


def _replace_results_block(text: str, fresh: str) -> str:
    """`text` with its results block (between the markers) replaced by `fresh`'s; appended when it has none."""
    block = fresh[fresh.index(RESULTS_START) : fresh.index(RESULTS_END) + len(RESULTS_END)]
    if RESULTS_START in text and RESULTS_END in text:
        return text[: text.index(RESULTS_START)] + block + text[text.index(RESULTS_END) + len(RESULTS_END) :]
    return f"{text.rstrip()}\n\n## Robustness\n\n{block}\n"


def update_model_card(
    folder: str | Path, report: RobustnessReport, *, dataset_id: str | None = None, license: str = "apache-2.0"
) -> ModelCard:
    """Merge a new report into the card of the model saved in `folder` (a card is created when there is none).

    The report's metrics replace the ones it re-measured (same dataset, split, attack, norm and eps); every other
    metric, all other metadata and the text outside the results block are kept. Without `dataset_id`, a dataset
    the card already names (same pretty name) keeps the Hub id the card gave it. The report is appended to
    robustness.json and the eps plot redrawn when it has a sweep.
    """
    folder = Path(folder)
    reports = [*load_reports(folder), report]
    _save_reports(folder, reports)
    summary_file = folder / SUMMARY_NAME
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else None
    path = folder / CARD_NAME
    old = ModelCard.load(path) if path.is_file() else None
    previous = (old.data.eval_results or []) if old else []
    name = dataset_identity(report.dataset.get("name"))["name"]
    dataset_id = dataset_id or next((r.dataset_type for r in previous if r.dataset_name == name), None)
    fresh = _folder_card(folder, reports, summary, previous_results=previous, dataset_id=dataset_id, license=license)
    card = old or fresh
    if old is not None:
        card.data.model_name = old.data.model_name or fresh.data.model_name
        card.data.eval_results = fresh.data.eval_results
        card.text = _replace_results_block(old.text, fresh.text)
    card.save(path)
    return card


def push_robust_model(
    folder: str | Path,
    repo_id: str,
    private: bool = False,
    token: str | None = None,
    *,
    endpoint: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Create the Hub repo `repo_id` if needed and upload `folder` in one commit; returns the commit URL.

    Checkpoints, pickles (`*.bin`, `*.pt`, ...) and TensorBoard runs stay local: the Hub gets safetensors weights,
    model code, configs, the card, its plot and robustness.json. Any failure (offline mode, network, login,
    permissions) raises `HubPushError` with the cause and the command that retries the push; the folder is untouched.
    """
    folder = Path(folder)
    if not (folder / CARD_NAME).is_file() or not any(folder.glob("*.safetensors")):
        raise FileNotFoundError(f"{folder} is not a saved robust model (README.md and *.safetensors expected).")
    api = HfApi(endpoint=endpoint, token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            commit_message=commit_message or f"Upload {folder.resolve().name} with its robustness model card",
            ignore_patterns=HUB_IGNORE,
        )
    except Exception as error:  # offline, network, auth, permissions...: one error that says how to retry
        retry = ["python", "-m", "mixacm_hf.hub", "push", str(folder), repo_id]
        retry += (["--private"] if private else []) + (["--endpoint", endpoint] if endpoint else [])
        raise HubPushError(
            f"Could not push {folder} to the Hub repo {repo_id}: {type(error).__name__}: {error}\n"
            f"Nothing was lost: the local folder {folder.resolve()} is intact.\n"
            "Check the network, that HF_HUB_OFFLINE is unset and that you are logged in with write access "
            f"(`hf auth login` or HF_TOKEN), then retry with:\n  {shlex.join(retry)}"
        ) from error
    return commit.commit_url


def push_or_exit(
    folder: str | Path, repo_id: str, private: bool = False, token: str | None = None, *, endpoint: str | None = None
) -> str:
    """`push_robust_model` for command-line scripts: on failure, the error goes to stderr and the exit status is 1."""
    try:
        return push_robust_model(folder, repo_id, private, token, endpoint=endpoint)
    except HubPushError as error:
        raise SystemExit(f"error: {error}") from None


def load_card(source: str | Path) -> ModelCard:
    """The card of a model folder, a README.md file or a Hub model id (`FileNotFoundError` when there is none)."""
    path = Path(source)
    path = path / CARD_NAME if path.is_dir() else path
    try:
        return ModelCard.load(path if path.is_file() else str(source))
    except (OSError, ValueError) as error:  # not found locally, invalid id, Hub unreachable or offline
        raise FileNotFoundError(f"No model card for {source} (a model folder, README.md or Hub id): {error}") from error


def _find_metric(results: Sequence[EvalResult], attack: str, norm: str | None = None, eps: float = 0.0) -> Any:
    for result in results:
        args = result.metric_args or {}
        threat = norm is None or (args.get("norm") == norm and math.isclose(args.get("eps", -1.0), eps, rel_tol=1e-6))
        if result.metric_config == attack and threat:
            return result.metric_value
    return None


def leaderboard(sources: Iterable[str | Path], *, norm: str = "Linf", eps: float = 8 / 255) -> list[dict[str, Any]]:
    """One row per model card (folder, README.md or Hub id), best AutoAttack accuracy under (norm, eps) first."""
    rows = []
    for source in sources:
        card = load_card(source)
        results, facts = card.data.eval_results or [], card.data.get("mixacm", {})
        row = {key: facts.get(key) for key in LEADERBOARD_COLUMNS}
        row.update(
            model=card.data.model_name or str(source),
            clean=_find_metric(results, "clean"),
            autoattack=_find_metric(results, "autoattack", norm, eps),
        )
        rows.append(row)
    return sorted(rows, key=lambda row: (row["autoattack"] is None, -(row["autoattack"] or 0), -(row["clean"] or 0)))


def format_leaderboard(rows: Sequence[dict[str, Any]], fmt: str = "markdown", threat: str = "Linf, eps=8/255") -> str:
    """The rows as a RobustBench-style markdown table or as CSV (raw numbers, one column per field)."""
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=LEADERBOARD_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue()

    def number(value: Any, pattern: str = "{:.2f}") -> str:
        return "–" if value is None else pattern.format(value)

    lines = [
        f"| Rank | Model | Architecture | Params | Clean (%) | AutoAttack (%, {threat}) | Training cost |",
        "|---:|---|---|---:|---:|---:|---|",
    ]
    for rank, row in enumerate(rows, 1):
        cost = "–"
        if row["epochs"] is not None and row["backward_passes_per_image"] is not None:
            cost = f"{row['epochs']:g} epochs × {row['backward_passes_per_image']} backward/image"
            if row["train_seconds"] is not None:
                cost += f", {_duration(row['train_seconds'])} on {row['device']}"
        params = number(row["params"] and row["params"] / 1e6, "{:.2f}M")
        lines.append(
            f"| {rank} | {row['model']} | {row['architecture'] or '–'} | {params} | {number(row['clean'])} "
            f"| {number(row['autoattack'])} | {cost} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mixacm_hf.hub", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    board = commands.add_parser("leaderboard", help="compare models by their cards' model-index")
    board.add_argument("sources", nargs="+", help="model folders, README.md files or Hub model ids")
    board.add_argument("--format", choices=("markdown", "csv"), default="markdown")
    board.add_argument("--norm", choices=("Linf", "L2"), default="Linf", help="threat model of the AutoAttack column")
    board.add_argument("--eps", type=parse_eps, default=8 / 255, help="budget of the AutoAttack column (8/255)")
    push = commands.add_parser("push", help="upload a saved robust model folder in one commit")
    push.add_argument("folder")
    push.add_argument("repo_id")
    push.add_argument("--private", action="store_true")
    push.add_argument("--endpoint", help="Hub endpoint (default: HF_ENDPOINT or huggingface.co)")
    args = parser.parse_args(argv)
    if args.command == "leaderboard":
        try:
            rows = leaderboard(args.sources, norm=args.norm, eps=args.eps)
        except FileNotFoundError as error:
            raise SystemExit(f"error: {error}") from None
        print(format_leaderboard(rows, args.format, f"{args.norm}, eps={format_eps(args.eps, args.norm)}"), end="")
    else:
        print(f"Pushed: {push_or_exit(args.folder, args.repo_id, args.private, endpoint=args.endpoint)}")


if __name__ == "__main__":
    main()
