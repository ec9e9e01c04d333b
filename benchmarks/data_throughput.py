"""Do the input pipelines keep MixACM training fed on this machine, and what do they cost?

    python benchmarks/data_throughput.py [--dataset ../shared/datasets/cifar10] [--batch-size 128]

Prints, from one run, the throughput of two training input pipelines through MixACMTrainer's training dataloader, in
images/s: the CPU config's (CIFAR-10 decoded once into memory, each batch cropped/flipped as one tensor in the
training process, no dataloader worker) and the per-image one it replaced (image decode + PIL random crop/flip per
image, in one dataloader worker), each over the throughput of the MixACM training step it feeds (WRN-16-2 teacher ->
WRN-16-2 student, batch 128: loss, backward, SGD update); target ratio >= 3. Pipelines and training step are timed in
alternating rounds (medians), so background load affects all alike. Each round of the worker pipeline first takes,
untimed, the batches the worker prefetched while the training step ran, then times the next ones. Writes
benchmarks/results/data_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from step_overhead import RESULTS, training_step, wrn_16_2

from mixacm_hf import MixACMTrainer, MixACMTrainingArguments
from mixacm_hf.data import collate_image_batch, load_image_dataset

CIFAR10 = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cifar10"
TARGET = 3.0
# name -> (in_memory, dataloader workers)
PIPELINES = {"in-memory, no worker (CPU config)": (True, 0), "per-image PIL, 1 worker": (False, 1)}


def training_batches(dataset: str, batch_size: int, in_memory: bool, workers: int) -> Iterator[dict[str, torch.Tensor]]:
    """Endless batches from MixACMTrainer's training dataloader over CIFAR-10's training split."""
    loader_args = MixACMTrainingArguments(
        output_dir=tempfile.mkdtemp(), method="natural", use_cpu=True, report_to=[], disable_tqdm=True,
        per_device_train_batch_size=batch_size, dataloader_num_workers=workers,
    )  # fmt: skip
    loader = MixACMTrainer(
        model=wrn_16_2(0), args=loader_args, train_dataset=load_image_dataset(dataset, "train", in_memory=in_memory),
        data_collator=collate_image_batch,
    ).get_train_dataloader()  # fmt: skip
    while True:
        yield from loader


def pipeline_seconds_per_batch(batches: Iterator[dict[str, torch.Tensor]], prefetched: int, timed: int) -> float:
    """Steady-state seconds per batch: the `prefetched` batches waiting in the loader are taken first, untimed."""
    for _ in range(prefetched):
        next(batches)
    start = time.perf_counter()
    for _ in range(timed):
        next(batches)
    return (time.perf_counter() - start) / timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=str(CIFAR10), help="dataset folder or Hub id (default: the shared copy)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pipeline-batches", type=int, default=20, help="batches timed per pipeline round")
    args = parser.parse_args()

    streams = {
        name: (training_batches(args.dataset, args.batch_size, in_memory, workers), workers * 2)  # prefetch factor 2
        for name, (in_memory, workers) in PIPELINES.items()
    }
    batch = next(next(iter(streams.values()))[0])  # the training step trains on this real batch
    step = training_step("mixacm", batch, wrn_16_2(1).eval().requires_grad_(False))
    step()  # warm-up
    for batches, prefetched in streams.values():
        pipeline_seconds_per_batch(batches, prefetched, 1)  # warm-up (starts the workers)
    pipeline: dict[str, list[float]] = {name: [] for name in PIPELINES}
    training = []
    for _ in range(args.rounds):
        for name, (batches, prefetched) in streams.items():
            start = time.perf_counter()
            step()
            training.append(time.perf_counter() - start)
            pipeline[name].append(pipeline_seconds_per_batch(batches, prefetched, args.pipeline_batches))
    training_rate = args.batch_size / statistics.median(training)
    pipeline_rate = {name: args.batch_size / statistics.median(seconds) for name, seconds in pipeline.items()}
    result = {
        "dataset": args.dataset,
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "rounds": args.rounds,
        "training_step_images_per_second": round(training_rate, 2),
        "pipelines": {
            name: {
                "in_memory_images": PIPELINES[name][0],
                "dataloader_workers": PIPELINES[name][1],
                "images_per_second": round(pipeline_rate[name], 1),
                "ratio": round(pipeline_rate[name] / training_rate, 1),
                "seconds_per_batch": [round(s, 4) for s in pipeline[name]],
            }
            for name in PIPELINES
        },
        "target": TARGET,
        "training_step_seconds": [round(s, 3) for s in training],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "data_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"MixACM WRN-16-2 training step              {training_rate:10.2f} images/s")
    for name, rate in pipeline_rate.items():
        print(f"input pipeline {name:28s} {rate:10.1f} images/s: {rate / training_rate:6.1f} x the training step")
    print(f"target >= {TARGET:g} x the training step")


if __name__ == "__main__":
    main()
