"""Robust models on the Hugging Face Hub: model cards with attack results, save / push / card updates, a leaderboard.

    python -m mixacm_hf.hub leaderboard FOLDER_OR_HUB_ID [...] [--format markdown|csv|html] [-o FILE]
        [--dataset ID] [--split test] [--threat-model Linf] [--eps 8/255]     (see mixacm_hf.leaderboard)
    python -m mixacm_hf.hub push FOLDER REPO_ID [--private]

A card's metrics live in its `model-index` metadata (one `accuracy` result per measurement, value in %, the attack
name as metric config and its settings, n and 95% interval as metric args), so the Hub's evaluation widget and the
leaderboard read them back; the card body is rendered from `model_cards/template.md`.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import shlex
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import jinja2
from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData, metadata_load
from transformers import PreTrainedModel

from .files import atomic_write_bytes, atomic_write_text, locked
from .robustness import RobustnessReport, parse_eps, plot_eps_sweep

TEMPLATE = Path(__file__).resolve().parents[1] / "model_cards" / "template.md"
CARD_NAME = "README.md"
REPORTS_NAME = "robustness.json"
SUMMARY_NAME = "train_summary.json"
PLOT_NAME = "robustness_vs_eps.png"
PROCESSOR_NAME = "preprocessor_config.json"
LOCAL_COPY_SUFFIX = "-local-copy"
TAGS = ("adversarial-robustness", "mixacm", "knowledge-distillation")
RESULTS_START, RESULTS_END = "<!-- mixacm-hf:results:start -->", "<!-- mixacm-hf:results:end -->"
# safetensors weights only; no checkpoints, logs, or the lock/temporary files of mixacm_hf.files
HUB_IGNORE = ["checkpoint-*", "runs/*", ".*.lock", ".*.tmp", "*.bin", "*.pt", "*.pth", "*.pkl", "*.ckpt"]


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


def _fingerprint(folder: Path) -> str:
    """A short revision for a local dataset copy: SHA-256 of its files' relative paths and sizes (12 hex digits)."""
    files = sorted(path for path in folder.rglob("*") if path.is_file() and not path.name.startswith("."))
    listing = "\n".join(f"{path.relative_to(folder).as_posix()}:{path.stat().st_size}" for path in files)
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()[:12]


def dataset_identity(path_or_id: str | None, dataset_id: str | None = None) -> dict[str, Any]:
    """How a card names a dataset: `type` (model-index `dataset.type`), pretty `name`, `revision`, and `local`.

    A Hub id stays itself. A local folder is named as what it is, a local copy: `type` is `<folder>-local-copy`
    (never a Hub id, so the Hub does not index the results as results on the original dataset), `name` its README's
    `pretty_name`, `revision` a fingerprint of its files. `dataset_id` (the user's statement that the copy *is* that
    Hub dataset, `--card_dataset_id`) replaces the type; the name, revision and `local` keep the copy's provenance.
    """
    local = _local_dataset(path_or_id)
    if local is None:
        return {"type": dataset_id or path_or_id or "unknown", "name": dataset_id or path_or_id or "unknown",
                "revision": None, "local": False}  # fmt: skip
    readme = local / CARD_NAME
    own = f"{local.resolve().name}{LOCAL_COPY_SUFFIX}"
    name = (metadata_load(readme) or {}).get("pretty_name", own) if readme.is_file() else own
    return {"type": dataset_id or own, "name": name, "revision": _fingerprint(local), "local": True}


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
                dataset_revision=report.dataset.get("revision") or dataset["revision"],
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


def format_duration(seconds: float) -> str:
    """`4.2 s`, `42 s`, `23.9 min` or `2.2 h`."""
    if seconds < 120:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _shown(value: Any, pattern: str = "{}") -> str:
    """A number formatted with `pattern`; any other value (a foreign card's "61.2 ± 1.1", "8/255") as it is."""
    return pattern.format(value) if isinstance(value, int | float) and not isinstance(value, bool) else str(value)


