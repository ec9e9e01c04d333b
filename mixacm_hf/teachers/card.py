"""Converted-teacher folders: `save_converted_teacher` (HF folder with safetensors, config, image processor) and the
model card recording provenance (source file and sha256, also in `config.converted_from`), input convention and the
source's reported robustness."""

from __future__ import annotations

import os
from pathlib import Path

from transformers import PreTrainedModel

from ..files import file_sha256
from .converters import Normalization, convert_checkpoint
from .loading import input_normalization, normalizes_inside


def converted_model_card(
    model: PreTrainedModel,
    arch: str,
    checkpoint: str | os.PathLike,
    normalization: Normalization | None,
    source: str | None = None,
    reported_robustness: str | None = None,
) -> str:
    """README.md for a converted teacher: provenance (the sha256 of `config.converted_from`, else of `checkpoint`),
    input convention and the source's reported robustness."""
    checkpoint = Path(checkpoint)
    sha256 = (getattr(model.config, "converted_from", None) or {}).get("sha256") or file_sha256(checkpoint)
    if normalization is None:
        input_line = f"`pixel_values` in [0, 1]; mean {model.config.image_mean} / std {model.config.image_std} inside"
    else:
        input_line = (
            f"`pixel_values` normalised with mean {list(normalization[0])} / std {list(normalization[1])} "
            "(the saved image processor); `mixacm_hf.teachers.load_teacher` applies this inside, taking [0, 1] pixels"
        )
    robustness = reported_robustness or "not given; measure it with `training/evaluate_robustness.py`."
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: image-classification",
        "tags: [image-classification, adversarial-robustness, mixacm-teacher, converted]",
        "---",
        "",
        f"# {type(model).__name__} converted from `{checkpoint.name}`",
        "",
        "A robust image classifier converted with `mixacm_hf` (`training/convert_teacher.py`) for use as a MixACM "
        "teacher. The weights are unchanged; only names and layout were converted.",
        "",
        "| | |",
        "|---|---|",
        f"| Source checkpoint | `{checkpoint.name}` (sha256 `{sha256}`) |",
        f"| Source | {source or 'not given'} |",
        f"| Source architecture | `{arch}` |",
        f"| Classes | {model.config.num_labels} |",
        f"| Input | {input_line} |",
        "",
        "## Reported robustness",
        "",
        f"As reported by the source (not re-measured by the conversion): {robustness}",
        "",
        "## Usage",
        "",
        "```python",
        "from mixacm_hf.teachers import load_teacher",
        'teacher = load_teacher("path/or/hub-id")  # frozen; pixel_values in [0, 1]',
        "```",
        "",
    ]
    return "\n".join(lines)


def save_converted_teacher(
    checkpoint: str | os.PathLike,
    arch: str,
    output_dir: str | os.PathLike,
    normalization: Normalization | None = None,
    source: str | None = None,
    reported_robustness: str | None = None,
    image_size: int | None = None,
) -> PreTrainedModel:
    """Convert `checkpoint` and write an HF folder (safetensors, config, image processor, model card); the config's
    `converted_from` records the source file's name and sha256, the architecture and the source. A `timm:` model
    needs `image_size`, the resolution its checkpoint was trained at: its processor (built from its config's
    `pretrained_cfg`) then feeds it images of that size, normalised only, as the evaluator and teacher loader do,
    instead of timm's ImageNet resize and crop.

    Raises:
        ValueError: a `timm:` architecture without `image_size` (or one below 1), before any conversion.
    """
    timm_model = arch.lower().startswith("timm:")
    if timm_model and (image_size is None or image_size < 1):
        raise ValueError(
            f"--arch {arch}: give --image_size, the resolution the checkpoint was trained at (e.g. 32 for CIFAR-10): "
            "timm's own settings for it are ImageNet's resize and crop, which its saved processor would then apply "
            "while evaluation and distillation feed the images as they are."
        )
    model, processor = convert_checkpoint(checkpoint, arch, normalization)
    if timm_model:  # transformers builds a timm folder's processor from this: resize to image_size (none), mean/std
        sized = {key: value for key, value in model.config.pretrained_cfg.items() if key != "test_input_size"}
        model.config.pretrained_cfg = {**sized, "input_size": (3, image_size, image_size), "crop_pct": 1.0,
                                       "crop_mode": "center"}  # fmt: skip
    model.config.converted_from = {
        "file": Path(checkpoint).name, "sha256": file_sha256(checkpoint), "architecture": arch, "source": source,
    }  # fmt: skip
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir)
    if processor is not None:
        processor.save_pretrained(output_dir)
    card_normalization = None if normalizes_inside(model) else input_normalization(model, processor)
    card = converted_model_card(model, arch, checkpoint, card_normalization, source, reported_robustness)
    (output_dir / "README.md").write_text(card)
    return model
