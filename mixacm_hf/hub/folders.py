"""Hub-ready model folders: save a robust model with its card, write or update the card files (README.md with its
model-index, `.eval_results/robustness.yaml` with the same results, robustness.json, `per_example.parquet`, the
robustness-vs-eps plot) all-or-nothing under the folder's lock."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCard
from transformers import PreTrainedModel

from ..data.identity import recorded_identity
from ..files import atomic_write_bytes, atomic_write_text, locked, replace_marked_block
from ..models import WideResNetConfig
from ..robustness import RobustnessReport, plot_eps_sweep
from .cards import create_model_card, sweep_report
from .eval_results import EVAL_RESULTS_NAME, eval_results_yaml
from .per_example import PER_EXAMPLE_NAME, per_example_parquet
from .results import CARD_NAME, PLOT_NAME, PROCESSOR_NAME, REPORTS_NAME, SUMMARY_NAME

RESULTS_START, RESULTS_END = "<!-- mixacm-hf:results:start -->", "<!-- mixacm-hf:results:end -->"


def load_reports(folder: str | Path) -> list[RobustnessReport]:
    """The reports in a model folder's robustness.json (oldest first; none when there is no file)."""
    path = Path(folder) / REPORTS_NAME
    return [RobustnessReport.from_dict(data) for data in json.loads(path.read_text())] if path.is_file() else []


def read_card_folder(folder: str | Path) -> tuple[list[RobustnessReport], dict[str, Any] | None, ModelCard | None]:
    """What a card update reads from a model folder: its reports (robustness.json), training summary
    (train_summary.json) and card (README.md), each None or empty when the file is absent.

    Raises:
        ValueError: naming the file that is not what its name says (unreadable JSON, reports or card metadata),
            and what to do: fix it, or move it out of the folder.
    """
    folder, name = Path(folder), REPORTS_NAME
    try:
        reports = load_reports(folder)
        name = SUMMARY_NAME
        summary = json.loads((folder / name).read_text()) if (folder / name).is_file() else None
        if summary is not None and not isinstance(summary, dict):
            raise ValueError(f"a JSON {type(summary).__name__}, not an object")
        name = CARD_NAME
        card = ModelCard.load(folder / name) if (folder / name).is_file() else None
        if card is not None:
            card.data.eval_results  # noqa: B018 - a model-index that does not parse raises here
    except (ValueError, TypeError, AttributeError, KeyError, OSError, yaml.YAMLError) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        reason = reason.split(" Pass `ignore_metadata_errors=True`")[0]  # huggingface_hub's advice: loses metadata
        raise ValueError(
            f"{folder / name} cannot be read ({reason[:300]}): fix it, or move it out of the folder; the card update "
            "would otherwise lose or misread it."
        ) from error
    return reports, summary, card


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


def _processor_config(folder: Path) -> dict[str, Any] | None:
    path = folder / PROCESSOR_NAME
    return json.loads(path.read_text()) if path.is_file() else None


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
) -> tuple[ModelCard, dict[str, bytes | None]]:
    """The card of the model saved in `folder` and the files to write beside it (robustness.json, the per-example
    records (None: none to publish), and the eps plot of the report with a sweep on the most examples, the newest of
    those (`sweep_report`): with `redraw_plot`, or when the folder has none), all rendered in memory: nothing in
    `folder` is touched. The card's `.eval_results` file is `eval_results_yaml` of the results the card ends with."""
    swept = sweep_report(reports)
    files = {REPORTS_NAME: _reports_json(reports), PER_EXAMPLE_NAME: per_example_parquet(reports)}
    if swept and (redraw_plot or not (folder / PLOT_NAME).is_file()):
        files[PLOT_NAME] = _plot_png(swept)
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
        per_example=PER_EXAMPLE_NAME if files[PER_EXAMPLE_NAME] else None,
    )
    return card, files


def _card_files(card: ModelCard, files: dict[str, bytes | None]) -> dict[str, bytes | None]:
    """`files`, the `.eval_results` file of the card's results, and the card itself (written last)."""
    results = eval_results_yaml(card.data.eval_results or [])
    return {**files, EVAL_RESULTS_NAME: results, CARD_NAME: str(card).encode("utf-8")}


