"""The evaluator's input contract: any classifier becomes "pixels in [0, 1] in, logits out, fp32, eval mode".

`as_classifier` is the single entry point used by `evaluate_robustness` (and so by `training/evaluate_robustness.py`
with its `--update_card`, and by the end-of-run evaluation of `run_mixacm`). It decides the input convention with
`mixacm_hf.teachers.as_pixel_space`, the function `load_teacher` uses, so a folder is attacked exactly as it is
distilled from. `attack_layout` runs bf16/fp16 models in fp32 with frozen parameters (optionally channels-last) and
restores them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from ..teachers import (
    HookedClassifier,
    PixelSpaceClassifier,
    as_pixel_space,
    is_zoo_spec,
    load_pretrained_classifier,
    load_zoo_classifier,
)

INSIDE = "normalises inside the model"
PLAIN = "plain module: taken to expect pixels in [0, 1] (the documented contract for modules without a config)"


def _input_convention(wrapped: nn.Module) -> str:
    return wrapped.describe() if isinstance(wrapped, (PixelSpaceClassifier, HookedClassifier)) else INSIDE


def as_classifier(
    model: nn.Module | str,
    *,
    image_mean: Sequence[float] | None = None,
    image_std: Sequence[float] | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    robustbench_model_dir: str | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Any classifier as a module taking pixel_values (B, 3, H, W) in [0, 1], and how its input was handled.

    Args:
        model: a folder or Hub id (loaded with `AutoModelForImageClassification`; its image processor's mean/std
            are applied inside when it normalises), a RobustBench zoo entry `robustbench:<dataset>/<threat_model>/
            <name>` (RobustBench's model from `robustbench_model_dir`, taking [0, 1] pixels as RobustBench
            evaluates it), a `PreTrainedModel` (this project's WideResNets normalise inside; timm wrappers use their
            `pretrained_cfg`), a `PixelSpaceClassifier` or `HookedClassifier` (from `load_teacher`), a timm model
            (its `pretrained_cfg` mean/std) or any other module (taken to expect [0, 1] pixels).
        image_mean, image_std: the statistics the model expects inputs normalised with, when they cannot be read
            (0,0,0 / 1,1,1 for a model trained on raw pixels). Not allowed for models that normalise inside.
        revision, trust_remote_code: passed to `from_pretrained` for folders and Hub ids.
        robustbench_model_dir: RobustBench's model directory for zoo entries (default `./models`).

    Returns:
        (module, info): info has "input" (what is done to the pixels) and "loaded_dtype" (the parameters' dtype);
        for a zoo entry also "revision" (its checkpoint's sha256) and "source" (its provenance).

    Raises:
        ValueError: the input convention cannot be determined (a `PreTrainedModel` without an image processor, e.g.
            an HF ResNet built in memory): pass image_mean/image_std or the model folder; or only one of them given.
    """
    if (image_mean is None) != (image_std is None):
        raise ValueError("Pass both image_mean and image_std, or neither.")
    normalization = None if image_mean is None else (tuple(image_mean), tuple(image_std))
    name = model if isinstance(model, str) else type(model).__name__
    if is_zoo_spec(model):
        if normalization is not None:
            raise ValueError(f"{model} takes [0, 1] pixels as RobustBench evaluates it: pass no image_mean/image_std.")
        wrapped = load_zoo_classifier(model, robustbench_model_dir)
    elif isinstance(model, str):
        loaded, processor = load_pretrained_classifier(model, trust_remote_code, revision, what="model")
        wrapped = as_pixel_space(loaded, processor, normalization, model)
    elif isinstance(model, PreTrainedModel):
        try:
            wrapped = as_pixel_space(model, None, normalization, name)
        except ValueError as error:
            raise ValueError(f"{error} Or evaluate the saved folder, whose image processor says it.") from error
    elif normalization is not None:
        wrapped = PixelSpaceClassifier(model, *normalization)
    elif isinstance(model, (PixelSpaceClassifier, HookedClassifier)):
        wrapped = model
    elif "mean" in (getattr(model, "pretrained_cfg", None) or {}):  # timm models
        wrapped = PixelSpaceClassifier(model, model.pretrained_cfg["mean"], model.pretrained_cfg["std"])
    else:
        wrapped = model
    parameter = next(wrapped.parameters(), None)
    dtype = str(parameter.dtype).removeprefix("torch.") if parameter is not None else None
    plain = wrapped is model and not isinstance(model, (PreTrainedModel, PixelSpaceClassifier, HookedClassifier))
    info = {"input": PLAIN if plain else _input_convention(wrapped), "loaded_dtype": dtype}
    provenance = getattr(wrapped, "provenance", None)
    if provenance:
        info.update(revision=provenance["sha256"], source=provenance)
    return wrapped, info


@contextmanager
def attack_layout(model: nn.Module, channels_last: bool = False) -> Iterator[None]:
    """The model as attacks need it, for the duration: floating parameters and buffers in fp32, parameters without
    gradients (attacks differentiate the input only: pyautoattack's `backward` then skips weight gradients and
    leaves the model's `.grad` alone) and, with `channels_last`, 4-D tensors in channels-last memory (faster
    convolutions; the same function up to float summation order). Everything is put back afterwards."""
    originals = []
    for tensor in [*model.parameters(), *model.buffers()]:
        reformat = channels_last and tensor.dim() == 4
        if not tensor.is_floating_point() or (tensor.dtype == torch.float32 and not reformat):
            continue
        originals.append((tensor, tensor.data))
        tensor.data = tensor.data.float()
        if reformat:
            tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    model.requires_grad_(False)
    try:
        yield
    finally:
        for tensor, data in originals:
            tensor.data = data
        for parameter in trainable:
            parameter.requires_grad_(True)