def _result_rows(results: Sequence[EvalResult]) -> list[dict[str, Any]]:
    """The card's results table, values of other cards (strings, fractions) shown as they are."""
    rows = []
    for result in results:
        args = result.metric_args or {}
        interval, norm, eps = args.get("interval_95"), args.get("norm"), args.get("eps")
        eps = format_eps(eps, norm) if isinstance(eps, float) else _shown(eps)
        rows.append({
            "name": attack_title(result.metric_config) if result.metric_config else result.metric_name,
            "threat": f"{norm}, eps={eps}" if norm else "–",
            "accuracy": _shown(result.metric_value, "{:.2f}"),
            "interval": f"[{_shown(interval[0], '{:.1f}')}, {_shown(interval[1], '{:.1f}')}]"
            if isinstance(interval, list | tuple) and len(interval) == 2 else _shown(interval or ""),
            "n": args.get("n_examples", ""),
            "seconds": format_duration(args["seconds"]) if isinstance(args.get("seconds"), int | float) else "",
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
        "wall_time": format_duration(summary["train_seconds"]),
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


def input_sentence(config: dict[str, Any], processor: dict[str, Any] | None) -> str:
    """What the card says about input pixels, from the model's config and its saved processor config: WideResNets
    normalise inside (mean/std from the config); other models are described by their image processor (which may
    normalise outside the model, or not at all)."""

    def values(numbers: Sequence[float]) -> str:
        return ", ".join(f"{number:.4g}" for number in numbers)

    if config.get("model_type") == "wide_resnet":
        stats = f" (mean {values(config['image_mean'])}, std {values(config['image_std'])})"
        return (
            f"It takes `pixel_values` in [0, 1] and normalises them inside the model{stats}, so attack budgets are "
            "in pixel units."
        )
    if processor is None:
        return "It has no saved image processor: how its inputs must be scaled and normalised is not recorded here."
    if processor.get("do_normalize"):
        return (
            f"Its image processor normalises the pixels outside the model (mean {values(processor['image_mean'])}, "
            f"std {values(processor['image_std'])}); the model itself does not normalise."
        )
    return (
        "It takes `pixel_values` in [0, 1] as they are: there is no mean/std normalisation, neither inside the model "
        "nor in its image processor (which only resizes and rescales), so attack budgets are in pixel units."
    )


def _processor_config(folder: Path) -> dict[str, Any] | None:
    path = folder / PROCESSOR_NAME
    return json.loads(path.read_text()) if path.is_file() else None


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
    processor: dict[str, Any] | None = None,
    template_path: str | Path = TEMPLATE,
) -> ModelCard:
    """A model card for a robust classifier, rendered from `template_path` (Jinja2).

    Metadata: `library_name: transformers`, `pipeline_tag: image-classification`, tags, `datasets`, `license`, a
    `model-index` with one result per metric of `previous_results` and `reports` (later ones replace re-measured
    metrics), and `mixacm` (architecture, params, training cost) for the leaderboard. `training_summary` is
    `run_mixacm`'s summary (method, teacher, hyperparameters, compute); `config` the model's config as a dict;
    `plot` the file name of the robustness-vs-eps plot beside the card; `repo_id` the Hub id or path that the
    card's usage snippet loads (default: `model_name`); `dataset_id` the Hub id that a local dataset copy stands
    for (only when the user says so: otherwise the copy is named as itself); `processor` the saved
    preprocessor_config.json as a dict. The sentences on architecture, parameters and input normalisation are
    computed from `config`, `params` and `processor` (`input_sentence`).
    """
    config = config or {}
    summary = training_summary or {}
    results = merge_results(previous_results, *(report_results(report, dataset_id) for report in reports))
    dataset = dataset_identity(reports[-1].dataset.get("name") if reports else summary.get("dataset"), dataset_id)
    training_data = dataset_identity(summary["dataset"], dataset_id)["type"] if "dataset" in summary else None
    hub_datasets = (training_data, *(r.dataset_type for r in results))  # local copies are no Hub datasets
    datasets = list(dict.fromkeys(d for d in hub_datasets if d and not d.endswith(LOCAL_COPY_SUFFIX)))
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
        "image_size": config.get("image_size") or (processor or {}).get("size", {}).get("height", "H"),
        "inputs": input_sentence(config, processor),
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
        "asserted_id": dataset_id,
        "evaluation_dataset": dataset_id or (reports[-1].dataset.get("name") if reports else None) or dataset["type"],
        "local_copies": list(  # one entry per copy, however many paths name it
            {
                Path(path).resolve(): {"path": path, **dataset_identity(path)}
                for path in reversed(local_paths)
                if _local_dataset(path)
            }.values()
        ),
        "training": _training(training_summary),
    }
    return ModelCard(_card_template(Path(template_path).read_text(encoding="utf-8")).render(**context))


@functools.lru_cache(maxsize=8)
def _card_template(text: str) -> jinja2.Template:
    """The compiled card template (compiled once per template text: cards are re-rendered on every update)."""
    environment = jinja2.Environment(
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True
    )
    return environment.from_string(text)


