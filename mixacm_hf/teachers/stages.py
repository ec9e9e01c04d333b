"""Stage outputs of any classifier by forward hooks (docs/design.md, section 4.4): `HookedClassifier` gives a plain
`nn.Module` (a RobustBench zoo model, or any teacher with `stage_modules`) the teacher contract, `.logits` and
`.hidden_states`, and `default_stage_modules` finds its stages with one probe image."""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
from torch import nn
from transformers import PretrainedConfig
from transformers.modeling_outputs import ImageClassifierOutputWithNoAttention

RAW_INPUT = "pixels in [0, 1] as they are"

# name -> (completion index, output shape) of a module's last call in the probe; shapes of non-tensor outputs: ()
Calls = dict[str, tuple[int, tuple[int, ...]]]


def logits_from(outputs: Any, name: str) -> torch.Tensor:
    """The logits a classifier returned: a tensor, or an output object's `.logits`."""
    logits = outputs if isinstance(outputs, torch.Tensor) else getattr(outputs, "logits", None)
    if not isinstance(logits, torch.Tensor):
        raise ValueError(f"{name} returned {type(outputs).__name__}, neither logits nor an output with `.logits`.")
    return logits


def _keep(captured: dict[str, torch.Tensor], name: str, module: nn.Module, inputs: Any, output: Any) -> None:
    captured[name] = output


class HookedClassifier(nn.Module):
    """A classifier whose hidden states are the outputs of its named submodules `stage_modules`, taken by forward
    hooks during the call (a module called several times gives its last call's output). Without `stage_modules`
    they are found when first needed, by `default_stage_modules` at `config.image_size` (32 without one).

    `model(pixel_values)` must return logits or an output with `.logits`; `forward` returns an
    `ImageClassifierOutputWithNoAttention`, with `hidden_states` in the order of `stage_modules` when asked for.
    `config` (class count, image size) and `provenance` (where the weights come from) are kept for the trainer, the
    evaluator and the model card; `input_convention` says what the pixels go through (recorded in reports).
    """

    def __init__(
        self,
        model: nn.Module,
        stage_modules: Sequence[str] | None = None,
        *,
        config: PretrainedConfig | None = None,
        input_convention: str = RAW_INPUT,
        provenance: dict[str, Any] | None = None,
    ):
        super().__init__()
        if stage_modules is not None:
            check_module_names(model, stage_modules)
        self.model = model
        self._stages = None if stage_modules is None else tuple(stage_modules)
        self._channels_last = channels_last_modules(model)
        self.config = config
        self.input_convention = input_convention
        self.provenance = provenance

    @property
    def stage_modules(self) -> tuple[str, ...]:
        """The modules whose outputs are the hidden states (found by a probe on first use when not given)."""
        if self._stages is None:
            size, name = getattr(self.config, "image_size", 32), (self.provenance or {}).get("spec")
            self._stages = tuple(default_stage_modules(self.model, size, name))
        return self._stages

    def describe(self) -> str:
        """What is done to the [0, 1] pixels before the model, in words."""
        return self.input_convention

    def forward(
        self, pixel_values: torch.Tensor, output_hidden_states: bool | None = None
    ) -> ImageClassifierOutputWithNoAttention:
        name = type(self.model).__name__
        if not output_hidden_states:
            return ImageClassifierOutputWithNoAttention(logits=logits_from(self.model(pixel_values), name))
        captured: dict[str, torch.Tensor] = {}
        modules = dict(self.model.named_modules())
        handles = [
            modules[stage].register_forward_hook(partial(_keep, captured, stage)) for stage in self.stage_modules
        ]
        try:
            logits = logits_from(self.model(pixel_values), name)
        finally:
            for handle in handles:
                handle.remove()
        silent = [stage for stage in self.stage_modules if stage not in captured]
        if silent:
            raise ValueError(f"{name}'s modules {silent} were not called in its forward: choose modules it runs.")
        states = tuple(
            captured[stage].permute(0, 3, 1, 2) if stage in self._channels_last else captured[stage]
            for stage in self.stage_modules
        )
        return ImageClassifierOutputWithNoAttention(logits=logits, hidden_states=states)


def check_module_names(model: nn.Module, names: Sequence[str]) -> None:
    """Raise a `ValueError` for an empty list or a name that is not a submodule of `model`, naming the closest ones."""
    if not names:
        raise ValueError("Give at least one module whose output is a stage's (B, C, H, W) feature map.")
    known = [name for name, _ in model.named_modules() if name]
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=5, cutoff=0.5) or known[:8]
            raise ValueError(
                f"{type(model).__name__} has no module {name!r}; closest names: {', '.join(close)} (the names of "
                "`model.named_modules()`)."
            )


def probe_calls(model: nn.Module, pixel_values: torch.Tensor) -> Calls:
    """Run `pixel_values` through `model` (eval mode, no gradients) and record each submodule's last call: its
    completion index (forward hooks fire as a module returns, so children before their parent) and output shape."""
    calls: Calls = {}
    counter = itertools.count()

    def record(name: str, module: nn.Module, inputs: Any, output: Any) -> None:
        calls[name] = (next(counter), tuple(output.shape) if isinstance(output, torch.Tensor) else ())

    handles = [module.register_forward_hook(partial(record, name)) for name, module in model.named_modules() if name]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(pixel_values)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return calls


