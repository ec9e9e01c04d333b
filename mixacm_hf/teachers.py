"""Teachers for MixACM: load any robust image classifier as a frozen module with the project's input/output contract.

`load_teacher(spec)` returns an `nn.Module` in eval mode with gradients off that takes `pixel_values` in [0, 1]
(B, 3, H, W) and, called with `output_hidden_states=True`, returns an object with `.logits` and `.hidden_states`: a
tuple of (B, C, H, W) feature maps (stem, then one per stage). Accepted specs:

- a Hugging Face model folder or Hub id (`AutoModelForImageClassification`: this project's WideResNets, HF ResNet /
  ConvNeXt, timm models through `TimmWrapperForImageClassification`);
- a foreign checkpoint file plus `architecture` (see `ARCHITECTURES`): RobustBench / TRADES / Madry "Standard"
  WideResNets, DeepMind WideResNets (`DMWideResNet`, Swish), `robustness`-library ImageNet ResNet-50s, timm models.

Models that normalise outside (HF ResNet, timm, ...) are wrapped in `PixelSpaceClassifier`, which applies their
mean/std (from `image_mean`/`image_std`, the saved image processor, or timm's `pretrained_cfg`) inside the forward,
so attacks and mixup stay in pixel space. Foreign checkpoints are read with `torch.load(..., weights_only=True)` only.

Hidden states: WideResNets give stem + 3 groups; HF ResNet and timm ResNets stem + 4 stages; timm ConvNeXt 4 stages.
When teacher and student counts differ, pair them with `acm_teacher_layers` / `acm_student_layers` (e.g. ResNet-50
teacher 0,2,3,4 with WRN student 0,1,2,3) or `acm_layer_mapping="relative_depth"` (see `mixacm_hf.losses`).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn
from transformers import (
    AutoImageProcessor,
    AutoModelForImageClassification,
    ConvNextImageProcessor,
    PreTrainedModel,
    ResNetConfig,
    ResNetForImageClassification,
    TimmWrapperConfig,
    TimmWrapperForImageClassification,
)
from transformers.image_processing_utils import BaseImageProcessor
from transformers.modeling_outputs import ImageClassifierOutputWithNoAttention
from transformers.utils import logging

from .models import WideResNetConfig, WideResNetForImageClassification
from .models.configuration_wide_resnet import CIFAR10_MEAN, CIFAR10_STD

logger = logging.get_logger(__name__)

StateDict = dict[str, torch.Tensor]
Normalization = tuple[Sequence[float], Sequence[float]]
# (regex matched against the whole source key, function of the match giving the target key)
RenameRule = tuple[str, Callable[[re.Match], str]]

RAW_PIXELS: Normalization = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
CIFAR10_NORMALIZATION: Normalization = (CIFAR10_MEAN, CIFAR10_STD)
CIFAR100_NORMALIZATION: Normalization = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model")
DEFAULT_PROBE_SIZE = 224


class PixelSpaceClassifier(nn.Module):
    """An image classifier that expects normalised inputs, made to take `pixel_values` in [0, 1].

    `forward` computes `(pixel_values - mean) / std` and calls the wrapped model; the output is an
    `ImageClassifierOutputWithNoAttention` whose `hidden_states` is a tuple. Mean/std are not folded into the first
    convolution because that is wrong at zero-padded borders.
    """

    def __init__(self, model: PreTrainedModel, image_mean: Sequence[float], image_std: Sequence[float]):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(image_mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(image_std, dtype=torch.float32).view(1, -1, 1, 1))

    @property
    def config(self):
        return self.model.config

    def forward(
        self, pixel_values: torch.Tensor, output_hidden_states: bool | None = None
    ) -> ImageClassifierOutputWithNoAttention:
        normalized = (pixel_values - self.mean.to(pixel_values.dtype)) / self.std.to(pixel_values.dtype)
        outputs = self.model(pixel_values=normalized, output_hidden_states=output_hidden_states, return_dict=True)
        hidden_states = None if outputs.hidden_states is None else tuple(outputs.hidden_states)
        return ImageClassifierOutputWithNoAttention(logits=outputs.logits, hidden_states=hidden_states)


# ---------------------------------------------------------------------------------------------------------------------
# Reading foreign checkpoints


def read_checkpoint(path: str | os.PathLike) -> StateDict:
    """Tensors of a checkpoint file: safetensors, or a pickle read with `weights_only=True`.

    Accepts a raw state dict or one nested under `state_dict`, `model_state_dict` or `model` (the `robustness`
    library), and strips DataParallel's `module.` prefix.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Checkpoint {str(path)!r} does not exist; pass the path of a .pt/.pth/.safetensors file."
        )
    if path.suffix == ".safetensors":
        try:
            return _strip_module_prefix(load_file(path))
        except SafetensorError as error:
            raise ValueError(_unreadable_weights(path, error)) from error
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (EOFError, RuntimeError) as error:  # truncated or not a torch file
        raise ValueError(_unreadable_weights(path, error)) from error
    except pickle.UnpicklingError as error:
        reason = " ".join(
            line.strip() for line in str(error).splitlines() if "WeightsUnpickler" in line or "Unsupp" in line
        )
        raise ValueError(
            f"Refusing to read {str(path)!r}: it is not a plain tensor checkpoint ({reason or 'unreadable'}). This "
            "project reads pickles only with `torch.load(weights_only=True)`, since unpickling arbitrary objects can "
            "run code. If you trust the file, re-save just its weights once, e.g. `torch.save(torch.load(path, "
            "weights_only=False)['state_dict'], 'weights.pt')` (or as safetensors), and pass that file instead."
        ) from error
    return _strip_module_prefix(_find_state_dict(checkpoint, str(path)))


