"""Loading teachers: `load_teacher` (HF folder / Hub id, a foreign checkpoint with its architecture, or a RobustBench
zoo entry by name), input normalisation moved inside the model (`PixelSpaceClassifier`, `as_pixel_space`) and the
teacher contract check."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from torch import nn
from transformers import AutoImageProcessor, AutoModelForImageClassification, PreTrainedModel
from transformers.image_processing_utils import BaseImageProcessor
from transformers.modeling_outputs import ImageClassifierOutputWithNoAttention
from transformers.utils import logging

from ..losses import probe_outputs
from ..models import WideResNetConfig
from .checkpoints import unreadable_weights_message
from .converters import RAW_PIXELS, Normalization, convert_checkpoint, supported_architectures
from .preprocessing import PixelSteps, pixel_steps
from .stages import HookedClassifier
from .zoo import is_zoo_spec, load_zoo_classifier

logger = logging.get_logger(__name__)

DEFAULT_PROBE_SIZE = 224


class PixelSpaceClassifier(nn.Module):
    """An image classifier that expects preprocessed inputs, made to take `pixel_values` in [0, 1]: the one pixel-space
    wrapper, for teachers, students' references and evaluated models alike.

    `forward` applies `steps` (`PixelSteps`: the image processor's resize, center crop and rescale, where it has
    them) and `(pixels - mean) / std`, then calls the wrapped model: a `PreTrainedModel` gives an
    `ImageClassifierOutputWithNoAttention` whose `hidden_states` is a tuple, any other module (e.g. a timm model)
    its own output. Mean/std are not folded into the first convolution because that is wrong at zero-padded borders.
    """

    def __init__(
        self,
        model: nn.Module,
        image_mean: Sequence[float],
        image_std: Sequence[float],
        steps: PixelSteps | None = None,
    ):
        super().__init__()
        self.model = model
        self.steps = steps or PixelSteps()
        self.register_buffer("mean", torch.tensor(image_mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(image_std, dtype=torch.float32).view(1, -1, 1, 1))

    @property
    def config(self):
        return self.model.config

    def input_steps(self) -> PixelSteps:
        """Every step applied to the [0, 1] pixels before the model, normalisation included (`PixelSteps.transform`
        computes what `forward` gives the wrapped model)."""
        return replace(self.steps, mean=tuple(self.mean.flatten().tolist()), std=tuple(self.std.flatten().tolist()))

    def describe(self) -> str:
        """What is done to the [0, 1] pixels before the model, in words."""
        return "wrapped: " + ("; ".join(self.input_steps().describe()) or "pixels in [0, 1] as they are")

    def forward(
        self, pixel_values: torch.Tensor, output_hidden_states: bool | None = None
    ) -> ImageClassifierOutputWithNoAttention | Any:
        pixels = self.steps.resized(pixel_values) * self.steps.scale + self.steps.offset
        normalized = (pixels - self.mean.to(pixels.dtype)) / self.std.to(pixels.dtype)
        if not isinstance(self.model, PreTrainedModel):
            return self.model(normalized)
        outputs = self.model(pixel_values=normalized, output_hidden_states=output_hidden_states, return_dict=True)
        hidden_states = None if outputs.hidden_states is None else tuple(outputs.hidden_states)
        return ImageClassifierOutputWithNoAttention(logits=outputs.logits, hidden_states=hidden_states)


# ---------------------------------------------------------------------------------------------------------------------
# Reading foreign checkpoints


def normalizes_inside(model: PreTrainedModel) -> bool:
    """Whether `model` normalises its [0, 1] pixel input itself (this package's WideResNets do)."""
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
    """The model itself when it normalises inside (WideResNet), else a `PixelSpaceClassifier` around it that applies
    every pixel-wise step of its image processor (`pixel_steps`: resize, center crop, rescale, normalise; a step it
    cannot apply is refused) or, without a processor, the model's (timm) or the given normalisation.

    Raises:
        ValueError: the normalisation cannot be determined, or the processor has a step that cannot be applied."""
    if normalizes_inside(model):
        if normalization is not None:
            raise ValueError(
                f"{name!r} normalises inside the model (config.image_mean/image_std); don't pass image_mean/image_std."
            )
        return model
    steps = None if processor is None else pixel_steps(processor, normalization, name)
    normalization = normalization or input_normalization(model, processor)
    if normalization is None:
        raise ValueError(
            f"Cannot tell how {name!r} normalises its inputs: it has no image processor with image_mean/image_std. "
            "Pass image_mean and image_std (training/run_mixacm.py: --teacher_image_mean 0.5 0.5 0.5 "
            "--teacher_image_std 0.5 0.5 0.5; training/evaluate_robustness.py: --image_mean/--image_std; use 0 0 0 "
            "and 1 1 1 for a model trained on raw [0, 1] pixels)."
        )
    logger.info("%s takes normalised inputs: applying mean %s / std %s inside.", name, *normalization)
    return PixelSpaceClassifier(model, *normalization, steps=steps)


def _probe_size(config) -> int:
    size = getattr(config, "image_size", None)
    if size is None:
        size = (getattr(config, "pretrained_cfg", None) or {}).get("input_size", DEFAULT_PROBE_SIZE)
    return size if isinstance(size, int) else int(size[-1])


def check_teacher(teacher: nn.Module, image_size: int, name: str) -> None:
    """Run one image through `teacher` and check that it returns logits and (B, C, H, W) hidden states
    (`losses.probe_outputs`, the check the trainer makes too)."""
    parameter = next(teacher.parameters())
    probe = torch.full((1, 3, image_size, image_size), 0.5, dtype=parameter.dtype, device=parameter.device)
    outputs, _ = probe_outputs(teacher, probe, f"teacher {name!r}")
    if getattr(outputs, "logits", None) is None:
        raise ValueError(f"Teacher {name!r} returned no logits: a teacher must return `.logits` and `.hidden_states`.")


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")  # 'name' or 'org/name', as the Hub spells repo ids


def load_pretrained_classifier(
    spec: str | os.PathLike, trust_remote_code: bool, revision: str | None, what: str = "teacher"
) -> tuple[PreTrainedModel, BaseImageProcessor | None]:
    """An HF model folder or Hub id and its image processor (None when it normalises inside or has none);
    `what` names the model in errors ("teacher", "model").

    Raises:
        ValueError: `spec` is a file (a checkpoint needs its architecture), its weights are unreadable, or it lacks
            trained weights of its classifier (transformers would initialise them at random).
        FileNotFoundError: `spec` is neither an existing path nor a Hub id.
        OSError: the folder / Hub id cannot be loaded.
    """
    if Path(spec).is_file():
        raise ValueError(
            f"{str(spec)!r} is a file, not a model folder: if it is a checkpoint file, pass its architecture with "
            f"architecture=... (--arch, --teacher_architecture). Supported: {supported_architectures()}."
        )
    if not Path(spec).is_dir() and not _HUB_ID.match(str(spec)):
        raise FileNotFoundError(
            f"{what.capitalize()} {str(spec)!r} is neither an existing folder or file nor a Hub id ('org/name'): "
            "pass the path of a model folder, of a checkpoint file (with its architecture), or a Hub id."
        )
    kwargs = {"trust_remote_code": trust_remote_code, "revision": revision}
    try:
        model, info = AutoModelForImageClassification.from_pretrained(spec, output_loading_info=True, **kwargs)
    except SafetensorError as error:
        weights = sorted(str(p) for p in Path(spec).glob("*.safetensors")) or [str(spec)]
        raise ValueError(unreadable_weights_message(", ".join(weights), error)) from error
    except RuntimeError as error:  # weights of other shapes than config.json's (e.g. a head of other classes)
        raise ValueError(
            f"Cannot load the {what} {str(spec)!r}: its weights do not fit its config.json ({error}) The shapes above "
            "name them: a config edited after saving (e.g. num_labels)? Pass the folder as it was saved."
        ) from error
    except (OSError, ValueError) as error:  # ValueError: e.g. a folder without config.json ("Unrecognized model")
        where = (
            "Check that the folder holds config.json and its weights"
            if Path(spec).is_dir()
            else f"There is no folder {str(spec)!r} here (check the path for a typo), so it was read as a Hub id: "
            "check that the Hub id exists and is reachable"
        )
        raise type(error)(
            f"Cannot load the {what} {str(spec)!r}: {' '.join(str(error).split())} {where} (offline: download it "
            "first)."
        ) from error
    # BatchNorm's step counters change no prediction; every other missing weight (running statistics too) does
    untrained = sorted(key for key in info.get("missing_keys", ()) if not key.endswith("num_batches_tracked"))
    if untrained:  # transformers only warns, and fills them with random values
        raise ValueError(
            f"The {what} {str(spec)!r} lacks trained weights for {len(untrained)} parameter(s) of "
            f"{type(model).__name__} ({', '.join(untrained[:4])}{', ...' if len(untrained) > 4 else ''}): it is not a "
            "trained image classifier (e.g. a backbone without its classification head), so its predictions would "
            "be random. Pass a folder or Hub id of a classifier trained on the dataset's classes."
        )
    return model, image_processor_of(model, spec, trust_remote_code, revision)


def image_processor_of(
    model: PreTrainedModel, spec: str | os.PathLike, trust_remote_code: bool = False, revision: str | None = None
) -> BaseImageProcessor | None:
    """The image processor saved with the folder / Hub id `spec` that `model` was loaded from, as the input contract
    reads it: None for a model that normalises inside or whose config carries its normalisation (timm's
    `pretrained_cfg`), or when there is none."""
    if normalizes_inside(model) or getattr(model.config, "pretrained_cfg", None):
        return None
    try:
        return AutoImageProcessor.from_pretrained(spec, trust_remote_code=trust_remote_code, revision=revision)
    except (OSError, ValueError):
        return None


def load_teacher(
    spec: str | os.PathLike,
    architecture: str | None = None,
    *,
    image_mean: Sequence[float] | None = None,
    image_std: Sequence[float] | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
    image_size: int | None = None,
    stage_modules: Sequence[str] | None = None,
    robustbench_model_dir: str | os.PathLike | None = None,
) -> nn.Module:
    """A frozen teacher (eval mode, no grad) taking pixels in [0, 1] and returning `.logits` and `.hidden_states`.

    Args:
        spec: an HF model folder or Hub id, (with `architecture`) a checkpoint file (.pt/.pth/.safetensors), or a
            RobustBench zoo entry `robustbench:<dataset>/<threat_model>/<name>` (see `teachers.zoo`).
        architecture: architecture of a checkpoint file, a name from `ARCHITECTURES` (e.g. `standard-wrn-34-10`,
            `dm-wrn-28-10`, `robustness-resnet50`, `timm:resnet50`).
        image_mean, image_std: the statistics the model was trained with, when they cannot be read from the
            checkpoint/processor (or to override them). Not allowed for models that normalise inside.
        trust_remote_code, revision: passed to `from_pretrained` for folders and Hub ids.
        image_size: side of the probe image used to check the outputs (default: from the config, else 224).
        stage_modules: names of submodules whose outputs become the hidden states, taken by forward hooks
            (`HookedClassifier`), e.g. `["layer1", "layer2", "layer3"]`; default: the model's own hidden states, or
            for a zoo entry the modules `stages.default_stage_modules` finds.
        robustbench_model_dir: RobustBench's model directory for zoo entries (default `./models`, as RobustBench's).
    """
    if (image_mean is None) != (image_std is None):
        raise ValueError("Pass both image_mean and image_std, or neither.")
    normalization = None if image_mean is None else (tuple(image_mean), tuple(image_std))
    if is_zoo_spec(spec):
        if architecture is not None or normalization is not None:
            raise ValueError(
                f"{spec} is built by RobustBench and takes [0, 1] pixels: pass no architecture or image_mean/std."
            )
        teacher = load_zoo_classifier(str(spec), robustbench_model_dir, stage_modules)
    elif architecture is None:
        model, processor = load_pretrained_classifier(spec, trust_remote_code, revision)
        teacher = as_pixel_space(model, processor, normalization, str(spec))
    else:
        model, processor = convert_checkpoint(spec, architecture, normalization)
        teacher = as_pixel_space(model, processor, None, str(spec))
    if stage_modules is not None and not isinstance(teacher, HookedClassifier):
        convention = teacher.describe() if isinstance(teacher, PixelSpaceClassifier) else "normalises inside the model"
        teacher = HookedClassifier(teacher, stage_modules, config=teacher.config, input_convention=convention)
    teacher.eval().requires_grad_(False)
    check_teacher(teacher, image_size or _probe_size(teacher.config), str(spec))
    return teacher


def teacher_provenance(teacher: nn.Module) -> dict[str, Any] | None:
    """Where a loaded teacher comes from, for run summaries and cards: a RobustBench entry's provenance (the entry,
    its checkpoint's sha256, RobustBench's model information; `zoo.build_zoo_model`), a converted folder's
    `config.converted_from`, and the hooked `stage_modules`; None when there is nothing to say."""
    source = dict(getattr(teacher, "provenance", None) or {})
    converted = getattr(getattr(teacher, "config", None), "converted_from", None)
    if converted:
        source["converted_from"] = converted
    if isinstance(teacher, HookedClassifier):
        source["stage_modules"] = list(teacher.stage_modules)
    return source or None