def load_reports(folder: str | Path) -> list[RobustnessReport]:
    """The reports in a model folder's robustness.json (oldest first; none when there is no file)."""
    path = Path(folder) / REPORTS_NAME
    return [RobustnessReport.from_dict(data) for data in json.loads(path.read_text())] if path.is_file() else []


def _reports_json(reports: Sequence[RobustnessReport]) -> bytes:
    return (json.dumps([report.to_dict() for report in reports], indent=2) + "\n").encode("utf-8")


def _count_parameters(folder: Path) -> int:
    import torch
    from transformers import AutoConfig, AutoModelForImageClassification

    with torch.device("meta"):
        model = AutoModelForImageClassification.from_config(AutoConfig.from_pretrained(folder))
    return sum(parameter.numel() for parameter in model.parameters())


def _plot_png(report: RobustnessReport) -> bytes:
    """The robustness-vs-eps plot of `report` as PNG bytes (drawn in a temporary folder, not beside the card)."""
    with tempfile.TemporaryDirectory() as scratch:
        return plot_eps_sweep(report, Path(scratch) / PLOT_NAME).read_bytes()


def _render_folder(
    folder: Path,
    reports: Sequence[RobustnessReport],
    training_summary: dict[str, Any] | None,
    *,
    previous_results: Sequence[EvalResult] = (),
    repo_id: str | None = None,
    dataset_id: str | None = None,
    license: str = "apache-2.0",
    redraw_plot: bool = True,
) -> tuple[ModelCard, dict[str, bytes]]:
    """The card of the model saved in `folder` and the files to write beside it (robustness.json, and the eps plot
    of the newest report with a sweep: with `redraw_plot`, or when the folder has none), all rendered in memory:
    nothing in `folder` is touched."""
    swept = [report for report in reports if report.eps_sweep is not None]
    files = {REPORTS_NAME: _reports_json(reports)}
    if swept and (redraw_plot or not (folder / PLOT_NAME).is_file()):
        files[PLOT_NAME] = _plot_png(swept[-1])
    config_file = folder / "config.json"
    card = create_model_card(
        repo_id.split("/")[-1] if repo_id else folder.resolve().name,
        reports,
        training_summary,
        config=json.loads(config_file.read_text()) if config_file.is_file() else None,
        params=(training_summary or {}).get("params") or _count_parameters(folder),
        repo_id=repo_id or str(folder),
        dataset_id=dataset_id,
        license=license,
        plot=PLOT_NAME if PLOT_NAME in files or (folder / PLOT_NAME).is_file() else None,
        previous_results=previous_results,
        processor=_processor_config(folder),
    )
    return card, files


def replace_files(folder: str | Path, files: dict[str, bytes]) -> None:
    """Replace each file of `folder` (name -> bytes) atomically (`atomic_write_bytes`); if one write fails, the
    files already replaced get their old bytes back (new ones are removed), so the folder is left as it was.

    Raises:
        OSError: a write failed (after the rollback).
    """
    folder = Path(folder)
    old = {name: (folder / name).read_bytes() if (folder / name).is_file() else None for name in files}
    written = []
    try:
        for name, data in files.items():
            atomic_write_bytes(folder / name, data)
            written.append(name)
    except BaseException:
        for name in written:
            if old[name] is None:
                (folder / name).unlink(missing_ok=True)
            else:
                atomic_write_bytes(folder / name, old[name])
        raise


def write_model_card(
    folder: str | Path,
    reports: Sequence[RobustnessReport],
    training_summary: dict[str, Any] | None = None,
    *,
    repo_id: str | None = None,
    dataset_id: str | None = None,
    license: str = "apache-2.0",
) -> ModelCard:
    """The card files of a model already saved in `folder`: README.md, robustness.json and the eps plot (PNG).

    All or nothing: everything is rendered first, then each file is replaced atomically under the folder's card
    lock (`mixacm_hf.files.locked`); a failure leaves the folder as it was.
    """
    folder = Path(folder)
    with locked(folder / CARD_NAME):
        card, files = _render_folder(
            folder, reports, training_summary, repo_id=repo_id, dataset_id=dataset_id, license=license
        )
        replace_files(folder, {**files, CARD_NAME: str(card).encode("utf-8")})
    return card


def save_image_processor(folder: str | Path, image_size: int) -> Path | None:
    """Save a processor that only resizes to `image_size` and rescales to [0, 1] (no mean/std: the project's pixel
    convention) unless `folder` already has a `preprocessor_config.json`; returns its path when one was written.

    This is what makes `pipeline("image-classification", model=folder)` work for any architecture.
    """
    from .models.configuration_wide_resnet import WideResNetConfig
    from .models.modeling_wide_resnet import image_processor_for

    path = Path(folder) / PROCESSOR_NAME
    if path.is_file():
        return None
    image_processor_for(WideResNetConfig(image_size=image_size)).save_pretrained(folder)
    return path


