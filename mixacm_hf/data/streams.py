"""Streaming datasets: shuffling, per-process splitting, skipping undecodable images, endless passes."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from typing import Any

import datasets
import torch

from .images import is_readable_image

logger = logging.getLogger(__name__)


def prepare_stream(
    dataset: datasets.IterableDataset,
    transform: Callable[[dict[str, list[Any]]], dict[str, list[Any]]],
    train: bool,
    max_samples: int | None,
    shuffle_buffer_size: int,
    seed: int,
    image_column: str,
    split: str,
    skip_bad_images: bool,
) -> datasets.IterableDataset:
    if max_samples is not None:
        dataset = dataset.take(max_samples)
    if train:
        dataset = dataset.shuffle(seed=seed, buffer_size=shuffle_buffer_size)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        dataset = split_stream(dataset, torch.distributed.get_rank(), torch.distributed.get_world_size())
    if skip_bad_images:
        dataset = dataset.filter(_SkipCounter(split), input_columns=[image_column])
    columns = list(dataset.features or {}) or None
    return dataset.map(transform, batched=True, batch_size=64, remove_columns=columns)


class _SkipCounter:
    """Stream filter: keeps examples whose image can be decoded, warning with a running count of those skipped."""

    def __init__(self, split: str):
        self.split, self.skipped = split, 0

    def __call__(self, value: Any) -> bool:
        if is_readable_image(value):
            return True
        self.skipped += 1
        logger.warning("Skipped an example of the streamed %r split whose image cannot be decoded (%d so far).",
                       self.split, self.skipped)  # fmt: skip
        return False


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
