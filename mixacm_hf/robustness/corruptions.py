"""Common corruptions (CIFAR-10-C's 15 corruptions at severities 1-5) as an evaluation: the images read from files in
the published CIFAR-10-C layout, or generated from the evaluated images with the `imagecorruptions` package, and
their accuracies summarised (mean, per corruption, per severity).

The published layout (Hendrycks & Dietterich, 2019): a folder with `<corruption>.npy`, uint8 (5 N, H, W, 3) = the
5 severities one after the other, each the same N test images in split order (N = 10,000 for CIFAR-10-C), and
`labels.npy` (5 N labels, or N). N is taken from the files, so a smaller folder in the same layout is read alike:
severity s is rows [(s - 1) N, s N). Generated corruptions use imagecorruptions' parameters, those of ImageNet-C
(Michaelis et al., 2019), not Hendrycks' CIFAR-specific ones: they are recorded as generated and are not comparable
with published CIFAR-10-C results.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..files import file_sha256

CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)  # fmt: skip
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
LABELS_FILE = "labels.npy"
MIN_SIZE = 32  # imagecorruptions refuses smaller images
GENERATED_NOTE = (
    "generated with imagecorruptions (its ImageNet-C parameters, not Hendrycks' CIFAR-10-C ones): not comparable "
    "with published CIFAR-10-C results"
)
PUBLISHED_NOTE = (
    "read from a folder in the published CIFAR-10-C layout; the layout does not prove them the published files: "
    "compare their sha256 with your copy of the release"
)
ADAPTED_NOTE = (
    "imagecorruptions' code adapted where numpy >= 2 and scikit-image >= 0.19 lack what it uses (np.float_ as "
    "float64, gaussian's multichannel as channel_axis), its impulse noise seeded from numpy's global state; its "
    "parameters unchanged"
)
FROST_NOTE = (
    "a random crop of one of imagecorruptions' frost photographs (315-600 px tall) enlarged 1.1x, so at 32 px its "
    "texture is much coarser than CIFAR-10-C's (which shrank the photographs to 0.2 first)"
)


@dataclass(frozen=True)
class CorruptionsFolder:
    """A checked folder in the published layout: its path, `images` per severity (N) and image size (H, W)."""

    path: str
    images: int
    size: tuple[int, int]

    def pixels(self, corruption: str, severity: int, n: int) -> torch.Tensor:
        """The first `n` images of `corruption` at `severity` (rows (severity - 1) N ...), float (n, 3, H, W) in
        [0, 1]."""
        rows = np.load(Path(self.path) / f"{corruption}.npy", mmap_mode="r")
        start = (severity - 1) * self.images
        block = np.array(rows[start : start + n])  # a copy: the memory map is read-only
        return torch.from_numpy(block).permute(0, 3, 1, 2).float().div(255)

    def checksums(self, corruptions: Sequence[str]) -> dict[str, str]:
        """sha256 of the files read for `corruptions` and of the labels, by file name: what identifies the images (a
        folder in the published layout may hold any images)."""
        checksums = {}
        for name in (*(f"{c}.npy" for c in corruptions), LABELS_FILE):
            checksums[name] = file_sha256(Path(self.path) / name)
        return checksums

    def labels(self, n: int, severity: int = 1) -> np.ndarray:
        """The labels of the first `n` images of `severity` (labels.npy's rows of that severity when it has 5 N)."""
        labels = np.load(Path(self.path) / LABELS_FILE, mmap_mode="r")
        start = (severity - 1) * self.images if len(labels) == 5 * self.images else 0
        return np.asarray(labels[start : start + n]).astype(np.int64)


def _mapped(path: Path, name: str, label: str) -> np.ndarray:
    """`name` of the folder `path`, memory-mapped.

    Raises:
        ValueError: naming `label`, the folder and the file, when it is not a readable .npy array of numbers.
    """
    try:
        return np.load(path / name, mmap_mode="r")
    except (ValueError, OSError, EOFError) as error:
        pickled = "pickle" in str(error) or "Python objects" in str(error)  # numpy's advice to unpickle does not apply
        raise ValueError(
            f"{label} {path}: {name} is not a readable .npy array of numbers "
            f"({'it holds pickled objects' if pickled else error}); the CIFAR-10-C layout's files are arrays written "
            "by numpy.save: replace it with the published file."
        ) from error


def check_corruption_names(names: Sequence[str]) -> tuple[str, ...]:
    """The names, checked against the 15 corruptions.

    Raises:
        ValueError: naming the unknown ones and the valid names.
    """
    unknown = [name for name in names if name not in CORRUPTIONS]
    if unknown or not names:
        raise ValueError(f"Unknown corruption {', '.join(unknown) or '(none)'}: use {', '.join(CORRUPTIONS)}.")
    return tuple(dict.fromkeys(names))


def check_corruptions_folder(
    folder: str | Path, corruptions: Sequence[str], n: int, label: str = "corruptions_dir"
) -> CorruptionsFolder:
    """Check a folder in the published layout (module docstring) for `n` images of each of `corruptions`, from
    the files' headers alone (memory-mapped: nothing is read into memory).

    Raises:
        ValueError: naming `label` (the argument or flag that gave the folder), when the folder is missing, a file
            is missing or no readable .npy array, a file is not uint8 (5 N, H, W, 3) with the same N, H, W as the
            others, labels.npy holds neither 5 N nor N integer labels, or `n` exceeds N.
    """
    path = Path(folder)
    if not path.is_dir():
        raise ValueError(f"{label} {folder}: no such folder (it must hold <corruption>.npy files and {LABELS_FILE}).")
    missing = [name for name in (*(f"{c}.npy" for c in corruptions), LABELS_FILE) if not (path / name).is_file()]
    if missing:
        raise ValueError(
            f"{label} {folder} lacks {', '.join(missing)}: it must hold the CIFAR-10-C layout (<corruption>.npy, "
            f"{LABELS_FILE}); pass a complete folder, or leave {label} out to generate the corruptions."
        )
    shapes = {}
    for corruption in corruptions:
        array = _mapped(path, f"{corruption}.npy", label)
        if array.dtype != np.uint8 or array.ndim != 4 or array.shape[3] != 3 or array.shape[0] % 5 or not array.size:
            raise ValueError(
                f"{label} {folder}: {corruption}.npy is {array.dtype} {array.shape}; it must be uint8 (5 N, H, W, 3): "
                "5 severities of the same N images, in the CIFAR-10-C layout."
            )
        shapes[corruption] = array.shape
    if len(set(shapes.values())) > 1:
        found = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ValueError(f"{label} {folder}: the files differ in shape ({found}); each must hold the same images.")
    rows, height, width, _ = next(iter(shapes.values()))
    labels = _mapped(path, LABELS_FILE, label)
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) not in (rows, rows // 5):
        raise ValueError(
            f"{label} {folder}: {LABELS_FILE} is {labels.dtype} {labels.shape}; it must hold {rows} (or {rows // 5}) "
            "integer labels, one per row of the corruption files."
        )
    if n > rows // 5:
        raise ValueError(
            f"{label} {folder} holds {rows // 5} images per severity, fewer than the {n} to evaluate: evaluate at "
            f"most {rows // 5} images, or give a folder with all of them."
        )
    return CorruptionsFolder(str(path), rows // 5, (height, width))


def check_folder_matches(folder: CorruptionsFolder, x: torch.Tensor, labels: torch.Tensor, label: str) -> None:
    """The folder's images have the evaluated images' size and its labels are the evaluated labels, in order.

    Raises:
        ValueError: naming `label` and what differs.
    """
    if tuple(x.shape[2:]) != folder.size or x.shape[1] != 3:
        raise ValueError(
            f"{label} {folder.path}: its images are {folder.size[0]}x{folder.size[1]} RGB, the evaluated ones "
            f"{x.shape[2]}x{x.shape[3]} with {x.shape[1]} channels: evaluate at the files' image size."
        )
    for severity in SEVERITIES:  # labels.npy of 5 N rows: each severity's rows are the same images, in order
        theirs = torch.from_numpy(folder.labels(len(labels), severity))
        differ = int((theirs != labels.cpu()).sum())
        if differ:
            raise ValueError(
                f"{label} {folder.path}: {LABELS_FILE} differs from the evaluated split's labels on {differ} of the "
                f"first {len(labels)} images of severity {severity}: the files are not corruptions of this split's "
                "images in order."
            )


def check_corruptible(x: torch.Tensor) -> None:
    """imagecorruptions takes RGB (or grey) images of at least 32x32 pixels.

    Raises:
        ValueError: for smaller images or another number of channels.
    """
    if x.shape[1] not in (1, 3) or min(x.shape[2:]) < MIN_SIZE:
        raise ValueError(
            f"corruptions: imagecorruptions needs images of at least {MIN_SIZE}x{MIN_SIZE} pixels with 1 or 3 "
            f"channels; got {tuple(x.shape[1:])} (C, H, W)."
        )


def imagecorruptions_version() -> str:
    """The installed imagecorruptions version.

    Raises:
        ValueError: it is not installed (the message says how to install it, or to give a folder instead).
    """
    try:
        return version("imagecorruptions")
    except PackageNotFoundError as error:
        raise ValueError(
            "corruptions: generating them needs the imagecorruptions package (pip install 'mixacm-hf[corruptions]'); "
            "or give a folder of published CIFAR-10-C files (corruptions_dir)."
        ) from error


class _Namespace:
    """A module seen through some replaced attributes (for imagecorruptions' own references only)."""

    def __init__(self, module: Any, **replaced: Any):
        self._module = module
        self.__dict__.update(replaced)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


@functools.cache
def imagecorruptions_corrupt() -> Callable[..., np.ndarray]:
    """imagecorruptions' `corrupt`, its module's references adapted so that its 15 corruptions run on numpy >= 2 and
    scikit-image >= 0.19 and are reproducible from numpy's global seed (its parameters unchanged): `np.float_` (fog)
    is float64, `gaussian(multichannel=True)` (glass_blur) is `channel_axis=-1`, and `random_noise` (impulse_noise)
    draws its generator's seed from numpy's global random state instead of fresh entropy. Only the names inside
    `imagecorruptions.corruptions` are replaced; numpy and scikit-image themselves are untouched."""
    imagecorruptions_version()
    import skimage
    import skimage.util
    from imagecorruptions import corrupt
    from imagecorruptions import corruptions as module
    from skimage.filters import gaussian

    if not hasattr(np, "float_"):
        module.np = _Namespace(np, float_=np.float64)
    if "multichannel" not in inspect.signature(gaussian).parameters:

        def channel_gaussian(image: np.ndarray, *args: Any, multichannel: bool = False, **kwargs: Any) -> np.ndarray:
            return gaussian(image, *args, **({"channel_axis": -1} if multichannel else {}), **kwargs)

        module.gaussian = channel_gaussian
    seed_name = "rng" if "rng" in inspect.signature(skimage.util.random_noise).parameters else "seed"

    def seeded_noise(image: np.ndarray, *args: Any, **kwargs: Any) -> np.ndarray:
        return skimage.util.random_noise(image, *args, **{seed_name: np.random.randint(2**31)}, **kwargs)

    module.sk = _Namespace(skimage, util=_Namespace(skimage.util, random_noise=seeded_noise))
    return corrupt


def corrupt_batch(x: torch.Tensor, corruption: str, severity: int, seed: int) -> torch.Tensor:
    """`x` (B, C, H, W) in [0, 1] corrupted by imagecorruptions' `corruption` at `severity`, image by image (as uint8
    pixels, as the package takes them), float in [0, 1] on `x`'s device; numpy's global random state is seeded
    from (seed, corruption, severity) for the batch and restored afterwards (`imagecorruptions_corrupt`)."""
    corrupt = imagecorruptions_corrupt()
    pixels = (x.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    state = np.random.get_state()
    np.random.seed(np.random.SeedSequence([seed, CORRUPTIONS.index(corruption), severity]).generate_state(1)[0])
    try:
        corrupted = np.stack([corrupt(image, severity=severity, corruption_name=corruption) for image in pixels])
    finally:
        np.random.set_state(state)
    corrupted = corrupted[..., : x.shape[1]]  # grey images come back as 3 equal channels
    return torch.from_numpy(np.ascontiguousarray(corrupted)).permute(0, 3, 1, 2).float().div(255).to(x.device)


def benchmark_name(dataset: dict[str, Any], generated: bool) -> str:
    """The task id of a corruptions result: `<dataset>-c` for published files (`cifar10-c`), `<dataset>-c-generated`
    for imagecorruptions' images, the dataset named by the last part of its identity (`uoft-cs/cifar10` ->
    `cifar10`; a local copy's folder name)."""
    identity = (dataset.get("identity") or {}).get("type") or dataset.get("name") or "dataset"
    base = re.sub(r"-local-copy$", "", Path(str(identity)).name.lower())
    base = re.sub(r"[^a-z0-9]+", "-", base).strip("-") or "dataset"
    return f"{base}-c" + ("-generated" if generated else "")


def summarise(accuracies: dict[str, list[float]]) -> dict[str, Any]:
    """{"mean", "per_corruption", "per_severity", "accuracy"} of {corruption: [accuracy at each severity]}: the mean
    over every (corruption, severity), each corruption's mean over its severities, each severity's mean over the
    corruptions."""
    values = [value for row in accuracies.values() for value in row]
    columns = list(zip(*accuracies.values()))
    return {
        "mean": sum(values) / len(values),
        "per_corruption": {name: sum(row) / len(row) for name, row in accuracies.items()},
        "per_severity": {str(s): sum(column) / len(column) for s, column in zip(SEVERITIES, columns)},
        "accuracy": accuracies,
    }