def save_robust_model(
    model: PreTrainedModel,
    output_dir: str | Path,
    reports: Sequence[RobustnessReport],
    training_summary: dict[str, Any] | None = None,
    *,
    repo_id: str | None = None,
    dataset_id: str | None = None,
    license: str = "apache-2.0",
    image_size: int = 32,
) -> ModelCard:
    """A Hub-ready folder: `save_pretrained` (safetensors, model code for `trust_remote_code`), an image-processor
    config (`save_image_processor` when the model saves none), train_summary.json, and the card files of
    `write_model_card`. Returns the card."""
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir)
    save_image_processor(output_dir, getattr(model.config, "image_size", image_size))
    if training_summary is not None:
        atomic_write_text(output_dir / SUMMARY_NAME, json.dumps(training_summary, indent=2, default=str))
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
    metric (string values of foreign cards included, rendered as they are), all other metadata and the text
    outside the results block are kept. Without `dataset_id`, a dataset the card already names (same pretty name)
    keeps the Hub id the card gave it. The report is appended to robustness.json and the eps plot redrawn when it
    has a sweep. All or nothing, and safe against concurrent updates: the read-modify-write holds the folder's
    card lock, everything is rendered before any file is replaced (atomically), and a failure leaves the folder
    as it was.
    """
    folder = Path(folder)
    path = folder / CARD_NAME
    with locked(path):
        reports = [*load_reports(folder), report]
        summary_file = folder / SUMMARY_NAME
        summary = json.loads(summary_file.read_text()) if summary_file.is_file() else None
        old = ModelCard.load(path) if path.is_file() else None
        previous = (old.data.eval_results or []) if old else []
        name = dataset_identity(report.dataset.get("name"))["name"]
        dataset_id = dataset_id or next((r.dataset_type for r in previous if r.dataset_name == name), None)
        fresh, files = _render_folder(
            folder, reports, summary, previous_results=previous, dataset_id=dataset_id, license=license,
            redraw_plot=report.eps_sweep is not None,
        )  # fmt: skip
        card = old or fresh
        if old is not None:
            card.data.model_name = old.data.model_name or fresh.data.model_name
            card.data.eval_results = fresh.data.eval_results
            card.text = _replace_results_block(old.text, fresh.text)
        replace_files(folder, {**files, CARD_NAME: str(card).encode("utf-8")})
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


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mixacm_hf.hub", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    board = commands.add_parser("leaderboard", help="compare models by their cards' model-index")
    board.add_argument("sources", nargs="+", help="model folders, README.md files or Hub model ids")
    board.add_argument("--format", choices=("markdown", "csv", "html"), default="markdown")
    board.add_argument("-o", "--output", help="write to this file (atomically) instead of stdout")
    board.add_argument("--dataset", help="only this dataset (its Hub id / type or its name)")
    board.add_argument("--split", help="only this split (e.g. test)")
    board.add_argument("--threat-model", "--norm", dest="threat_model", help="only this threat model (Linf or L2)")
    board.add_argument("--eps", type=parse_eps, help="only this budget (8/255)")
    push = commands.add_parser("push", help="upload a saved robust model folder in one commit")
    push.add_argument("folder")
    push.add_argument("repo_id")
    push.add_argument("--private", action="store_true")
    push.add_argument("--endpoint", help="Hub endpoint (default: HF_ENDPOINT or huggingface.co)")
    args = parser.parse_args(argv)
    if args.command == "leaderboard":
        from .leaderboard import format_leaderboard, leaderboard

        try:
            board = leaderboard(
                args.sources, dataset=args.dataset, split=args.split, threat_model=args.threat_model, eps=args.eps
            )
        except ValueError as error:
            raise SystemExit(f"error: {error}") from None
        for note in board.notes:
            print(f"note: {note}", file=sys.stderr)
        if not board.tables:
            raise SystemExit("error: no model card with usable results among the sources (see the notes above).")
        text = format_leaderboard(board, args.format)
        if args.output:
            atomic_write_text(args.output, text)
        else:
            print(text, end="")
    else:
        print(f"Pushed: {push_or_exit(args.folder, args.repo_id, args.private, endpoint=args.endpoint)}")


if __name__ == "__main__":
    main()
