"""Image datasets for MixACM: loading (local folders or Hub ids, map-style or streaming), transforms, collation.

Every example comes out as `pixel_values` (float32 (3, H, W) in [0, 1]) and `labels` (int).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import datasets
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import v2
from tqdm.auto import tqdm

IMAGE_COLUMNS = ("img", "image", "pixel_values")
LABEL_COLUMNS = ("label", "labels", "fine_label")
CIFAR_IMAGE_SIZE = 32
CIFAR_CROP_PADDING = 4


def resolve_columns(
    column_names: Sequence[str], image_column: str | None = None, label_column: str | None = None
) -> tuple[str, str]:
    """Find the image and label columns (img|image|pixel_values, label|labels|fine_label) or check the given ones."""
    resolved = []
    for kind, given, candidates, flag in (
        ("image", image_column, IMAGE_COLUMNS, "image_column"),
        ("label", label_column, LABEL_COLUMNS, "label_column"),
    ):
        if given is not None:
            if given not in column_names:
                raise ValueError(
                    f"{flag}={given!r} is not a column of the dataset; its columns are {list(column_names)}."
                )
            resolved.append(given)
            continue
        found = next((c for c in candidates if c in column_names), None)
        if found is None:
            raise ValueError(
                f"Could not find the {kind} column: the dataset has columns {list(column_names)}, none of "
                f"{list(candidates)}. Pass `{flag}=<name>` (--{flag} on the command line)."
            )
        resolved.append(found)
    return resolved[0], resolved[1]


def image_transform(train: bool, image_size: int = CIFAR_IMAGE_SIZE) -> Callable[[Image.Image], torch.Tensor]:
    """PIL image (any mode) -> float tensor (3, image_size, image_size) in [0, 1].

    CIFAR-sized (<= 32): train = random crop with 4-px padding + horizontal flip, eval = resize only if needed.
    Larger (ImageNet-style): train = RandomResizedCrop + flip, eval = resize to size/0.875 + center crop.
    """
    to_tensor = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    if image_size <= CIFAR_IMAGE_SIZE:
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
        return pipeline(image.convert("RGB"))

    return transform


def example_transform(
    image_column: str, label_column: str, train: bool, image_size: int = CIFAR_IMAGE_SIZE
) -> Callable[[dict[str, list[Any]]], dict[str, list[Any]]]:
    """Batched transform for `Dataset.set_transform`: {image_column, label_column} -> {pixel_values, labels}."""
    to_pixels = image_transform(train, image_size)

    def transform(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        return {
            "pixel_values": [to_pixels(image) for image in batch[image_column]],
            "labels": list(batch[label_column]),
        }

    return transform


def load_image_dataset(
    path: str,
    split: str = "train",
    streaming: bool = False,
    train: bool | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    image_size: int = CIFAR_IMAGE_SIZE,
    max_samples: int | None = None,
    shuffle_buffer_size: int = 10_000,
    seed: int = 0,
    name: str | None = None,
    revision: str | None = None,
    in_memory: bool = False,
) -> datasets.Dataset | datasets.IterableDataset | InMemoryImageDataset:
    """Load a local folder (parquet layout, imagefolder) or a Hub id, with transforms yielding pixel_values/labels.

    `train` (default: split == "train") picks augmentation. Streaming datasets are shuffled with a buffer and
    sharded per process when torch.distributed is initialised. `in_memory` decodes the images once and augments
    whole batches (`InMemoryImageDataset`; CIFAR-sized images of a map-style dataset).
    """
    train = split == "train" if train is None else train
    if in_memory and (streaming or image_size > CIFAR_IMAGE_SIZE):
        raise ValueError(
            f"in_memory_images is for map-style datasets of CIFAR-sized images (<= {CIFAR_IMAGE_SIZE} px), got "
            f"streaming={streaming}, image_size={image_size}: drop --in_memory_images (per-image transforms)."
        )
    dataset = datasets.load_dataset(path, name, split=split, streaming=streaming, revision=revision)
    features = dataset.features or {}
    image_column, label_column = resolve_columns(list(features) or dataset.column_names, image_column, label_column)
    if not streaming and max_samples is not None:
        dataset = dataset.select(range(min(max_samples, len(dataset))))
    if in_memory:
        return InMemoryImageDataset(dataset, image_column, label_column, train, image_size)
    transform = example_transform(image_column, label_column, train, image_size)
    if streaming:
        return _prepare_stream(dataset, transform, train, max_samples, shuffle_buffer_size, seed)
    dataset.set_transform(transform)
    return dataset


class InMemoryImageDataset(torch.utils.data.Dataset):
    """A map-style dataset of small images decoded once into memory (uint8 (N, 3, H, W): 150 MB for CIFAR-10's
    training set), each batch converted and augmented as one tensor (`__getitems__`, which DataLoader calls with a
    batch's indices): the same random crop with 4-px zero padding + horizontal flip as `image_transform`, at a
    fraction of the per-image PIL pipeline's cost, so no dataloader worker needs to compete for a small CPU's cores.

    Examples are {"pixel_values": float (3, H, W) in [0, 1], "labels": int}, as from `load_image_dataset`.
    """

    def __init__(
        self,
        dataset: datasets.Dataset,
        image_column: str,
        label_column: str,
        train: bool,
        image_size: int = CIFAR_IMAGE_SIZE,
        decode_batch_size: int = 1000,
    ):
        self.train = train
        self.images = torch.empty(len(dataset), 3, image_size, image_size, dtype=torch.uint8)
        labels = []
        for start in tqdm(range(0, len(dataset), decode_batch_size), desc="Decoding images into memory"):
            batch = dataset[start : start + decode_batch_size]
            pixels = np.stack([_rgb_array(image, image_size) for image in batch[image_column]])
            self.images[start : start + len(pixels)] = torch.from_numpy(pixels).permute(0, 3, 1, 2)
            labels += batch[label_column]
        self.labels = torch.tensor(labels, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        index = torch.as_tensor(indices, dtype=torch.long)
        images = self.images[index]
        if self.train:
            images = random_crop_flip(images, CIFAR_CROP_PADDING)
        pixel_values = images.float().mul_(1.0 / 255)  # as torchvision.transforms.v2.ToDtype(scale=True)
        return [
            {"pixel_values": pixels, "labels": int(label)} for pixels, label in zip(pixel_values, self.labels[index])
        ]


def _rgb_array(image: Image.Image, image_size: int) -> np.ndarray:
    """PIL image (any mode, any size) -> uint8 (image_size, image_size, 3), resized like `image_transform`."""
    image = image.convert("RGB")
    if image.size != (image_size, image_size):
        image = v2.functional.resize(image, [image_size, image_size])
    return np.asarray(image)


def random_crop_flip(images: torch.Tensor, padding: int) -> torch.Tensor:
    """Batched `RandomCrop(size, padding)` + `RandomHorizontalFlip()` on (B, C, H, W): for every image its own
    crop offsets of the zero-padded image (uniform in [0, 2 padding]) and its own coin flip (global torch RNG)."""
    batch, _, height, width = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    top = torch.randint(0, 2 * padding + 1, (batch, 1, 1, 1))
    left = torch.randint(0, 2 * padding + 1, (batch, 1, 1, 1))
    flip = torch.rand(batch, 1, 1, 1) < 0.5
    columns = torch.arange(width).view(1, 1, 1, width)
    columns = torch.where(flip, width - 1 - columns, columns)  # a flipped crop reads its columns backwards
    rows = torch.arange(height).view(1, 1, height, 1)
    samples = torch.arange(batch).view(batch, 1, 1, 1)
    channels = torch.arange(images.shape[1]).view(1, -1, 1, 1)
    return padded[samples, channels, top + rows, left + columns]


def _prepare_stream(
    dataset: datasets.IterableDataset,
    transform: Callable[[dict[str, list[Any]]], dict[str, list[Any]]],
    train: bool,
    max_samples: int | None,
    shuffle_buffer_size: int,
    seed: int,
) -> datasets.IterableDataset:
    if max_samples is not None:
        dataset = dataset.take(max_samples)
    if train:
        dataset = dataset.shuffle(seed=seed, buffer_size=shuffle_buffer_size)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        dataset = split_stream(dataset, torch.distributed.get_rank(), torch.distributed.get_world_size())
    columns = list(dataset.features or {}) or None
    return dataset.map(transform, batched=True, batch_size=64, remove_columns=columns)


def split_stream(dataset: datasets.IterableDataset, rank: int, world_size: int) -> datasets.IterableDataset:
    """Process `rank`'s part of a stream read by `world_size` processes, disjoint from the others' and shuffled alike.

    `split_dataset_by_node`: whole shards (files) per process when their count is a multiple of `world_size`, else
    every `world_size`-th example. A stream that is already split is returned unchanged.
    """
    if world_size == 1 or dataset._distributed is not None:
        return dataset
    from datasets.distributed import split_dataset_by_node

    return split_dataset_by_node(dataset, rank=rank, world_size=world_size)


class EndlessStream(torch.utils.data.IterableDataset):
    """Pass after pass over a `datasets` stream, each pass reshuffled (`set_epoch`): training runs for `max_steps`.

    Processes reading parts of different lengths then never run out at different steps, which would desynchronise
    their collective operations (DDP's gradient all-reduce, the Trainer's gathers) and hang or crash the run.
    """

    def __init__(self, dataset: datasets.IterableDataset):
        self.dataset = dataset
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for epoch in itertools.count(self.epoch):
            self.dataset.set_epoch(epoch)
            empty = True
            for example in self.dataset:
                empty = False
                yield example
            if empty:  # nothing to read (e.g. a dataloader worker without shards): stop instead of spinning
                return


def class_names(
    dataset: datasets.Dataset | datasets.IterableDataset, label_column: str | None = None
) -> list[str] | None:
    """Class names from a ClassLabel feature, if the dataset has one."""
    features = dataset.features or {}
    column = label_column or next((c for c in LABEL_COLUMNS if c in features), None)
    feature = features.get(column) if column else None
    return list(feature.names) if isinstance(feature, datasets.ClassLabel) else None


def collate_image_batch(examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack examples into {"pixel_values": (B, 3, H, W) float, "labels": (B,) long}."""
    pixel_values = torch.stack([torch.as_tensor(example["pixel_values"]) for example in examples])
    labels = torch.as_tensor([int(example["labels"]) for example in examples], dtype=torch.long)
    return {"pixel_values": pixel_values, "labels": labels}
