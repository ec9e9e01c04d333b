"""Image datasets for MixACM: loading (local folders or Hub ids, map-style or streaming), per-example transforms,
label checks, the in-memory pipeline, class names and collation.

Every example comes out as `pixel_values` (float32 (3, H, W) in [0, 1]) and `labels` (int).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm

from .images import (
    CIFAR_CROP_PADDING,
    CIFAR_IMAGE_SIZE,
    image_transform,
    is_readable_image,
    random_crop_flip,
    read_image,
    rgb_array,
    seeded_generator,
)
from .labels import (
    check_label_feature,
    check_labels,
    class_balanced_holdout,
    class_balanced_prefix,
    label_order,
    model_class_names,
)
from .streams import prepare_stream

logger = logging.getLogger(__name__)

IMAGE_COLUMNS = ("img", "image", "pixel_values")
ROW_COLUMN = "__row__"  # a map-style split's row numbers, carried along so that errors can name the row
LABEL_COLUMNS = ("label", "labels", "fine_label")


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


class ExampleTransform:
    """Batched transform for `Dataset.set_transform`: {image_column, label_column} -> {pixel_values, labels}.

    Images may be PIL images or undecoded; errors (undecodable image, label outside [0, num_labels)) name the split
    and the row (from a `ROW_COLUMN` when the batch has one). With rows, a training batch's augmentations draw from
    the global torch RNG forked and seeded from `seeded_generator(seed, epoch, *rows)` (`set_epoch`, called by
    `MixACMTrainer` at each epoch), so they do not depend on what ran before (exact resume). `order` maps the
    dataset's labels to a model's (`label_order`); `names` are the class names of the labels it yields.
    """

    def __init__(
        self,
        image_column: str,
        label_column: str,
        train: bool,
        image_size: int = CIFAR_IMAGE_SIZE,
        split: str = "train",
        num_labels: int | None = None,
        seed: int = 0,
        order: Sequence[int] | None = None,
        names: Sequence[str] | None = None,
    ):
        self.image_column, self.label_column, self.train = image_column, label_column, train
        self.split, self.num_labels, self.seed, self.epoch = split, num_labels, seed, 0
        self.order, self.names = order, None if names is None else list(names)
        self.to_pixels = image_transform(train, image_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        labels = list(batch[self.label_column])
        rows = batch.get(ROW_COLUMN) or [None] * len(labels)
        check_labels(labels, self.num_labels, self.split, rows)
        labels = labels if self.order is None else [self.order[label] for label in labels]
        values = batch[self.image_column]
        if not (self.train and rows[0] is not None):
            return {"pixel_values": self._pixels(values, rows), "labels": labels}
        with torch.random.fork_rng(devices=[]):
            generator = seeded_generator(self.seed, self.epoch, *rows)
            torch.manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
            return {"pixel_values": self._pixels(values, rows), "labels": labels}

    def _pixels(self, values: list[Any], rows: list[int | None]) -> list[torch.Tensor]:
        return [read_image(value, self.to_pixels, self.split, row) for value, row in zip(values, rows)]


def epoch_setter(dataset: Any) -> Callable[[int], None] | None:
    """The `set_epoch` seeding a training dataset's augmentations (`InMemoryImageDataset`, or a `datasets.Dataset`
    with an `ExampleTransform`), or None for datasets without one."""
    if isinstance(dataset, InMemoryImageDataset):
        return dataset.set_epoch
    transform = (
        dataset.format.get("format_kwargs", {}).get("transform") if isinstance(dataset, datasets.Dataset) else None
    )
    return transform.set_epoch if isinstance(transform, ExampleTransform) else None


def load_image_dataset(
    path: str,
    split: str = "train",
    streaming: bool = False,
    train: bool | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    image_size: int | None = CIFAR_IMAGE_SIZE,
    max_samples: int | None = None,
    shuffle_buffer_size: int = 10_000,
    seed: int = 0,
    name: str | None = None,
    revision: str | None = None,
    in_memory: bool = False,
    num_labels: int | None = None,
    skip_bad_images: bool = False,
    fraction: float | None = None,
    label_names: Sequence[str] | None = None,
    validation_fraction: float | None = None,
    validation: bool = False,
) -> datasets.Dataset | datasets.IterableDataset | InMemoryImageDataset:
    """Load a local folder (parquet layout, imagefolder) or a Hub id, with transforms yielding pixel_values/labels.

    `train` (default: split == "train") picks augmentation. Streaming datasets are shuffled with a buffer and
    sharded per process when torch.distributed is initialised. `in_memory` decodes the images once and augments
    whole batches (`InMemoryImageDataset`; CIFAR-sized images of a map-style dataset). Images are converted by bit
    depth (`decode_image`).

    Checks up front (map-style): the split is not empty and every label is in [0, num_labels) (`num_labels` default:
    the ClassLabel's class count); streams are checked batch by batch. With `skip_bad_images`, rows whose image cannot
    be decoded are left out with a warning and a count (map-style: one decoding pass over the split at load).
    `validation_fraction` holds out a class-balanced random fraction of the split (`class_balanced_holdout`, seeded
    with `seed`): the rest is loaded, or with `validation` the held-out rows; then `fraction` keeps a class-balanced
    prefix (`class_balanced_prefix`), then `max_samples`. `image_size` None (evaluation): images at their own size.
    `label_names` (a model's class names in index order) map the labels by name to the model's indices
    (`label_order`); `class_names` of the result gives the names of the labels it yields.

    Raises:
        ValueError: bad arguments, an empty split, a label out of range, an undecodable image (naming split and row),
            classes that `label_names` does not name.
    """
    train = split == "train" if train is None else train
    if in_memory and (streaming or image_size is None or image_size > CIFAR_IMAGE_SIZE):
        raise ValueError(
            f"in_memory_images is for map-style datasets of CIFAR-sized images (<= {CIFAR_IMAGE_SIZE} px), got "
            f"streaming={streaming}, image_size={image_size}: drop --in_memory_images (per-image transforms)."
        )
    if streaming and validation_fraction is not None:
        raise ValueError(f"validation_fraction for the streamed {split!r} split: a stream has no classes to balance.")
    if fraction is not None and (streaming or not 0 < fraction <= 1):
        raise ValueError(
            f"fraction={fraction} for the {split!r} split: give a number in (0, 1] for a map-style dataset (a stream "
            "has no class counts to balance)."
        )
    if max_samples is not None and max_samples < 1:
        raise ValueError(f"max_samples={max_samples} for the {split!r} split: pass a positive number or None (all).")
    dataset = _load_split(path, name, split, streaming, revision)
    features = dataset.features or {}
    image_column, label_column = resolve_columns(list(features) or dataset.column_names, image_column, label_column)
    label_feature = features.get(label_column)
    check_label_feature(label_feature, label_column, f"the {split!r} split of {path}")
    classes_of = "the dataset"
    if num_labels is None and isinstance(label_feature, datasets.ClassLabel):
        num_labels = label_feature.num_classes
    elif num_labels is None and label_names is not None:  # integers without names: the model's, by position
        num_labels, classes_of = len(label_names), "the model"
    names = label_feature.names if isinstance(label_feature, datasets.ClassLabel) else None
    order = label_order(names, label_names, f"the {split!r} split of {path}") if label_names is not None else None
    names = label_names if order is not None else names
    if isinstance(features.get(image_column), datasets.Image):  # decoded by `read_image`, whose errors name the row
        dataset = dataset.cast_column(image_column, datasets.Image(decode=False))
    if streaming:
        transform = ExampleTransform(image_column, label_column, train, image_size, split, num_labels, 0, order, names)
        return prepare_stream(
            dataset, transform, train, max_samples, shuffle_buffer_size, seed, image_column, split, skip_bad_images
        )
    if validation_fraction is not None:
        held = class_balanced_holdout(dataset.with_format("numpy")[label_column], validation_fraction, seed)
        dataset = dataset.select(held if validation else sorted(set(range(len(dataset))) - set(held)))
    if fraction is not None:
        dataset = dataset.select(class_balanced_prefix(dataset.with_format("numpy")[label_column], fraction))
    if max_samples is not None:
        dataset = dataset.select(range(min(max_samples, len(dataset))))
    if len(dataset) == 0:
        raise ValueError(
            f"The {split!r} split of {path} is empty: pass a split with images "
            "(--train_split/--eval_split/--validation_split)."
        )
    dataset = dataset.add_column(ROW_COLUMN, list(range(len(dataset))))
    if skip_bad_images:
        dataset = _drop_unreadable(dataset, image_column, split)
    check_labels(dataset.with_format("numpy")[label_column], num_labels, split, dataset[ROW_COLUMN], classes_of)
    if in_memory:
        return InMemoryImageDataset(
            dataset, image_column, label_column, train, image_size, split=split, seed=seed, order=order, names=names
        )
    transform = ExampleTransform(image_column, label_column, train, image_size, split, num_labels, seed, order, names)
    dataset.set_transform(transform)
    return dataset


def _load_split(
    path: str, name: str | None, split: str, streaming: bool, revision: str | None
) -> datasets.Dataset | datasets.IterableDataset:
    """`datasets.load_dataset`, whose error for a parquet file without rows ("BatchSize must be greater than 0") is
    replaced by one naming the empty files."""
    try:
        return datasets.load_dataset(path, name, split=split, streaming=streaming, revision=revision)
    except ValueError as error:  # datasets' 'Instruction "test" corresponds to no data!' / unknown split
        if "corresponds to no data" not in str(error) and "Unknown split" not in str(error):
            raise
        raise ValueError(
            f"The dataset {path} has no {split!r} split with images ({error}). Give an existing, non-empty split "
            "(--train_split, --eval_split, --validation_split)."
        ) from error
    except datasets.exceptions.DatasetGenerationError as error:
        if "BatchSize must be greater than 0" not in str(error.__cause__):
            raise
        empty = [str(f) for f in sorted(Path(path).rglob("*.parquet")) if pq.read_metadata(f).num_rows == 0]
        raise ValueError(
            f"The dataset {path} has an empty split: {empty or 'a file without rows'}. Remove the empty file(s) or "
            "give splits with images (--train_split, --eval_split, --validation_split)."
        ) from error


def decode_all(dataset: datasets.Dataset, chunk: int = 1000) -> None:
    """Decode every image of a map-style dataset with its transform set (in chunks of `chunk` rows), so that an
    undecodable image is found before long work starts; streams and in-memory datasets (decoded at load) pass.

    Raises:
        ValueError: an image cannot be decoded (naming the split and row, see `read_image`).
    """
    if not isinstance(dataset, datasets.Dataset):
        return
    for start in range(0, len(dataset), chunk):
        dataset[start : start + chunk]


def _drop_unreadable(dataset: datasets.Dataset, image_column: str, split: str) -> datasets.Dataset:
    """`dataset` without the rows whose image cannot be decoded (a warning gives their count and first rows)."""
    values = dataset.select_columns([image_column, ROW_COLUMN])
    bad = [row for value, row in zip(values[image_column], values[ROW_COLUMN]) if not is_readable_image(value)]
    if not bad:
        return dataset
    logger.warning(
        "Skipping %d of %d rows of the %r split whose image cannot be decoded (rows %s%s).",
        len(bad), len(dataset), split, bad[:10], "..." if len(bad) > 10 else "",
    )  # fmt: skip
    if len(bad) == len(dataset):
        raise ValueError(f"No image of the {split!r} split can be decoded: check the dataset's files.")
    bad_rows = set(bad)
    return dataset.select([i for i, row in enumerate(values[ROW_COLUMN]) if row not in bad_rows])


class InMemoryImageDataset(torch.utils.data.Dataset):
    """A map-style dataset of small images decoded once into memory (uint8 (N, 3, H, W): 150 MB for CIFAR-10's
    training set), each batch converted and augmented as one tensor (`__getitems__`, which DataLoader calls with a
    batch's indices): the same random crop with 4-px zero padding + horizontal flip as `image_transform`, at a
    fraction of the per-image PIL pipeline's cost, so no dataloader worker needs to compete for a small CPU's cores.

    Examples are {"pixel_values": float (3, H, W) in [0, 1], "labels": int}, as from `load_image_dataset`.
    A batch's crops and flips are drawn from `seeded_generator(seed, epoch, *indices)` (`set_epoch`, called by
    `MixACMTrainer` at each epoch): they depend on nothing that ran before, so a resumed run draws the same ones.
    Images are rounded to 8 bits (16-bit images too). Errors name the split and row (`ROW_COLUMN` when present).
    `order` maps the labels to a model's (`label_order`), whose class `names` they then are.
    """

    def __init__(
        self,
        dataset: datasets.Dataset,
        image_column: str,
        label_column: str,
        train: bool,
        image_size: int = CIFAR_IMAGE_SIZE,
        decode_batch_size: int = 1000,
        split: str = "train",
        seed: int = 0,
        order: Sequence[int] | None = None,
        names: Sequence[str] | None = None,
    ):
        self.train, self.seed, self.epoch = train, seed, 0
        self.names = None if names is None else list(names)
        self.images = torch.empty(len(dataset), 3, image_size, image_size, dtype=torch.uint8)
        labels = []
        for start in tqdm(range(0, len(dataset), decode_batch_size), desc="Decoding images into memory"):
            batch = dataset[start : start + decode_batch_size]
            rows = batch.get(ROW_COLUMN) or range(start, start + len(batch[label_column]))
            pixels = np.stack(
                [
                    read_image(value, lambda image: rgb_array(image, image_size), split, row)
                    for value, row in zip(batch[image_column], rows)
                ]
            )
            self.images[start : start + len(pixels)] = torch.from_numpy(pixels).permute(0, 3, 1, 2)
            labels += batch[label_column]
        self.labels = torch.tensor(labels if order is None else [order[label] for label in labels], dtype=torch.long)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        index = torch.as_tensor(indices, dtype=torch.long)
        images = self.images[index]
        if self.train:
            generator = seeded_generator(self.seed, self.epoch, *index.tolist())
            images = random_crop_flip(images, CIFAR_CROP_PADDING, generator)
        pixel_values = images.float().mul_(1.0 / 255)  # as torchvision.transforms.v2.ToDtype(scale=True)
        return [
            {"pixel_values": pixels, "labels": int(label)} for pixels, label in zip(pixel_values, self.labels[index])
        ]


def class_names(
    dataset: datasets.Dataset | datasets.IterableDataset, label_column: str | None = None
) -> list[str] | None:
    """The class names of the labels a dataset yields, in label order: those of a dataset from `load_image_dataset`
    (a model's, when it mapped the labels to the model's), else its ClassLabel's; None without."""
    if isinstance(dataset, InMemoryImageDataset):
        return dataset.names
    transform = (
        dataset.format.get("format_kwargs", {}).get("transform") if isinstance(dataset, datasets.Dataset) else None
    )
    if isinstance(transform, ExampleTransform) and transform.names is not None:
        return transform.names
    features = getattr(dataset, "features", None) or {}
    column = label_column or next((c for c in LABEL_COLUMNS if c in features), None)
    feature = features.get(column) if column else None
    return list(feature.names) if isinstance(feature, datasets.ClassLabel) else None


def check_dataset_classes(dataset: Any, model: Any, what: str = "dataset") -> None:
    """Refuse a dataset whose labels are not the model's classes (`label_order`; by position where one side has no
    class names): other classes, or the model's in another order (`load_image_dataset`'s `label_names` maps them).
    Streams, whose transform does not keep the names, and no dataset are not checked.

    Raises:
        ValueError: naming the classes that differ, or saying how to map them.
    """
    if dataset is None or isinstance(dataset, datasets.IterableDataset):
        return
    if label_order(class_names(dataset), model_class_names(model), f"the {what}") is not None:
        raise ValueError(
            f"The {what}'s classes are the model's in another order: load it with `load_image_dataset(..., "
            "label_names=<the model's class names in index order>)`, which maps its labels by name."
        )


def example_size(dataset: Any) -> tuple[int, int] | None:
    """(height, width) of the first example's `pixel_values` of a map-style dataset (its augmentation's randomness
    drawn apart from the global RNG's), or None (a stream, no such column)."""
    if isinstance(dataset, datasets.IterableDataset) or not hasattr(dataset, "__getitem__"):
        return None
    try:
        with torch.random.fork_rng(devices=[]):
            return tuple(torch.as_tensor(dataset[0]["pixel_values"]).shape[-2:]) if len(dataset) else None
    except (KeyError, IndexError, TypeError):
        return None


def collate_image_batch(examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack examples into {"pixel_values": (B, 3, H, W) float, "labels": (B,) long}."""
    pixel_values = torch.stack([torch.as_tensor(example["pixel_values"]) for example in examples])
    labels = torch.as_tensor([int(example["labels"]) for example in examples], dtype=torch.long)
    return {"pixel_values": pixel_values, "labels": labels}
