"""Image datasets for MixACM: loading (local folders or Hub ids, map-style or streaming), transforms, collation.

Every example comes out as `pixel_values` (float32 (3, H, W) in [0, 1]) and `labels` (int).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import datasets
import torch
from PIL import Image
from torchvision.transforms import v2

IMAGE_COLUMNS = ("img", "image", "pixel_values")
LABEL_COLUMNS = ("label", "labels", "fine_label")
CIFAR_IMAGE_SIZE = 32


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
                v2.RandomCrop(image_size, padding=4),
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
) -> datasets.Dataset | datasets.IterableDataset:
    """Load a local folder (parquet layout, imagefolder) or a Hub id, with transforms yielding pixel_values/labels.

    `train` (default: split == "train") picks augmentation. Streaming datasets are shuffled with a buffer and
    sharded per process when torch.distributed is initialised.
    """
    train = split == "train" if train is None else train
    dataset = datasets.load_dataset(path, name, split=split, streaming=streaming, revision=revision)
    features = dataset.features or {}
    image_column, label_column = resolve_columns(list(features) or dataset.column_names, image_column, label_column)
    transform = example_transform(image_column, label_column, train, image_size)
    if streaming:
        return _prepare_stream(dataset, transform, train, max_samples, shuffle_buffer_size, seed)
    if max_samples is not None:
        dataset = dataset.select(range(min(max_samples, len(dataset))))
    dataset.set_transform(transform)
    return dataset


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
