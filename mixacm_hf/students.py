"""Students: built or loaded (`load_student`, `new_student`) and put under the evaluator's input contract
(`student_input`, `apply_student_input`, `save_student_processor`; docs/design.md, section 4.1).

A student is trained on pixels in [0, 1] (mixup and attacks work there). Whatever its input convention is, it is read
once, as `as_pixel_space` reads it for the evaluator (the steps of the folder's image processor, timm's
`pretrained_cfg`, normalisation inside a WideResNet; raw pixels for a new non-timm model built from a config), applied
in the student's forward during training and the Trainer's evaluations, and saved as the folder's image processor, so
that the evaluator reading the saved folder and `pipeline("image-classification")` give the model the same input."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.hooks import RemovableHandle
from transformers import AutoConfig, AutoModelForImageClassification, PreTrainedModel, ViTImageProcessor

from .hub import PROCESSOR_NAME
from .models import WideResNetConfig, WideResNetForImageClassification
from .models.modeling_wide_resnet import image_processor_for
from .robustness.classifier import INSIDE
from .run_args import ModelArguments
from .teachers import (
    RAW_PIXELS,
    PixelSpaceClassifier,
    PixelSteps,
    as_pixel_space,
    image_processor_of,
    input_normalization,
    normalizes_inside,
)

logger = logging.getLogger(__name__)


def load_student(
    spec: str,
    num_labels: int,
    id2label: dict[int, str] | None = None,
    image_size: int = 32,
    dropout: float = 0.0,
    trust_remote_code: bool = False,
    from_config: bool = False,
) -> PreTrainedModel:
    """A new WideResNet from a preset name; a pretrained classifier from a folder / Hub id, or with `from_config` a
    new one (random weights, the dataset's labels, `image_size` for its config's) of the architecture in its config.

    Raises:
        ValueError: pretrained weights whose config's `image_size` is not `image_size`.
    """
    labels = {"id2label": id2label, "label2id": {v: k for k, v in id2label.items()}} if id2label else {}
    if Path(spec).is_dir() or not WideResNetConfig.is_name(spec):
        config = AutoConfig.from_pretrained(
            spec, trust_remote_code=trust_remote_code, **((labels or {"num_labels": num_labels}) if from_config else {})
        )
        size = getattr(config, "image_size", None)
        if from_config:
            if isinstance(size, int) and size != image_size:
                logger.info(
                    "--student %s: its config's image_size %d is set to --image_size %d.", spec, size, image_size
                )
                config.image_size = image_size
            return AutoModelForImageClassification.from_config(config, trust_remote_code=trust_remote_code)
        if isinstance(size, int) and size != image_size:
            raise ValueError(
                f"--student {spec} was trained on {size}x{size} images (its config's image_size), not --image_size "
                f"{image_size}: pass --image_size {size}, or --student_from_config true to train a new model of its "
                f"architecture at {image_size} px."
            )
        return AutoModelForImageClassification.from_pretrained(spec, trust_remote_code=trust_remote_code)
    config = WideResNetConfig.from_name(spec, num_labels=num_labels, image_size=image_size, dropout=dropout, **labels)
    return WideResNetForImageClassification(config)


def new_student(model_args: ModelArguments) -> bool:
    """Whether the student is built anew (a preset name, or `--student_from_config`), not loaded with weights."""
    spec = model_args.student
    return model_args.student_from_config or (not Path(spec).is_dir() and WideResNetConfig.is_name(spec))


@dataclass(frozen=True)
class StudentInput:
    """A student's input convention: `steps` (`PixelSteps`, normalisation included) turn the run's [0, 1] pixels
    into the model's input (None: the model takes them as they are, normalising inside if at all); `processor` is
    the image processor saved with the student, which does the same to an image (None for a timm student, whose
    config carries it); `description` says it in words, as evaluation reports' `model.input` do; `config_update`
    is set on the student's config (a timm student's `pretrained_cfg` at the run's image size: transformers builds
    a timm folder's processor from its config)."""

    steps: PixelSteps | None
    processor: Any | None
    description: str
    config_update: dict[str, Any] = field(default_factory=dict)