def replace_files(folder: str | Path, files: dict[str, bytes | None]) -> None:
    """Replace each file of `folder` (relative path -> bytes; None: remove it) atomically (`atomic_write_bytes`,
    creating missing subfolders); if one write fails, the files already replaced get their old bytes back (new ones
    and new subfolders are removed), so the folder is left as it was.

    Raises:
        OSError: a write failed (after the rollback).
    """
    folder = Path(folder)
    old = {name: (folder / name).read_bytes() if (folder / name).is_file() else None for name in files}
    created = {parent for name in files for parent in (folder / name).parents if folder in parent.parents}
    created = sorted((parent for parent in created if not parent.exists()), key=lambda parent: -len(parent.parts))
    written = []
    try:
        for name, data in files.items():
            if data is None:
                (folder / name).unlink(missing_ok=True)
            else:
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(folder / name, data)
            written.append(name)
    except BaseException:
        for name in written:
            if old[name] is None:
                (folder / name).unlink(missing_ok=True)
            else:
                atomic_write_bytes(folder / name, old[name])
        for parent in created:  # deepest first
            if parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
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
    """The card files of a model already saved in `folder`: README.md, `.eval_results/robustness.yaml` (its
    model-index results in the Hub's evaluation-results format), robustness.json, `per_example.parquet` (the
    reports' per-example records; removed when none has any) and the eps plot (PNG).

    All or nothing: everything is rendered first, then each file is replaced atomically under the folder's card
    lock (`mixacm_hf.files.locked`); a failure leaves the folder as it was.
    """
    folder = Path(folder)
    with locked(folder / CARD_NAME):
        card, files = _render_folder(
            folder, reports, training_summary, repo_id=repo_id, dataset_id=dataset_id, license=license
        )
        replace_files(folder, _card_files(card, files))
    return card


def save_image_processor(
    folder: str | Path, image_size: int, normalization: tuple[Sequence[float], Sequence[float]] | None = None
) -> Path | None:
    """Save a processor that resizes to `image_size`, rescales to [0, 1] and, with `normalization` (mean, std; not
    0 and 1), normalises (without: no mean/std, the project's pixel convention) unless `folder` already has a
    `preprocessor_config.json`; returns its path when one was written.

    This is what makes `pipeline("image-classification", model=folder)` work for any architecture.
    """
    from ..models.configuration_wide_resnet import WideResNetConfig
    from ..models.modeling_wide_resnet import image_processor_for

    path = Path(folder) / PROCESSOR_NAME
    if path.is_file():
        return None
    processor = image_processor_for(WideResNetConfig(image_size=image_size))
    mean, std = normalization or ((0.0,) * 3, (1.0,) * 3)
    if any(m != 0 for m in mean) or any(v != 1 for v in std):
        processor.do_normalize, processor.image_mean, processor.image_std = True, list(mean), list(std)
    processor.save_pretrained(folder)
    return path


def record_input_normalization(
    folder: str | Path,
    normalization: tuple[Sequence[float], Sequence[float]],
    image_size: int | None,
    flags: str = "--image_mean/--image_std",
    dry_run: bool = False,
) -> Path | None:
    """Record the normalisation a model folder was evaluated under (`flags`, given because the folder says none) as
    its image processor (`save_image_processor`, at `image_size`, else its config's, else 32), so that its card's
    pipeline snippet and re-evaluation command give the model the evaluated input; `dry_run` only checks. Returns
    the processor's path (None with `dry_run`).

    Raises:
        ValueError: the folder already says how it takes its pixels (an image processor, timm's `pretrained_cfg`, a
            model normalising inside): evaluated under `flags`, its card would report another input than its own.
    """
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}
    if (folder / PROCESSOR_NAME).is_file():  # the same normalisation as its processor's: nothing to record
        saved = json.loads((folder / PROCESSOR_NAME).read_text())
        stats = (saved.get("image_mean"), saved.get("image_std")) if saved.get("do_normalize") else ([0] * 3, [1] * 3)
        if [list(map(float, v or ())) for v in stats] == [list(map(float, v)) for v in normalization]:
            return None
    says = (
        f"its {PROCESSOR_NAME}" if (folder / PROCESSOR_NAME).is_file()
        else "its config's timm pretrained_cfg" if "mean" in (config.get("pretrained_cfg") or {})
        else "its config (it normalises inside)" if config.get("model_type") == WideResNetConfig.model_type
        else None
    )  # fmt: skip
    if says is not None:
        raise ValueError(
            f"{flags} with --update_card: {folder} already says how its pixels are normalised ({says}), so its card "
            f"would report another input than its pipeline gives. Drop {flags}, or fix that file."
        )
    if dry_run:
        return None
    return save_image_processor(folder, image_size or config.get("image_size") or 32, normalization)