def _is_feature_map(shape: tuple[int, ...], pixels: tuple[int, ...]) -> bool:
    """A (B, C, H, W) map larger than 1 x 1 that is not the input's shape (a normaliser's output)."""
    return len(shape) == 4 and shape[-2:] != (1, 1) and shape != pixels


def _outermost(module: nn.Module, prefix: str, calls: Calls, pixels: tuple[int, ...]) -> list[str]:
    """The outermost submodules with feature-map outputs. A module is entered when it was not called (a
    `ModuleList`), when it returned no tensor or one of at most 2 dimensions (a classifier wrapper) or when its
    children's feature maps have several sizes (a container of stages): stage containers are kept, not the layers
    inside them, and token-shaped (B, N, C) outputs are not entered."""
    found = []
    for name, child in ((f"{prefix}{name}", child) for name, child in module.named_children()):
        shape = calls[name][1] if name in calls else ()
        inner = [calls[f"{name}.{c}"][1] for c, _ in child.named_children() if f"{name}.{c}" in calls]
        sizes = {size[-2:] for size in inner if len(size) == 4} - {(1, 1)}
        if _is_feature_map(shape, pixels) and len(sizes) <= 1:
            found.append(name)
        elif name not in calls or len(shape) <= 2 or _is_feature_map(shape, pixels):
            found += _outermost(child, f"{name}.", calls, pixels)
    return found


def _timm_feature_info(model: nn.Module) -> list[tuple[nn.Module, list[str], list[dict[str, Any]]]]:
    """(timm model, its `feature_info` modules' names in `model`, the entries) of each timm model inside `model`."""
    found = []
    for prefix, module in model.named_modules():
        info = getattr(module, "feature_info", None)
        if isinstance(info, list) and info and all(isinstance(i, dict) and "module" in i for i in info):
            found.append((module, [f"{prefix}.{i['module']}" if prefix else i["module"] for i in info], info))
    return found


def channels_last_modules(model: nn.Module) -> frozenset[str]:
    """The `feature_info` modules of timm models inside `model` that output channels-last (B, H, W, C) maps (timm's
    `output_fmt` "NHWC": Swin and its kin); `HookedClassifier` gives their outputs as (B, C, H, W)."""
    return frozenset(
        name
        for module, names, _ in _timm_feature_info(model)
        if getattr(module, "output_fmt", "NCHW") == "NHWC"
        for name in names
    )


def _timm_stages(model: nn.Module, calls: Calls) -> list[str] | None:
    """The modules of the first timm model's `feature_info` inside `model`, when each gave a (B, num_chs, H, W) map
    (or (B, H, W, num_chs), for a timm model whose `output_fmt` is "NHWC")."""
    for module, names, info in _timm_feature_info(model)[:1]:
        channel = -1 if getattr(module, "output_fmt", "NCHW") == "NHWC" else 1
        shapes = [calls.get(name, (0, ()))[1] for name in names]
        fits = all(len(s) == 4 and s[channel] == i.get("num_chs") for s, i in zip(shapes, info))
        return names if fits else None
    return None


def default_stage_modules(model: nn.Module, image_size: int, name: str | None = None) -> list[str]:
    """The modules whose outputs are `model`'s stage outputs, found with one (1, 3, image_size, image_size) probe:
    a timm model's `feature_info` modules when they give (B, C, H, W) maps (or channels-last ones, which
    `HookedClassifier` permutes), else the last of the outermost modules
    (`_outermost`) at each spatial size larger than 1 x 1, in forward order (a ResNet's stages, and its stem where
    it downsamples; a WideResNet's groups 1 and 2 and its final activation).

    Raises:
        ValueError: the probe finds no (B, C, H, W) feature map outside token-shaped outputs (e.g. a ViT's): pass the
            modules. The message names the model (`name`, else its class) and the convolutions whose maps lie inside
            token-shaped outputs (a ViT's patch embedding), which are not searched.
    """
    parameter = next(model.parameters(), None)
    probe = torch.full((1, 3, image_size, image_size), 0.5, device=parameter.device if parameter is not None else None)
    calls = probe_calls(model, probe)
    timm_stages = _timm_stages(model, calls)
    if timm_stages:
        return timm_stages
    last: dict[tuple[int, ...], str] = {}
    for name in sorted(_outermost(model, "", calls, tuple(probe.shape)), key=lambda name: calls[name][0]):
        last[calls[name][1][-2:]] = name
    if not last:
        name, modules = name or type(model).__name__, dict(model.named_modules())
        convolutions = [
            module for module, (_, shape) in sorted(calls.items(), key=lambda call: call[1][0])
            if isinstance(modules[module], nn.Conv2d) and _is_feature_map(shape, tuple(probe.shape))
        ]  # fmt: skip
        if not convolutions:
            raise ValueError(
                f"{name} has no module with a (B, C, H, W) feature-map output on a {image_size}x{image_size} probe, "
                "so its stages cannot be found: name them (stage_modules, --acm_teacher_modules)."
            )
        shown = ", ".join(convolutions[:8]) + (f" and {len(convolutions) - 8} more" if len(convolutions) > 8 else "")
        raise ValueError(
            f"{name}'s (B, C, H, W) feature maps on a {image_size}x{image_size} probe are all inside modules with "
            f"token-shaped outputs (a ViT's patch embedding), which are not searched for stages (its convolutions "
            f"with such maps: {shown}): name the modules whose outputs to match (stage_modules, "
            "--acm_teacher_modules), e.g. among these."
        )
    return sorted(last.values(), key=lambda name: calls[name][0])