def _unreadable_weights(path: str | os.PathLike, error: BaseException) -> str:
    return (
        f"Cannot read the weights in {str(path)!r} ({type(error).__name__}: {error}): the file is truncated or "
        "corrupt. Download or copy it again (or re-save the model) and retry."
    )


def _find_state_dict(checkpoint: object, name: str) -> StateDict:
    if isinstance(checkpoint, dict):
        for key in STATE_DICT_KEYS:
            if isinstance(checkpoint.get(key), dict):
                checkpoint = checkpoint[key]
                break
    if not isinstance(checkpoint, dict) or not checkpoint:
        raise ValueError(f"{name!r} holds no state dict; expected a dict of tensors (or one under {STATE_DICT_KEYS}).")
    not_tensors = [key for key, value in checkpoint.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise ValueError(
            f"{name!r} is not a state dict: entries {not_tensors[:5]} are not tensors. Expected a dict of tensors, "
            f"raw or under one of {STATE_DICT_KEYS}; re-save the model's `state_dict()` alone."
        )
    return dict(checkpoint)


def _strip_module_prefix(state_dict: StateDict) -> StateDict:
    return {key.removeprefix("module."): value for key, value in state_dict.items()}


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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


def _num_labels(state_dict: StateDict, key: str, arch: str) -> int:
    if key not in state_dict:
        raise ValueError(f"The checkpoint has no classifier weight {key!r} for {arch!r}; a teacher needs its logits.")
    return state_dict[key].shape[0]


def _convert_wrn(
    state_dict: StateDict, name: str, rules: list[RenameRule], normalization: Normalization, arch: str
) -> WideResNetForImageClassification:
    renamed, sources = rename_keys(state_dict, rules, arch)
    mean, std = normalization
    config = WideResNetConfig.from_name(
        name, num_labels=_num_labels(renamed, "classifier.weight", arch), image_mean=mean, image_std=std
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
        num_labels=_num_labels(renamed, "classifier.1.weight", arch),
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
        num_labels=_num_labels(state_dict, f"{classifier}.weight", arch),
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


# ---------------------------------------------------------------------------------------------------------------------
# Loading teachers


def _normalizes_inside(model: PreTrainedModel) -> bool:
    return model.config.model_type == WideResNetConfig.model_type


def input_normalization(model: PreTrainedModel, processor: BaseImageProcessor | None) -> Normalization | None:
    """Mean/std the model expects its inputs normalised with: timm's `pretrained_cfg`, else the image processor."""
    pretrained_cfg = getattr(model.config, "pretrained_cfg", None)
    if pretrained_cfg and "mean" in pretrained_cfg:
        return pretrained_cfg["mean"], pretrained_cfg["std"]
    if processor is None or not hasattr(processor, "do_normalize"):
        return None
    return (processor.image_mean, processor.image_std) if processor.do_normalize else RAW_PIXELS


def as_pixel_space(
    model: PreTrainedModel, processor: BaseImageProcessor | None, normalization: Normalization | None, name: str
) -> nn.Module:
    """The model itself when it normalises inside (WideResNet), else a `PixelSpaceClassifier` around it."""
    if _normalizes_inside(model):
        if normalization is not None:
            raise ValueError(
                f"{name!r} normalises inside the model (config.image_mean/image_std); don't pass image_mean/image_std."
            )
        return model
    normalization = normalization or input_normalization(model, processor)
    if normalization is None:
        raise ValueError(
            f"Cannot tell how {name!r} normalises its inputs: it has no image processor with image_mean/image_std. "
            "Pass image_mean and image_std (use 0,0,0 and 1,1,1 for a model trained on raw [0, 1] pixels)."
        )
    logger.info("Teacher %s takes normalised inputs: applying mean %s / std %s inside.", name, *normalization)
    return PixelSpaceClassifier(model, *normalization)


def _probe_size(config) -> int:
    size = getattr(config, "image_size", None)
    if size is None:
        size = (getattr(config, "pretrained_cfg", None) or {}).get("input_size", DEFAULT_PROBE_SIZE)
    return size if isinstance(size, int) else int(size[-1])


def check_teacher(teacher: nn.Module, image_size: int, name: str) -> None:
    """Run one image through `teacher` and check that it returns logits and (B, C, H, W) hidden states."""
    parameter = next(teacher.parameters())
    probe = torch.full((1, 3, image_size, image_size), 0.5, dtype=parameter.dtype, device=parameter.device)
    with torch.no_grad():
        outputs = teacher(pixel_values=probe, output_hidden_states=True)
    hidden_states = getattr(outputs, "hidden_states", None)
    if getattr(outputs, "logits", None) is None or not hidden_states:
        raise ValueError(
            f"Teacher {name!r} returned no hidden states with output_hidden_states=True. MixACM matches the teacher's "
            "per-stage feature maps: use a model that returns them (this project's WideResNets, HF ResNet/ConvNeXt, "
            "timm models with `forward_intermediates` via TimmWrapperForImageClassification)."
        )
    for index, state in enumerate(hidden_states):
        if not isinstance(state, torch.Tensor) or state.dim() != 4:
            shape = tuple(state.shape) if isinstance(state, torch.Tensor) else type(state).__name__
            raise ValueError(
                f"Teacher {name!r} hidden state {index} is {shape}, not a (B, C, H, W) feature map; MixACM needs "
                "convolutional stage outputs (for ViTs use the timm model through TimmWrapperForImageClassification, "
                "whose `forward_intermediates` returns NCHW maps)."
            )


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")  # 'name' or 'org/name', as the Hub spells repo ids


def _load_pretrained(
    spec: str | os.PathLike, trust_remote_code: bool, revision: str | None
) -> tuple[PreTrainedModel, BaseImageProcessor | None]:
    if Path(spec).is_file():
        raise ValueError(
            f"{str(spec)!r} is a checkpoint file: pass its architecture with architecture=... (--arch, "
            f"--teacher_architecture). Supported: {supported_architectures()}."
        )
    if not Path(spec).is_dir() and not _HUB_ID.match(str(spec)):
        raise FileNotFoundError(
            f"Teacher {str(spec)!r} is neither an existing folder or file nor a Hub id ('org/name'): pass the path "
            "of a model folder, of a checkpoint file (with its architecture), or a Hub id."
        )
    kwargs = {"trust_remote_code": trust_remote_code, "revision": revision}
    try:
        model = AutoModelForImageClassification.from_pretrained(spec, **kwargs)
    except SafetensorError as error:
        weights = sorted(str(p) for p in Path(spec).glob("*.safetensors")) or [str(spec)]
        raise ValueError(_unreadable_weights(", ".join(weights), error)) from error
    except OSError as error:
        raise OSError(
            f"Cannot load the teacher {str(spec)!r}: {error} Check that the folder holds config.json and its "
            "weights, or that the Hub id exists and is reachable (offline: download it first)."
        ) from error
    if _normalizes_inside(model) or getattr(model.config, "pretrained_cfg", None):
        return model, None
    try:
        processor = AutoImageProcessor.from_pretrained(spec, **kwargs)
    except (OSError, ValueError):
        processor = None
    return model, processor


def load_teacher(
    spec: str | os.PathLike,
    architecture: str | None = None,
    *,
    image_mean: Sequence[float] | None = None,
    image_std: Sequence[float] | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
    image_size: int | None = None,
) -> nn.Module:
    """A frozen teacher (eval mode, no grad) taking pixels in [0, 1] and returning `.logits` and `.hidden_states`.

    Args:
        spec: an HF model folder or Hub id, or (with `architecture`) a checkpoint file (.pt/.pth/.safetensors).
        architecture: architecture of a checkpoint file, a name from `ARCHITECTURES` (e.g. `standard-wrn-34-10`,
            `dm-wrn-28-10`, `robustness-resnet50`, `timm:resnet50`).
        image_mean, image_std: the statistics the model was trained with, when they cannot be read from the
            checkpoint/processor (or to override them). Not allowed for models that normalise inside.
        trust_remote_code, revision: passed to `from_pretrained` for folders and Hub ids.
        image_size: side of the probe image used to check the outputs (default: from the config, else 224).
    """
    if (image_mean is None) != (image_std is None):
        raise ValueError("Pass both image_mean and image_std, or neither.")
    normalization = None if image_mean is None else (tuple(image_mean), tuple(image_std))
    if architecture is None:
        model, processor = _load_pretrained(spec, trust_remote_code, revision)
        teacher = as_pixel_space(model, processor, normalization, str(spec))
    else:
        model, processor = convert_checkpoint(spec, architecture, normalization)
        teacher = as_pixel_space(model, processor, None, str(spec))
    teacher.eval().requires_grad_(False)
    check_teacher(teacher, image_size or _probe_size(model.config), str(spec))
    return teacher


# ---------------------------------------------------------------------------------------------------------------------
# Saving converted teachers


def converted_model_card(
    model: PreTrainedModel,
    arch: str,
    checkpoint: str | os.PathLike,
    normalization: Normalization | None,
    source: str | None = None,
    reported_robustness: str | None = None,
) -> str:
    """README.md for a converted teacher: provenance, input convention and the source's reported robustness."""
    checkpoint = Path(checkpoint)
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
        f"| Source checkpoint | `{checkpoint.name}` (sha256 `{file_sha256(checkpoint)}`) |",
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
) -> PreTrainedModel:
    """Convert `checkpoint` and write an HF folder (safetensors, config, image processor, model card)."""
    model, processor = convert_checkpoint(checkpoint, arch, normalization)
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir)
    if processor is not None:
        processor.save_pretrained(output_dir)
    card_normalization = None if _normalizes_inside(model) else input_normalization(model, processor)
    card = converted_model_card(model, arch, checkpoint, card_normalization, source, reported_robustness)
    (output_dir / "README.md").write_text(card)
    return model


__all__ = [
    "ARCHITECTURES",
    "CIFAR10_NORMALIZATION",
    "CIFAR100_NORMALIZATION",
    "PixelSpaceClassifier",
    "check_teacher",
    "convert_checkpoint",
    "convert_state_dict",
    "load_teacher",
    "read_checkpoint",
    "save_converted_teacher",
]