def _processor_of(model: PreTrainedModel, image_processor: Any | None) -> Any | None:
    """The image processor to save beside `model`: the one given, else the one saved with the folder it was loaded
    from (`model.name_or_path`), else None."""
    if image_processor is not None:
        return image_processor
    source = Path(str(getattr(model, "name_or_path", "") or ""))
    if (source / PROCESSOR_NAME).is_file():
        from transformers import AutoImageProcessor

        return AutoImageProcessor.from_pretrained(source)
    return None


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
    image_processor: Any | None = None,
) -> ModelCard:
    """A Hub-ready folder: `save_pretrained` (safetensors, model code for `trust_remote_code`), the image processor
    the model expects its pixels through, train_summary.json, and the card files of `write_model_card`. Returns the
    card.

    The processor is `image_processor`, else the one of the folder the model was loaded from; a WideResNet (which
    normalises inside) gets a resize/rescale-only one (`save_image_processor`).

    Raises:
        ValueError: before anything is written, for a model that does not normalise inside when no processor says
            how its pixels are fed (saving a rescale-only one would silently drop a normalisation it relies on):
            pass `image_processor` (for a model trained on raw [0, 1] pixels, as this project trains,
            `mixacm_hf.models.modeling_wide_resnet.image_processor_for(config)` gives a rescale-only one).
    """
    output_dir = Path(output_dir)
    processor = _processor_of(model, image_processor)
    if processor is None and model.config.model_type != WideResNetConfig.model_type:
        raise ValueError(
            f"Cannot tell how {type(model).__name__} expects its pixels (normalised or not): it does not normalise "
            "inside and has no image processor. Pass image_processor= (the one it was trained with)."
        )
    model.save_pretrained(output_dir)
    if processor is not None:
        processor.save_pretrained(output_dir)
    save_image_processor(output_dir, getattr(model.config, "image_size", image_size))
    if training_summary is not None:
        atomic_write_text(output_dir / SUMMARY_NAME, json.dumps(training_summary, indent=2, default=str))
    return write_model_card(
        output_dir, reports, training_summary, repo_id=repo_id, dataset_id=dataset_id, license=license
    )


def _replace_results_block(text: str, fresh: str) -> str:
    """`text` with its results block (between the markers) replaced by `fresh`'s; appended when it has none."""
    block = fresh[fresh.index(RESULTS_START) + len(RESULTS_START) : fresh.index(RESULTS_END)]
    replaced = replace_marked_block(text, block, RESULTS_START, RESULTS_END)
    if replaced is not None:
        return replaced
    return f"{text.rstrip()}\n\n## Robustness\n\n{RESULTS_START}{block}{RESULTS_END}\n"


def update_model_card(
    folder: str | Path, report: RobustnessReport, *, dataset_id: str | None = None, license: str = "apache-2.0"
) -> ModelCard:
    """Merge a new report into the card of the model saved in `folder` (a card is created when there is none).

    The report's metrics replace the ones it re-measured (same dataset, split, attack, norm and eps) on as many or
    more examples (a measurement on more examples is kept, with a warning: `merge_results`); every other
    metric (string values of foreign cards included, rendered as they are), all other metadata and the text
    outside the results block are kept. Without `dataset_id`, a dataset the card already names (same pretty name)
    keeps the Hub id the card gave it. The report is appended to robustness.json (and its records to
    per_example.parquet), `.eval_results/robustness.yaml` rewritten from the card's merged results and the eps plot
    redrawn when the report has a sweep. All or nothing, and safe against concurrent updates: the read-modify-write
    holds the folder's card lock, everything is rendered before any file is replaced (atomically), and a failure
    leaves the folder as it was.

    Raises:
        ValueError: a file of the folder cannot be read (`read_card_folder`), before anything is written.
    """
    folder = Path(folder)
    path = folder / CARD_NAME
    with locked(path):
        saved, summary, old = read_card_folder(folder)
        reports = [*saved, report]
        previous = (old.data.eval_results or []) if old else []
        name = recorded_identity(report.dataset)["name"]
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
        replace_files(folder, _card_files(card, files))
    return card
