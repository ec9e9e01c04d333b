"""Does the input pipeline keep MixACM training fed on this machine?

    python benchmarks/data_throughput.py [--dataset ../shared/datasets/cifar10] [--batch-size 128] [--workers 1]

Prints, from one run, the training input pipeline's throughput (CIFAR-10 decode + random crop/flip + collate, through
MixACMTrainer's training dataloader with `--workers` dataloader workers, 1 as in the CPU config) over the throughput of
the MixACM training step it feeds (WRN-16-2 teacher -> WRN-16-2 student, batch 128: loss, backward, SGD update), in
images/s; target ratio >= 3. The two are timed in alternating rounds (medians), so background load affects both
alike. Each pipeline round first takes, untimed, the batches the workers prefetched while the training step ran, then
times the next ones. Writes benchmarks/results/data_throughput.json.
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
    parser.add_argument("--workers", type=int, default=1, help="dataloader workers (the CPU config uses 1)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pipeline-batches", type=int, default=20, help="batches timed per pipeline round")
    args = parser.parse_args()

    loader_args = MixACMTrainingArguments(
        output_dir=tempfile.mkdtemp(), method="natural", use_cpu=True, report_to=[], disable_tqdm=True,
        per_device_train_batch_size=args.batch_size, dataloader_num_workers=args.workers,
    )  # fmt: skip
    loader = MixACMTrainer(
        model=wrn_16_2(0), args=loader_args, train_dataset=load_image_dataset(args.dataset, "train"),
        data_collator=collate_image_batch,
    ).get_train_dataloader()  # fmt: skip
    batches = iter(loader)
    batch = next(batches)  # starts the workers; the training step trains on this real batch
    step = training_step("mixacm", batch, wrn_16_2(1).eval().requires_grad_(False))
    step()  # warm-up
    prefetched = args.workers * (loader.prefetch_factor or 0)
    pipeline_seconds_per_batch(batches, prefetched, 1)  # warm-up
    pipeline, training = [], []
    for _ in range(args.rounds):
        start = time.perf_counter()
        step()
        training.append(time.perf_counter() - start)
        pipeline.append(pipeline_seconds_per_batch(batches, prefetched, args.pipeline_batches))
    pipeline_rate = args.batch_size / statistics.median(pipeline)
    training_rate = args.batch_size / statistics.median(training)
    ratio = pipeline_rate / training_rate
    result = {
        "dataset": args.dataset,
        "batch_size": args.batch_size,
        "dataloader_workers": args.workers,
        "threads": torch.get_num_threads(),
        "rounds": args.rounds,
        "pipeline_images_per_second": round(pipeline_rate, 1),
        "training_step_images_per_second": round(training_rate, 2),
        "ratio": round(ratio, 1),
        "target": TARGET,
        "seconds": {
            "pipeline_batch": [round(s, 4) for s in pipeline],
            "training_step": [round(s, 3) for s in training],
        },
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "data_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"input pipeline ({args.workers} workers)  {pipeline_rate:10.1f} images/s")
    print(f"MixACM WRN-16-2 training step {training_rate:10.2f} images/s")
    print(f"pipeline / training step = {ratio:.1f} (target >= {TARGET:g})")


if __name__ == "__main__":
    main()
