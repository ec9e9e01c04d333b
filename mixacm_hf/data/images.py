"""Image conversion for MixACM's pipelines: decoding by bit depth (`decode_image`, `image_to_pixels`), reading stored
images with errors that name the row (`read_image`), the per-image and batched augmentations, seeded generators."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import datasets
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import v2

SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
EIGHT_BIT_MODES = ("1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")
CIFAR_IMAGE_SIZE = 32
CIFAR_CROP_PADDING = 4


def decode_image(image: Image.Image) -> Image.Image | torch.Tensor:
    """Convert by bit depth: 8-bit modes -> a PIL RGB image (values / 255 once converted); 16-bit grayscale modes
    (I;16*) -> float (3, H, W) in [0, 1] (values / 65535, the gray level repeated in R, G, B).

    Raises:
        ValueError: modes without a fixed range (I: 32-bit integer, F: 32-bit float, and any other), naming the mode;
            `convert("RGB")` would clip them at 255 and silently give (mostly) white images.
    """
    if image.mode in EIGHT_BIT_MODES:
        return image.convert("RGB")
    if image.mode in SIXTEEN_BIT_MODES:
        gray = torch.from_numpy(np.asarray(image).astype(np.float32) / 65535)
        return gray.unsqueeze(0).expand(3, -1, -1).contiguous()
    raise ValueError(
        f"Image mode {image.mode!r} is not supported: its values have no fixed range, so they cannot be scaled to "
        f"[0, 1] without guessing. Convert the images to 8-bit (L, RGB) or 16-bit grayscale (I;16) first."
    )


def image_to_pixels(image: Image.Image) -> torch.Tensor:
    """PIL image -> float32 (3, H, W) in [0, 1] without resizing, by bit depth (`decode_image`; raises as it does).

    The one conversion of every pipeline: evaluation, per-image and in-memory training, streaming.
    """
    decoded = decode_image(image)
    if isinstance(decoded, torch.Tensor):
        return decoded
    return torch.from_numpy(np.array(decoded, dtype=np.uint8)).permute(2, 0, 1).float().div(255)


def image_transform(train: bool, image_size: int | None = CIFAR_IMAGE_SIZE) -> Callable[[Image.Image], torch.Tensor]:
    """PIL image -> float tensor (3, image_size, image_size) in [0, 1], converted by bit depth (`decode_image`).

    CIFAR-sized (<= 32): train = random crop with 4-px padding + horizontal flip, eval = resize only if needed.
    Larger (ImageNet-style): train = RandomResizedCrop + flip, eval = resize to size/0.875 + center crop.
    `image_size` None (evaluation only): the image at its own size.
    """
    to_tensor = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    if image_size is None:
        if train:
            raise ValueError("image_size=None keeps images at their own size, for evaluation only: give a size.")
        steps = []
    elif image_size <= CIFAR_IMAGE_SIZE:
        if train:
            steps = [
                v2.Resize((image_size, image_size)),
                v2.RandomCrop(image_size, padding=CIFAR_CROP_PADDING),
                v2.RandomHorizontalFlip(),
            ]
        else:
            steps = [v2.Resize((image_size, image_size))]
    elif train:
        steps = [v2.RandomResizedCrop(image_size, antialias=True), v2.RandomHorizontalFlip()]
    else:
        steps = [v2.Resize(int(round(image_size / 0.875)), antialias=True), v2.CenterCrop(image_size)]
    pipeline = v2.Compose(steps + to_tensor)

    def transform(image: Image.Image) -> torch.Tensor:
        return pipeline(decode_image(image))

    return transform


def seeded_generator(*key: int) -> torch.Generator:
    """A CPU `torch.Generator` seeded from a hash of integers (e.g. seed, epoch, rows or seed, step, rank): the same
    key gives the same draws in any process, so the randomness of a step does not depend on what ran before it."""
    digest = hashlib.blake2b(np.asarray(key, dtype=np.int64).tobytes(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))


def read_image(
    value: Image.Image | dict[str, Any], convert: Callable[[Image.Image], Any], split: str, row: int | None = None
) -> Any:
    """`convert` applied to a stored image (a PIL image, or the {"bytes", "path"} of an undecoded `datasets.Image`)
    decoded in full.

    Raises:
        ValueError: the image cannot be decoded (truncated, not an image) or converted (`decode_image`'s modes),
            naming the split and row.
    """
    try:
        image = value if isinstance(value, Image.Image) else datasets.Image().decode_example(value)
        image.load()
        return convert(image)
    except (OSError, SyntaxError, ValueError) as error:  # PIL's errors for truncated data / unknown formats
        raise ValueError(
            f"Cannot read the image of {_where(split, row)}: {error} Replace or remove it, or pass "
            "--skip_bad_images true (skip_bad_images=True) to leave such rows out with a warning and a count."
        ) from error


def _where(split: str, row: int | None) -> str:
    return f"row {row} of the {split!r} split" if row is not None else f"an example of the {split!r} split"


def is_readable_image(value: Any) -> bool:
    """Whether `value` (a `datasets` image cell, PIL image, array or path) decodes as an image."""
    try:
        read_image(value, decode_image, "")
    except ValueError:
        return False
    return True


def rgb_array(image: Image.Image, image_size: int) -> np.ndarray:
    """PIL image (any size) -> uint8 (image_size, image_size, 3), converted by bit depth (`decode_image`; 16-bit
    images are rounded to 8 bits) and resized like `image_transform`."""
    decoded = decode_image(image)
    if image.size != (image_size, image_size):
        decoded = v2.functional.resize(decoded, [image_size, image_size])
    if isinstance(decoded, torch.Tensor):
        return decoded.mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return np.asarray(decoded)


def random_crop_flip(images: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Batched `RandomCrop(size, padding)` + `RandomHorizontalFlip()` on (B, C, H, W): for every image its own
    crop offsets of the zero-padded image (uniform in [0, 2 padding]) and its own coin flip (from `generator`, a CPU
    generator; default: the global torch RNG)."""
    batch, _, height, width = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    top = torch.randint(0, 2 * padding + 1, (batch, 1, 1, 1), generator=generator)
    left = torch.randint(0, 2 * padding + 1, (batch, 1, 1, 1), generator=generator)
    flip = torch.rand(batch, 1, 1, 1, generator=generator) < 0.5
    columns = torch.arange(width).view(1, 1, 1, width)
    columns = torch.where(flip, width - 1 - columns, columns)  # a flipped crop reads its columns backwards
    rows = torch.arange(height).view(1, 1, height, 1)
    samples = torch.arange(batch).view(batch, 1, 1, 1)
    channels = torch.arange(images.shape[1]).view(1, -1, 1, 1)
    return padded[samples, channels, top + rows, left + columns]
