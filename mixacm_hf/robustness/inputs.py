"""The evaluator's inputs: images of any common format checked and turned into pixels in [0, 1] before any attack."""

from __future__ import annotations

from typing import Any

import datasets
import numpy as np
import torch
from PIL import Image

from ..data import ROW_COLUMN, image_to_pixels, resolve_columns


def _as_tensor(value: Any) -> torch.Tensor:
    if isinstance(value, Image.Image):  # converted by bit depth (16-bit images too), float (3, H, W) in [0, 1]
        return image_to_pixels(value)
    return torch.as_tensor(value)


def check_pixels(images: Any, name: str = "images") -> torch.Tensor:
    """A batch of images as float32 (N, C, H, W) in [0, 1], C in {1, 3}.

    uint8 images are scaled by 1/255 and channels-last (N, H, W, C) batches are transposed; PIL images and lists of
    arrays are stacked first.

    Raises:
        ValueError: before any attack runs, naming dtype, shape and range, when the batch is not 4-D, has no channel
            axis of size 1 or 3, or holds values outside [0, 1] (e.g. 0..255 in a float or int64 tensor).
    """
    if isinstance(images, (list, tuple)):
        tensors = [_as_tensor(image) for image in images]
        sizes = sorted({tuple(tensor.shape) for tensor in tensors})
        if len(sizes) > 1:
            shown = ", ".join(map(str, sizes[:3])) + (", ..." if len(sizes) > 3 else "")
            raise ValueError(
                f"{name} come in {len(sizes)} shapes ({shown}): a batch needs one size. Give the image size to load "
                "the split at (image_size)."
            )
        images = torch.stack(tensors)
    x = _as_tensor(images)
    shape, dtype = tuple(x.shape), str(x.dtype).removeprefix("torch.")
    if x.dim() == 4 and x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
        x = x.permute(0, 3, 1, 2)
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        hint = (
            " A 3-D batch may be grayscale images without a channel axis (N, H, W): add one (x[:, None])."
            if x.dim() == 3 else ""
        )  # fmt: skip
        raise ValueError(
            f"{name} have shape {shape} ({dtype}); expected a batch (N, 3, H, W) or (N, H, W, 3) "
            f"(1 channel also accepted).{hint}"
        )
    x = x.float().div(255) if x.dtype == torch.uint8 else x.float()
    low, high = (float(x.min()), float(x.max())) if x.numel() else (0.0, 0.0)
    if not (0 <= low and high <= 1):
        raise ValueError(
            f"{name} ({dtype}, shape {shape}) hold values in [{low:g}, {high:g}]; the evaluator takes pixels in "
            f"[0, 1] (float) or 0..255 as uint8. {_range_advice(low, high)}"
        )
    return x.contiguous()


def _range_advice(low: float, high: float) -> str:
    """What to do with pixels outside [0, 1], from their range: 8-bit or 16-bit values, or normalised ones."""
    if low >= 0 and high <= 255:
        return "For 8-bit images divide by 255 (or pass uint8)."
    if low >= 0 and high <= 65535:
        return (
            "For 16-bit images divide by 65535 (or pass PIL images / a dataset folder, which are converted by bit "
            "depth)."
        )
    return "Undo the normalisation: normalising models are wrapped by the evaluator, so pass raw pixels."


def load_examples(
    dataset: datasets.Dataset | tuple[torch.Tensor, torch.Tensor], n_examples: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `n_examples` as tensors (pixel_values (N, 3, H, W) float32 in [0, 1], labels (N,) int64).

    Accepts a (pixel_values, labels) pair or a `datasets.Dataset` with columns img/image/pixel_values and
    label/labels, in any format (PIL images, `with_format("torch")` / `("numpy")` uint8 arrays, CHW or HWC;
    transforms set with `set_transform` apply). Images are checked by `check_pixels`; (N, H, W) rows (grayscale
    in numpy format) get their channel axis.

    Raises:
        ValueError: n_examples not in 1..len(dataset), or images `check_pixels` refuses.
    """
    size = len(dataset[1]) if isinstance(dataset, (tuple, list)) else len(dataset)
    n = size if n_examples is None else n_examples
    if not 1 <= n <= size:
        split = getattr(dataset, "split", None)
        raise ValueError(
            f"n_examples={n} but the {'split ' + str(split) if split else 'data'} has {size} examples: pass "
            f"1 <= n_examples <= {size}, or None for all."
        )
    if isinstance(dataset, (tuple, list)):
        images, labels = dataset[0][:n], dataset[1][:n]
    else:
        rows = dataset[:n]
        image_column, label_column = resolve_columns(list(rows))
        images, labels = rows[image_column], rows[label_column]
        if not isinstance(images, list) and len(images) == n and np.ndim(images) == 3:
            images = images[:, None]  # one image per row: (N, H, W) rows are grayscale images (numpy format)
    return check_pixels(images, "pixel values"), torch.as_tensor(np.asarray(labels)).long()


def example_indices(dataset: datasets.Dataset | tuple[torch.Tensor, torch.Tensor], n: int) -> list[int]:
    """The split rows of the first `n` examples: a dataset loaded by `load_image_dataset` carries them (`ROW_COLUMN`;
    rows left out with `skip_bad_images` keep their numbers out of the count), otherwise 0..n-1."""
    if isinstance(dataset, datasets.Dataset) and ROW_COLUMN in dataset.column_names:
        return [int(row) for row in dataset.with_format(None)[ROW_COLUMN][:n]]
    return list(range(n))


def load_split(path: str, split: str, image_size: int | None, revision: str | None = None) -> datasets.Dataset:
    """A split of a local dataset folder or Hub id, with eval transforms (pixel_values in [0, 1], labels); with
    `image_size` None the images keep their own size."""
    from ..data import load_image_dataset  # the training pipeline's loader, imported on use

    return load_image_dataset(path, split=split, train=False, image_size=image_size, revision=revision)
