"""RobustBench zoo entries as Hugging Face folders: `save_zoo_teacher` converts an entry whose architecture this
project has (RobustBench's WideResNet and DMWideResNet, most CIFAR entries) into a WideResNet folder, after checking
that the converted model gives RobustBench's logits; other entries are refused (use them by name instead)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from .card import converted_model_card
from .checkpoints import StateDict
from .converters import RAW_PIXELS, Normalization, convert_state_dict
from .zoo import IMAGE_SIZES, build_zoo_model


def _blocks(state_dict: StateDict, pattern: str) -> int:
    return len({match[1] for key in state_dict if (match := re.fullmatch(pattern, key))})


def zoo_architecture(model: nn.Module, state_dict: StateDict) -> tuple[str, Normalization] | None:
    """The `ARCHITECTURES` name and input normalisation of a zoo model's weights, from their layout: a RobustBench
    "Standard" WideResNet (normalised by its `mu`/`sigma` buffers, when it has them, else raw pixels) or a
    DMWideResNet (its `mean`/`std`); None for other layouts."""
    if "block1.layer.0.conv1.weight" in state_dict and "fc.weight" in state_dict:
        depth = 6 * _blocks(state_dict, r"block1\.layer\.(\d+)\..*") + 4
        width = state_dict["block1.layer.0.conv1.weight"].shape[0] // 16
        stats = (state_dict["mu"], state_dict["sigma"]) if {"mu", "sigma"} <= state_dict.keys() else None
        normalization = RAW_PIXELS if stats is None else tuple(s.flatten().tolist() for s in stats)
        return f"standard-wrn-{depth}-{width}", normalization
    if "layer.0.block.0.conv_0.weight" in state_dict and isinstance(getattr(model, "mean", None), torch.Tensor):
        depth = 6 * _blocks(state_dict, r"layer\.0\.block\.(\d+)\..*") + 4
        width = state_dict["layer.0.block.0.conv_0.weight"].shape[0] // 16
        return f"dm-wrn-{depth}-{width}", (model.mean.flatten().tolist(), model.std.flatten().tolist())
    return None


def _reported(info: dict[str, Any] | None) -> str | None:
    if not info:
        return None
    keys = (("clean_acc", "clean"), ("autoattack_acc", "AutoAttack"), ("external", "external evaluation"))
    parts = [f"{label} {info[key]}%" for key, label in keys if info.get(key) not in (None, "")]
    return "; ".join(parts) + " (RobustBench's model information)" if parts else None


def save_zoo_teacher(
    spec: str, output_dir: str | os.PathLike, model_dir: str | os.PathLike | None = None
) -> PreTrainedModel:
    """Write the zoo entry `spec` as a WideResNet folder (safetensors, config, card) whose `config.converted_from`
    records the checkpoint's name and sha256, the architecture and RobustBench's provenance of the entry.

    Raises:
        ValueError: the entry's architecture has no counterpart here, or the converted model's logits differ from
            RobustBench's model's on random pixels (its forward does more than the architecture, e.g. per-image
            normalisation); the message says to use the entry by name instead. See also `zoo.build_zoo_model`.
    """
    model, provenance = build_zoo_model(spec, model_dir)
    spec = provenance["spec"]  # as RobustBench spells it
    state_dict = {key: value for key, value in model.state_dict().items() if key not in ("mu", "sigma")}
    found = zoo_architecture(model, model.state_dict())
    use_by_name = f"Use it by its name {spec} instead (as a teacher or a model to evaluate): RobustBench's own model."
    if found is None:
        raise ValueError(f"{spec} ({provenance['builder']}) has no Hugging Face counterpart here. {use_by_name}")
    arch, normalization = found
    converted, _ = convert_state_dict(state_dict, arch, normalization)
    size = IMAGE_SIZES[provenance["dataset"]]
    pixels = torch.rand(4, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        difference = (converted.eval()(pixel_values=pixels).logits - model(pixels)).abs().max().item()
    if difference > 1e-4:
        raise ValueError(
            f"{spec} converted as {arch} does not give RobustBench's logits (max difference {difference:.3g}): its "
            f"forward ({provenance['builder']}) does more than {arch}. {use_by_name}"
        )
    checkpoint = Path(provenance["checkpoint"])
    converted.config.converted_from = {
        "file": checkpoint.name, "sha256": provenance["sha256"], "architecture": arch, "source": spec,
        "robustbench": {key: value for key, value in provenance.items() if key != "checkpoint"},
    }  # fmt: skip
    output_dir = Path(output_dir)
    converted.save_pretrained(output_dir)
    card = converted_model_card(converted, arch, checkpoint, None, spec, _reported(provenance["model_info"]))
    (output_dir / "README.md").write_text(card)
    return converted
