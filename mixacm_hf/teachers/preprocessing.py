"""An image processor's pixel-wise steps (resize, center crop, rescale, normalise) as one differentiable function of
pixels in [0, 1], so that a model wrapped with them sees what `processor(images)` would give it, and attacks stay in
the pixel space of the images they are given. A step that cannot be applied exactly is refused, by name, and the steps
read from a processor's settings are checked against the processor itself on a probe image (a processor whose code
does more than its settings say, e.g. another size rule or a channel flip, is refused too)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

# PIL's resampling codes (what processors store in `resample`) that torch interpolation reproduces
RESAMPLE = {0: InterpolationMode.NEAREST_EXACT, 2: InterpolationMode.BILINEAR, 3: InterpolationMode.BICUBIC}
# `do_*` switches that change no pixel of an RGB image (segmentation labels, RGB conversion)
NEUTRAL = {"do_convert_rgb", "do_reduce_labels"}
APPLIED = {"do_resize", "do_center_crop", "do_rescale", "do_normalize"}
PROBE_SIDE = 300  # the probe image's height, at least; its width is 60 more (a non-square photo's shape)


@dataclass(frozen=True)
class PixelSteps:
    """What a processor does to an image, in order: resize (`size`: (height, width), or an int for the shortest
    edge; `crop_pct` as ConvNeXt's processor uses it), center crop to `crop` (height, width), then
    `pixels * scale + offset` (pixels in [0, 1]; `processor(images)` sees 0..255 and rescales by its factor), then
    `(. - mean) / std`."""

    size: tuple[int, int] | int | None = None
    resample: int = 2
    crop_pct: float | None = None
    crop: tuple[int, int] | None = None
    scale: float = 1.0
    offset: float = 0.0
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)

    def describe(self) -> list[str]:
        """The steps in words, for reports ("resize to 224x224 (bilinear)", ...); empty when none changes a pixel."""
        steps = []
        mode = RESAMPLE[self.resample].value
        if isinstance(self.size, int):
            crop = f", crop_pct {self.crop_pct}" if self.crop_pct is not None else ""
            steps.append(f"resize shortest edge to {self.size} ({mode}{crop})")
        elif self.size is not None:
            steps.append(f"resize to {self.size[0]}x{self.size[1]} ({mode})")
        if self.crop is not None:
            steps.append(f"center crop {self.crop[0]}x{self.crop[1]}")
        if steps and self.output_size() is not None:
            steps[-1] += f" (inputs of {self.output_size()[0]}x{self.output_size()[1]} as they are)"
        if self.scale != 1 or self.offset != 0:
            steps.append(f"pixels x {self.scale:g} + {self.offset:g}")
        if any(m != 0 for m in self.mean) or any(s != 1 for s in self.std):
            steps.append(f"(pixels - {[round(m, 6) for m in self.mean]}) / {[round(s, 6) for s in self.std]}")
        return steps

    def output_size(self) -> tuple[int, int] | None:
        """The (height, width) the processor's geometric steps end at, when fixed (a crop, or a height/width resize,
        or ConvNeXt's crop_pct rule); None when it depends on the input (a shortest-edge resize) or there is none."""
        if self.crop is not None:
            return self.crop
        if isinstance(self.size, int):
            return (self.size, self.size) if self.crop_pct is not None else None
        return self.size

    def resized(self, pixels: torch.Tensor) -> torch.Tensor:
        """Resize and center crop (B, C, H, W) pixels as the processor does. Pixels already at the size the steps
        end at (`output_size`: e.g. a dataset pipeline's 224-px crop for a resize-256-crop-224 processor) are the
        model's view already and pass unchanged."""
        height, width = pixels.shape[-2:]
        if self.output_size() == (height, width):
            return pixels
        size, crop = self.size, self.crop
        if isinstance(size, int):
            if self.crop_pct is not None and size >= 384:  # ConvNeXt warps large sizes
                size = (size, size)
            else:
                if self.crop_pct is not None:  # ConvNeXt: shortest edge to size / crop_pct, then crop to size
                    size, crop = int(size / self.crop_pct), (size, size)
                short, long = sorted((height, width))
                other = int(size * long / short)
                size = (size, other) if height <= width else (other, size)
        if size is not None and tuple(size) != (height, width):
            pixels = TF.resize(pixels, list(size), interpolation=RESAMPLE[self.resample], antialias=True)
            pixels = pixels.clamp(0, 1)  # bicubic overshoots; the processor's 8-bit images are clipped
        if crop is not None and tuple(crop) != tuple(pixels.shape[-2:]):
            if crop[0] > pixels.shape[-2] or crop[1] > pixels.shape[-1]:
                raise ValueError(
                    f"The image processor center-crops {crop[0]}x{crop[1]} from {tuple(pixels.shape[-2:])} images: "
                    "a crop larger than the image pads it, which the wrapped model does not reproduce. Pass images of "
                    "at least the crop size."
                )
            top, left = (pixels.shape[-2] - crop[0]) // 2, (pixels.shape[-1] - crop[1]) // 2  # as transformers crops
            pixels = pixels[..., top : top + crop[0], left : left + crop[1]]
        return pixels

    def transform(self, pixels: torch.Tensor) -> torch.Tensor:
        """Every step on (B, C, H, W) pixels in [0, 1]: what the model is given."""
        pixels = self.resized(pixels) * self.scale + self.offset
        mean = torch.tensor(self.mean, dtype=pixels.dtype, device=pixels.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=pixels.dtype, device=pixels.device).view(1, -1, 1, 1)
        return (pixels - mean) / std


def _probe_image(steps: PixelSteps) -> torch.Tensor:
    """A smooth, non-square (1, 3, H, W) uint8 image larger than the steps' sizes (like a photo: 8-bit rounding and
    interpolation differ little on it, a different geometry or channel order a lot)."""
    sizes = [steps.size] if isinstance(steps.size, int) else list(steps.size or ())
    side = max([PROBE_SIDE, *sizes, *(steps.crop or ())]) + 7
    coarse = torch.randint(0, 256, (1, 3, 6, 7), generator=torch.Generator().manual_seed(0)).float()
    return F.interpolate(coarse, size=(side, side + 60), mode="bilinear").round().to(torch.uint8)


def check_steps(processor: Any, steps: PixelSteps, name: str) -> None:
    """Check that `steps` give what `processor(images)` gives on a probe image, to within one 8-bit step on average
    (the processor rounds to 8 bits after resizing; the wrapper interpolates in float).

    Raises:
        ValueError: the processor fails on the probe, returns no (1, 3, H, W) pixel values, or gives other values or
            another shape than `steps`: it does something its settings do not say (naming the class and the steps).
    """
    image = _probe_image(steps)
    described = "; ".join(steps.describe()) or "nothing"
    refusal = (
        f"The image processor of {name!r} ({type(processor).__name__}) does not give what the steps read from its "
        f"settings give ({described})"
    )
    why = "it does something else (another size rule, a channel flip, a second normalisation, ...), which"
    ending = (
        "the evaluator and the teacher wrapper cannot apply inside a differentiable forward: refusing rather than "
        "using another input than the model's."
    )
    try:
        expected = processor([image[0]], return_tensors="pt")["pixel_values"]
        given = steps.transform(image.float() / 255)
    except Exception as error:  # a processor's own failure, or a crop the wrapper cannot apply
        raise ValueError(f"{refusal}: on a probe image {type(error).__name__}: {error}; {ending}") from error
    if not isinstance(expected, torch.Tensor) or expected.shape != given.shape:
        shape = tuple(expected.shape) if isinstance(expected, torch.Tensor) else type(expected).__name__
        raise ValueError(f"{refusal}: on a probe image it gives {shape}, they {tuple(given.shape)}: {why} {ending}")
    unit = steps.scale / 255 / min(abs(s) for s in steps.std)  # one 8-bit step, in the model's units
    difference = ((given - expected.float()).abs().mean() / unit).item()
    if not difference <= 1:
        raise ValueError(
            f"{refusal}: on a probe image they differ by {difference:.1f} 8-bit steps on average: {why} {ending}"
        )


def _size(value: Any) -> dict[str, int]:
    """A processor's size dict with only the keys set (SizeDicts list every key, unset ones None)."""
    items = dict(value.items() if hasattr(value, "items") else vars(value))
    return {key: int(number) for key, number in items.items() if number is not None}


def pixel_steps(processor: Any, normalization: tuple[Sequence[float], Sequence[float]] | None, name: str) -> PixelSteps:
    """The pixel-wise steps of an image `processor` (`transformers` image processor) as `PixelSteps`, checked against
    the processor on a probe image (`check_steps`); `normalization` (mean, std), when given, replaces the processor's
    own.

    Raises:
        ValueError: naming the step, when the processor does something the wrapper cannot reproduce exactly
            (padding, a resampling filter other than nearest/bilinear/bicubic, a size rule other than height/width
            or shortest edge, a per-image normalisation, steps its code has and its settings do not say).
            Evaluate or distil from the model through its own pipeline instead.
    """
    config = processor.to_dict() if hasattr(processor, "to_dict") else dict(vars(processor))
    unknown = sorted(key for key, on in config.items() if key.startswith("do_") and on and key not in APPLIED | NEUTRAL)
    if unknown:
        raise ValueError(
            f"The image processor of {name!r} ({type(processor).__name__}) applies {', '.join(unknown)}, which the "
            "evaluator and the teacher wrapper cannot apply inside a differentiable forward: refusing rather than "
            "skipping it (the accuracy would be of another input than the model's)."
        )
    steps: dict[str, Any] = {}
    if config.get("do_resize"):
        size = _size(config.get("size") or {})
        resample = int(config.get("resample", 2))
        rule = set(size) in ({"height", "width"}, {"shortest_edge"})
        if resample not in RESAMPLE or not rule:
            raise ValueError(
                f"The image processor of {name!r} resizes with size={size} and resample={resample}; only "
                "{'height', 'width'} or {'shortest_edge'} sizes with nearest (0), bilinear (2) or bicubic (3) "
                "resampling can be applied inside the model: refusing its resize step."
            )
        steps["size"] = size["shortest_edge"] if "shortest_edge" in size else (size["height"], size["width"])
        steps["resample"] = resample
        if config.get("crop_pct") is not None and "shortest_edge" in size:
            steps["crop_pct"] = float(config["crop_pct"])
    if config.get("do_center_crop"):
        crop = _size(config.get("crop_size") or {})
        if set(crop) != {"height", "width"}:
            raise ValueError(f"The image processor of {name!r} center-crops with crop_size={crop}: refusing it.")
        steps["crop"] = (crop["height"], crop["width"])
    factor = float(config.get("rescale_factor", 1 / 255)) if config.get("do_rescale", True) else 1.0
    steps["scale"] = 255 * factor  # processor(images) sees 0..255 values
    steps["offset"] = -1.0 if config.get("do_rescale", True) and config.get("rescale_offset") else 0.0
    if config.get("do_normalize"):
        if config.get("image_mean") is None or config.get("image_std") is None:
            raise ValueError(
                f"The image processor of {name!r} ({type(processor).__name__}) has do_normalize without image_mean "
                "and image_std (a per-image normalisation): refusing its normalize step, which the evaluator and the "
                "teacher wrapper cannot apply inside a differentiable forward."
            )
        steps["mean"], steps["std"] = tuple(config["image_mean"]), tuple(config["image_std"])
    read = PixelSteps(**steps)
    check_steps(processor, read, name)
    return read if normalization is None else replace(read, mean=tuple(normalization[0]), std=tuple(normalization[1]))
