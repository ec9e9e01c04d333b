"""Converters of foreign checkpoint layouts into Hugging Face models: rename rules, strict loading that names the
offending key, one converter per format, and the `ARCHITECTURES` registry (name pattern -> converter)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import timm
import torch
from torch import nn
from transformers import (
    ConvNextImageProcessor,
    PreTrainedModel,
    ResNetConfig,
    ResNetForImageClassification,
    TimmWrapperConfig,
    TimmWrapperForImageClassification,
)
from transformers.image_processing_utils import BaseImageProcessor

from ..models import WideResNetConfig, WideResNetForImageClassification
from ..models.configuration_wide_resnet import CIFAR10_MEAN, CIFAR10_STD
from .checkpoints import StateDict, read_checkpoint

Normalization = tuple[Sequence[float], Sequence[float]]
# (regex matched against the whole source key, function of the match giving the target key)
RenameRule = tuple[str, Callable[[re.Match], str]]

RAW_PIXELS: Normalization = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
CIFAR10_NORMALIZATION: Normalization = (CIFAR10_MEAN, CIFAR10_STD)
CIFAR100_NORMALIZATION: Normalization = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))


# ---------------------------------------------------------------------------------------------------------------------
# Key renaming and strict loading


def rename_keys(state_dict: StateDict, rules: Sequence[RenameRule], arch: str) -> tuple[StateDict, dict[str, str]]:
    """Apply the first matching rule to every key; returns the renamed dict and target -> source key names."""
    renamed: StateDict = {}
    sources: dict[str, str] = {}
    for key, value in state_dict.items():
        target = _rename(key, rules)
        if target is None:
            raise ValueError(
                f"Checkpoint key {key!r} is not part of the {arch!r} layout. Check the architecture name (see "
                "`ARCHITECTURES`) or that the checkpoint holds that model."
            )
        renamed[target], sources[target] = value, key
    return renamed, sources


def _rename(key: str, rules: Sequence[RenameRule]) -> str | None:
    for pattern, target in rules:
        if match := re.fullmatch(pattern, key):
            return target(match)
    return None


def load_converted(model: nn.Module, state_dict: StateDict, sources: dict[str, str], arch: str) -> None:
    """Strict load that names the offending key on a missing key, an extra key or a shape mismatch.

    BatchNorm `num_batches_tracked` counters, absent from checkpoints of old PyTorch versions, are set to zero.
    """
    expected = model.state_dict()
    counters = {k: torch.zeros_like(v) for k, v in expected.items() if k.endswith("num_batches_tracked")}
    state_dict = {**counters, **state_dict}
    extra = [sources.get(k, k) for k in state_dict if k not in expected]
    if extra:
        raise ValueError(
            f"Checkpoint keys {extra[:5]} have no place in {arch!r}: the checkpoint is deeper or differently built. "
            "Check that the architecture name (depth, width, model) matches the checkpoint."
        )
    missing = [k for k in expected if k not in state_dict]
    if missing:
        raise ValueError(
            f"The checkpoint lacks {missing[:5]} (target names) for {arch!r}: it is shallower or differently built. "
            "Check that the architecture name (depth, width, model) matches the checkpoint."
        )
    for key, value in state_dict.items():
        if value.shape != expected[key].shape:
            raise ValueError(
                f"Shape mismatch for checkpoint key {sources.get(key, key)!r} (-> {key!r}): checkpoint "
                f"{tuple(value.shape)}, {arch!r} expects {tuple(expected[key].shape)}. Check that the architecture "
                "name (width, model) matches the checkpoint."
            )
    model.load_state_dict(state_dict, strict=True)


def _wrn_block(group: int | str, block: str, suffix: str) -> str:
    return f"wide_resnet.groups.{group}.layers.{block}.{suffix}"


STANDARD_WRN_RULES: list[RenameRule] = [
    (r"conv1\.weight", lambda m: "wide_resnet.stem.weight"),
    (r"block([123])\.layer\.(\d+)\.bn([12])\.(\w+)", lambda m: _wrn_block(int(m[1]) - 1, m[2], f"norm{m[3]}.{m[4]}")),
    (
        r"block([123])\.layer\.(\d+)\.conv([12])\.weight",
        lambda m: _wrn_block(int(m[1]) - 1, m[2], f"conv{m[3]}.weight"),
    ),
    (r"block([123])\.layer\.(\d+)\.convShortcut\.weight", lambda m: _wrn_block(int(m[1]) - 1, m[2], "shortcut.weight")),
    (r"bn1\.(\w+)", lambda m: f"wide_resnet.norm.{m[1]}"),
    (r"fc\.(weight|bias)", lambda m: f"classifier.{m[1]}"),
]

DM_WRN_RULES: list[RenameRule] = [
    (r"init_conv\.weight", lambda m: "wide_resnet.stem.weight"),
    (
        r"layer\.([012])\.block\.(\d+)\.batchnorm_([01])\.(\w+)",
        lambda m: _wrn_block(m[1], m[2], f"norm{int(m[3]) + 1}.{m[4]}"),
    ),
    (
        r"layer\.([012])\.block\.(\d+)\.conv_([01])\.weight",
        lambda m: _wrn_block(m[1], m[2], f"conv{int(m[3]) + 1}.weight"),
    ),
    (r"layer\.([012])\.block\.(\d+)\.shortcut\.weight", lambda m: _wrn_block(m[1], m[2], "shortcut.weight")),
    (r"batchnorm\.(\w+)", lambda m: f"wide_resnet.norm.{m[1]}"),
    (r"logits\.(weight|bias)", lambda m: f"classifier.{m[1]}"),
]


def _resnet_layer(m: re.Match, suffix: str) -> str:
    return f"resnet.encoder.stages.{int(m[1]) - 1}.layers.{m[2]}.{suffix}"


TORCHVISION_RESNET_RULES: list[RenameRule] = [
    (r"conv1\.weight", lambda m: "resnet.embedder.embedder.convolution.weight"),
    (r"bn1\.(\w+)", lambda m: f"resnet.embedder.embedder.normalization.{m[1]}"),
    (
        r"layer([1-4])\.(\d+)\.conv([123])\.weight",
        lambda m: _resnet_layer(m, f"layer.{int(m[3]) - 1}.convolution.weight"),
    ),
    (
        r"layer([1-4])\.(\d+)\.bn([123])\.(\w+)",
        lambda m: _resnet_layer(m, f"layer.{int(m[3]) - 1}.normalization.{m[4]}"),
    ),
    (r"layer([1-4])\.(\d+)\.downsample\.0\.weight", lambda m: _resnet_layer(m, "shortcut.convolution.weight")),
    (r"layer([1-4])\.(\d+)\.downsample\.1\.(\w+)", lambda m: _resnet_layer(m, f"shortcut.normalization.{m[3]}")),
    (r"fc\.(weight|bias)", lambda m: f"classifier.1.{m[1]}"),
]


# ---------------------------------------------------------------------------------------------------------------------
# Converters: (name match, state dict, normalisation override) -> (HF model, image processor or None)

Converted = tuple[PreTrainedModel, BaseImageProcessor | None]


def _classifier_rows(state_dict: StateDict, key: str, arch: str) -> int:
    """Number of classes of a converted checkpoint: the rows of its classifier weight `key`."""
    if key not in state_dict:
        raise ValueError(f"The checkpoint has no classifier weight {key!r} for {arch!r}; a teacher needs its logits.")
    return state_dict[key].shape[0]


def _convert_wrn(
    state_dict: StateDict, name: str, rules: list[RenameRule], normalization: Normalization, arch: str
) -> WideResNetForImageClassification:
    renamed, sources = rename_keys(state_dict, rules, arch)
    mean, std = normalization
    config = WideResNetConfig.from_name(
        name, num_labels=_classifier_rows(renamed, "classifier.weight", arch), image_mean=mean, image_std=std
    )
    model = WideResNetForImageClassification(config)
    renamed["wide_resnet.normalization.mean"] = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    renamed["wide_resnet.normalization.std"] = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    load_converted(model, renamed, sources, arch)
    return model


def convert_standard_wrn(match: re.Match, state_dict: StateDict, normalization: Normalization | None) -> Converted:
    """RobustBench "Standard" / TRADES / Madry WideResNet (conv1, block1-3, bn1, fc; ReLU; no normalisation inside).

    TRADES' unused `sub_block1.*` weights are dropped; inputs are raw pixels unless `normalization` is given.
    """
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith("sub_block1.")}
    name = f"wrn-{match['depth']}-{match['width']}"
    return _convert_wrn(state_dict, name, STANDARD_WRN_RULES, normalization or RAW_PIXELS, match[0]), None


def convert_dm_wrn(match: re.Match, state_dict: StateDict, normalization: Normalization | None) -> Converted:
    """DeepMind WideResNet (`DMWideResNet` of Gowal et al. / RobustBench, Swish, "SAME" padding).

    Its mean/std buffers are not saved in checkpoints: CIFAR-10 statistics unless `normalization` is given (pass
    `CIFAR100_NORMALIZATION` for CIFAR-100 models).
    """
    name = f"dm-wrn-{match['depth']}-{match['width']}"
    return _convert_wrn(state_dict, name, DM_WRN_RULES, normalization or CIFAR10_NORMALIZATION, match[0]), None


def convert_robustness_resnet50(
    match: re.Match, state_dict: StateDict, normalization: Normalization | None
) -> Converted:
    """`robustness`-library ImageNet ResNet-50 (`model.*` torchvision weights, `normalizer.new_mean/new_std`).

    Becomes an HF `ResNetForImageClassification`; the normaliser's statistics go into the saved image processor,
    from which `load_teacher` wraps the model in `PixelSpaceClassifier`. Attacker copies are ignored.
    """
    arch = match[0]
    if normalization is None:
        if "normalizer.new_mean" not in state_dict:
            raise ValueError(
                f"The checkpoint has no `normalizer.new_mean`/`new_std` for {arch!r}; pass image_mean/image_std."
            )
        normalization = (
            state_dict["normalizer.new_mean"].flatten().tolist(),
            state_dict["normalizer.new_std"].flatten().tolist(),
        )
    weights = {k.removeprefix("model."): v for k, v in state_dict.items() if k.startswith("model.")}
    renamed, sources = rename_keys(weights, TORCHVISION_RESNET_RULES, arch)
    sources = {target: f"model.{source}" for target, source in sources.items()}
    config = ResNetConfig(
        layer_type="bottleneck",
        depths=[3, 4, 6, 3],
        hidden_sizes=[256, 512, 1024, 2048],
        embedding_size=64,
        num_labels=_classifier_rows(renamed, "classifier.1.weight", arch),
    )
    model = ResNetForImageClassification(config)
    load_converted(model, renamed, sources, arch)
    mean, std = normalization
    processor = ConvNextImageProcessor(
        size={"shortest_edge": 224}, crop_pct=224 / 256, do_normalize=True, image_mean=list(mean), image_std=list(std)
    )
    return model, processor


def convert_timm(match: re.Match, state_dict: StateDict, normalization: Normalization | None) -> Converted:
    """A timm model by name (`timm:resnet50`, `timm:convnext_tiny.fb_in1k`, ...) with local weights.

    Built offline (`pretrained=False`) inside `TimmWrapperForImageClassification`; the class count comes from the
    checkpoint's classifier, mean/std from timm's `pretrained_cfg` unless `normalization` is given.
    """
    name, arch = match["name"], match[0]
    if not timm.is_model(name):
        raise ValueError(f"timm has no model {name!r}; see `timm.list_models()` for the names it knows.")
    pretrained_cfg = timm.models.get_pretrained_cfg(name).to_dict()
    classifier = pretrained_cfg["classifier"]
    classifier = classifier if isinstance(classifier, str) else classifier[0]
    if normalization is not None:
        pretrained_cfg["mean"], pretrained_cfg["std"] = (tuple(v) for v in normalization)
    config = TimmWrapperConfig(
        architecture=name,
        num_labels=_classifier_rows(state_dict, f"{classifier}.weight", arch),
        pretrained_cfg=pretrained_cfg,
    )
    model = TimmWrapperForImageClassification(config)
    prefixed = {f"timm_model.{k}": v for k, v in state_dict.items()}
    load_converted(model, prefixed, {k: k.removeprefix("timm_model.") for k in prefixed}, arch)
    return model, None


@dataclass(frozen=True)
class Architecture:
    """A supported foreign checkpoint layout: name pattern, converter and a line of help."""

    pattern: str
    convert: Callable[[re.Match, StateDict, Normalization | None], Converted]
    help: str


ARCHITECTURES: dict[str, Architecture] = {
    "standard-wrn-D-K": Architecture(
        r"standard-wrn-(?P<depth>\d+)-(?P<width>\d+)",
        convert_standard_wrn,
        "RobustBench 'Standard' / TRADES / Madry WideResNet, e.g. standard-wrn-34-10",
    ),
    "dm-wrn-D-K": Architecture(
        r"dm-wrn-(?P<depth>\d+)-(?P<width>\d+)",
        convert_dm_wrn,
        "DeepMind DMWideResNet with Swish (Gowal et al.), e.g. dm-wrn-28-10, dm-wrn-34-20, dm-wrn-70-16",
    ),
    "robustness-resnet50": Architecture(
        r"robustness-resnet50", convert_robustness_resnet50, "MadryLab `robustness` library ImageNet ResNet-50"
    ),
    "timm:NAME": Architecture(r"timm:(?P<name>.+)", convert_timm, "any timm model by name, e.g. timm:resnet50"),
}


def supported_architectures() -> str:
    return "; ".join(f"{name} ({entry.help})" for name, entry in ARCHITECTURES.items())


def resolve_architecture(arch: str) -> tuple[Architecture, re.Match]:
    """The registry entry whose pattern matches `arch`, and the match (depth, width, timm name)."""
    for entry in ARCHITECTURES.values():
        if match := re.fullmatch(entry.pattern, arch.strip()):
            return entry, match
    raise ValueError(f"Unknown teacher architecture {arch!r}. Supported: {supported_architectures()}.")


def convert_state_dict(state_dict: StateDict, arch: str, normalization: Normalization | None = None) -> Converted:
    """Foreign state dict -> (HF model, image processor to save with it or None). See `ARCHITECTURES`."""
    entry, match = resolve_architecture(arch)
    return entry.convert(match, state_dict, normalization)


def convert_checkpoint(path: str | os.PathLike, arch: str, normalization: Normalization | None = None) -> Converted:
    """`read_checkpoint` + `convert_state_dict` (the architecture is checked before the file is read)."""
    resolve_architecture(arch)
    return convert_state_dict(read_checkpoint(path), arch, normalization)