def student_input(
    model: PreTrainedModel, spec: str, image_size: int, pretrained: bool, trust_remote_code: bool = False
) -> StudentInput:
    """How `model` (the student `spec`, loaded with its weights when `pretrained`) takes the run's `image_size`-px
    [0, 1] pixels, read as the evaluator reads a folder (`as_pixel_space`): a pretrained model through the image
    processor saved with it (or timm's `pretrained_cfg`), a new model from a config on raw pixels (timm: its
    `pretrained_cfg` normalisation), a WideResNet normalising inside.

    Raises:
        ValueError: before any training, when the convention cannot be determined (a pretrained model without an
            image processor or timm config) or the processor has a step that cannot be applied in the forward.
    """
    if normalizes_inside(model):
        return StudentInput(None, image_processor_for(WideResNetConfig(image_size=image_size)), INSIDE)
    processor = image_processor_of(model, spec, trust_remote_code) if pretrained else None
    carried = input_normalization(model, None) is not None  # timm: its pretrained_cfg, as the evaluator reads it
    normalization = None if pretrained or carried else RAW_PIXELS
    if pretrained and input_normalization(model, processor) is None:
        has = (
            f"an image processor ({type(processor).__name__}) without do_normalize"
            if processor is not None
            else "no image processor (preprocessor_config.json)"
        )
        raise ValueError(
            f"Cannot tell how --student {spec} ({type(model).__name__}) expects its pixels: it does not normalise "
            f"inside and has {has} saying whether and how it normalises, so training and evaluating it on [0, 1] "
            "pixels could silently change its input. Save the image processor it was trained with in the folder "
            "(processor.save_pretrained(folder); one with do_normalize false for a model trained on raw [0, 1] "
            "pixels), or pass --student_from_config true to train a new model of its architecture on [0, 1] pixels."
        )
    try:
        wrapped = as_pixel_space(model, processor, normalization, spec)
    except ValueError as error:
        raise ValueError(f"--student {spec}: {error}") from error
    steps = wrapped.input_steps() if isinstance(wrapped, PixelSpaceClassifier) else PixelSteps()
    size = steps.output_size()
    if size is not None and size != (image_size, image_size):
        logger.warning(
            "--student %s: its image processor resizes the data's %d px images to %dx%d: it is trained and "
            "evaluated at that size, as pipeline() runs it.", spec, image_size, *size,
        )  # fmt: skip
    description = "wrapped: " + ("; ".join(steps.describe()) or "pixels in [0, 1] as they are")
    if carried:  # timm's processor comes from its config: resize to the run's size (none on its images), mean/std
        sized = {key: value for key, value in model.config.pretrained_cfg.items() if key != "test_input_size"}
        sized.update(input_size=(3, image_size, image_size), crop_pct=1.0, crop_mode="center")
        return StudentInput(steps if steps.describe() else None, None, description, {"pretrained_cfg": sized})
    if processor is None:  # one that does what the steps do, on images of the run's size
        normalizes = any(m != 0 for m in steps.mean) or any(s != 1 for s in steps.std)
        processor = ViTImageProcessor(
            do_resize=True, size={"height": image_size, "width": image_size}, do_rescale=True,
            rescale_factor=1 / 255, do_normalize=normalizes, image_mean=list(steps.mean), image_std=list(steps.std),
        )  # fmt: skip
    return StudentInput(steps if steps.describe() else None, processor, description)


def apply_student_input(model: PreTrainedModel, convention: StudentInput) -> RemovableHandle | None:
    """Make `model`'s forward apply `convention.steps` to its `pixel_values` (a forward pre-hook: the weights, their
    saving and the Trainer are unchanged), so training and the Trainer's evaluations give it the input the evaluator
    and `pipeline` give the saved folder, and set `convention.config_update` on its config. Returns the hook's
    handle (None when there is nothing to apply)."""
    for key, value in convention.config_update.items():
        setattr(model.config, key, value)
    steps = convention.steps
    if steps is None:
        return None

    def prepare(module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
        if "pixel_values" in kwargs:
            return args, {**kwargs, "pixel_values": steps.transform(kwargs["pixel_values"])}
        return (steps.transform(args[0]), *args[1:]), kwargs

    return model.register_forward_pre_hook(prepare, with_kwargs=True)


def save_student_processor(folder: str | Path, convention: StudentInput) -> Path | None:
    """Save the student's image processor in `folder` (replacing any there), so that `pipeline` on the folder feeds
    the model what training and evaluation fed it; returns the file's path. A student whose config carries its
    processor (timm) gets none, and any left in `folder` is removed."""
    if convention.processor is None:
        Path(folder, PROCESSOR_NAME).unlink(missing_ok=True)
        return None
    return Path(convention.processor.save_pretrained(folder)[0])
