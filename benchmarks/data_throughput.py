"""Do the input pipelines keep MixACM training fed on this machine, and what do they cost?

    python benchmarks/data_throughput.py [--dataset ../shared/datasets/cifar10] [--batch_size 128]
        [--parts cifar,imagenet] [--imagenet_images 512] [--imagenet_batches 8]

Prints, from one run, the throughput of two training input pipelines through MixACMTrainer's training dataloader, in
images/s: the CPU config's (CIFAR-10 decoded once into memory, each batch cropped/flipped as one tensor in the
training process, no dataloader worker) and the per-image one it replaced (image decode + PIL random crop/flip per
image, in one dataloader worker), each over the throughput of the MixACM training step it feeds (WRN-16-2 teacher ->
WRN-16-2 student, batch 128: loss, backward, SGD update); target ratio >= 3. Pipelines and training step are timed in
alternating rounds (medians), so background load affects all alike. Each round of the worker pipeline first takes,
untimed, the batches the worker prefetched while the training step ran, then times the next ones.

`--parts imagenet` measures the streamed 224-px ImageNet training pipeline (`load_image_dataset(..., streaming=True,
image_size=224)`: JPEG decode + RandomResizedCrop(224) + flip, then `collate_image_batch`, what one dataloader worker
does) in images per second of CPU time of one process on one thread, on generated JPEGs sized like ImageNet's
(`imagenet_like_jpegs`), and the CPU cores one GPU needs to be fed at a published ResNet-50 training throughput
(`GPU_RESNET50`) slowed by the MixACM step's teacher forward (`MIXACM_STEP_COST`), against the device machines' 16
cores per GPU. Writes benchmarks/results/data_throughput.json (the keys of the parts not run are kept).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as `python benchmarks/data_throughput.py`: make `benchmarks` importable
    sys.path.insert(0, str(REPO))

from benchmarks.step_overhead import RESULTS, training_step, wrn_16_2  # noqa: E402
from mixacm_hf import MixACMTrainer, MixACMTrainingArguments  # noqa: E402
from mixacm_hf.data import EndlessStream, collate_image_batch, load_image_dataset  # noqa: E402

CIFAR10 = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cifar10"
TARGET = 3.0
# name -> (in_memory, dataloader workers)
PIPELINES = {"in-memory, no worker (CPU config)": (True, 0), "per-image PIL, 1 worker": (False, 1)}

# Generated ImageNet-like JPEGs: the area (pixels) is log-normal around 400 x 350 with sigma 0.35 (two thirds of the
# images between about 335 x 295 and 475 x 415), the aspect ratio (w/h) one of ASPECT_RATIOS with its probability
# (mostly 4:3 and 3:2 landscape photos, some portrait and square); the content is 1/f noise (a natural image's
# spectrum, colour channels correlated) saved at JPEG quality 90, ~0.75 bytes per pixel: ~110 KB on average, as
# ImageNet's training JPEGs (the ILSVRC2012 training archive holds ~138 GiB for 1,281,167 images).
MEDIAN_AREA, AREA_SIGMA = 400 * 350, 0.35
ASPECT_RATIOS = {4 / 3: 0.5, 3 / 2: 0.2, 3 / 4: 0.15, 1.0: 0.1, 2 / 3: 0.05}
JPEG_QUALITY = 90
# What one GPU consumes: a published ResNet-50 training throughput (no GPU figure of this project is measured yet)
GPU_RESNET50 = {
    "images_per_second": 2470,
    "what": "ResNet-50 v1.5 training, 1x A100 80GB (DGX A100), mixed precision, batch 256, NGC PyTorch 21.03",
    "source": "NVIDIA Deep Learning Examples, PyTorch ResNet50 v1.5 README, 'Training performance: NVIDIA DGX A100 "
    "(8x A100 80GB)', https://github.com/NVIDIA/DeepLearningExamples/blob/master/PyTorch/Classification/ConvNets/"
    "resnet50v1.5/README.md#training-performance-nvidia-dgx-a100-8x-a100-80gb",
}
# A MixACM step is the student's training step plus the teacher's forward (ResNet-50 -> ResNet-50): a forward pass is
# about 1/3 of a training step (the backward pass costs about two forwards), and the step's own overhead on top is
# small (benchmarks/step_overhead.py: 1.01-1.05 on CPU). benchmarks/gpu_smoke.py measures the ratio on a GPU.
MIXACM_STEP_COST = 4 / 3
DEVICE_CORES_PER_GPU = 16


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


def cifar_pipelines(args: argparse.Namespace) -> dict[str, Any]:
    """The CIFAR-10 pipelines against the MixACM WRN-16-2 training step (alternating rounds, medians)."""
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
    print(f"MixACM WRN-16-2 training step              {training_rate:10.2f} images/s")
    for name, rate in pipeline_rate.items():
        print(f"input pipeline {name:28s} {rate:10.1f} images/s: {rate / training_rate:6.1f} x the training step")
    print(f"target >= {TARGET:g} x the training step")
    return {
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


def natural_like(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 (height, width, 3) 1/f noise: amplitude ~ 1/frequency^0.8 with random phases, channels correlated."""
    fy, fx = np.fft.fftfreq(height)[:, None], np.fft.rfftfreq(width)[None, :]
    frequency = np.hypot(fx, fy)
    frequency[0, 0] = 1.0
    amplitude = frequency**-0.8
    channels, previous = [], None
    for _ in range(3):
        spectrum = amplitude * rng.standard_normal(amplitude.shape) * np.exp(2j * np.pi * rng.random(amplitude.shape))
        channel = np.fft.irfft2(spectrum, s=(height, width))
        previous = channel if previous is None else 0.7 * previous + 0.3 * channel
        channels.append(previous)
    image = np.stack(channels, axis=-1)
    return np.clip((image - image.mean()) / image.std() * 50 + 120, 0, 255).astype(np.uint8)


def imagenet_like_jpegs(n: int, seed: int = 0) -> list[bytes]:
    """`n` JPEGs whose sizes follow MEDIAN_AREA, AREA_SIGMA and ASPECT_RATIOS (see there)."""
    rng = np.random.default_rng(seed)
    areas = MEDIAN_AREA * np.exp(AREA_SIGMA * rng.standard_normal(n))
    aspects = rng.choice(list(ASPECT_RATIOS), size=n, p=list(ASPECT_RATIOS.values()))
    jpegs = []
    for area, aspect in zip(areas, aspects):
        width, height = max(16, round(np.sqrt(area * aspect))), max(16, round(np.sqrt(area / aspect)))
        buffer = io.BytesIO()
        Image.fromarray(natural_like(width, height, rng)).save(buffer, "JPEG", quality=JPEG_QUALITY)
        jpegs.append(buffer.getvalue())
    return jpegs


def write_imagenet_like(folder: Path, jpegs: list[bytes]) -> None:
    """A train split in the ILSVRC/imagenet-1k schema (`image`, `label` of 1000 classes) as one parquet file."""
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=1000)})
    images = [{"bytes": jpeg, "path": None} for jpeg in jpegs]
    rows = {"image": images, "label": [i % 1000 for i in range(len(jpegs))]}
    datasets.Dataset.from_dict(rows, features).to_parquet(folder / "train-00000-of-00001.parquet")


def imagenet_pipeline(args: argparse.Namespace) -> dict[str, Any]:
    """Images/s per core of the streamed 224-px training pipeline: one process, one thread, the median batch's CPU
    time."""
    jpegs = imagenet_like_jpegs(args.imagenet_images)
    sizes = np.array([Image.open(io.BytesIO(jpeg)).size for jpeg in jpegs])
    start = time.process_time()
    for jpeg in jpegs:
        Image.open(io.BytesIO(jpeg)).load()
    decode_seconds = (time.process_time() - start) / len(jpegs)
    with tempfile.TemporaryDirectory() as folder:
        write_imagenet_like(Path(folder), jpegs)
        stream = load_image_dataset(folder, "train", streaming=True, image_size=224, shuffle_buffer_size=1000)
        examples = iter(EndlessStream(stream))

        def batch() -> dict[str, torch.Tensor]:
            return collate_image_batch([next(examples) for _ in range(args.imagenet_batch_size)])

        first = batch()  # warm-up (fills the shuffle buffer)
        wall, cpu = [], []  # per batch: CPU time is this process's only, so other processes' load counts less
        for _ in range(args.imagenet_batches):
            wall_start, cpu_start = time.perf_counter(), time.process_time()
            batch()
            wall.append(time.perf_counter() - wall_start)
            cpu.append(time.process_time() - cpu_start)
    return {
        "images": args.imagenet_images,
        "batch_size": args.imagenet_batch_size,
        "batches_timed": args.imagenet_batches,
        "threads": torch.get_num_threads(),
        "batch_shape": list(first["pixel_values"].shape),
        "generated_jpegs": {
            "distribution": f"area log-normal, median {MEDIAN_AREA} px (400 x 350), sigma {AREA_SIGMA}; aspect "
            f"w/h {', '.join(f'{a:.3g}: {p}' for a, p in ASPECT_RATIOS.items())}; 1/f noise, JPEG quality "
            f"{JPEG_QUALITY}",
            "mean_width": round(float(sizes[:, 0].mean()), 1),
            "mean_height": round(float(sizes[:, 1].mean()), 1),
            "mean_kilobytes": round(float(np.mean([len(jpeg) for jpeg in jpegs])) / 1000, 1),
        },
        "images_per_second_per_core": round(args.imagenet_batch_size / statistics.median(cpu), 1),
        "images_per_second_wall": round(args.imagenet_batch_size / statistics.median(wall), 1),
        "cpu_seconds_per_batch": [round(seconds, 3) for seconds in cpu],
        "jpeg_decode_images_per_second_per_core": round(1 / decode_seconds, 1),
    }


def gpu_side(per_core: float) -> dict[str, Any]:
    """What one GPU consumes in the MixACM ResNet-50 step, and the cores of `per_core` images/s that feed it."""
    gpu_mixacm = GPU_RESNET50["images_per_second"] / MIXACM_STEP_COST
    cores = gpu_mixacm / per_core
    return {
        "gpu_resnet50_training": GPU_RESNET50,
        "mixacm_step_cost_over_training_step": round(MIXACM_STEP_COST, 3),
        "gpu_mixacm_images_per_second": round(gpu_mixacm, 1),
        "cores_needed_per_gpu": round(cores, 2),
        "device_cores_per_gpu": DEVICE_CORES_PER_GPU,
        "device_cores_feed_images_per_second": round(DEVICE_CORES_PER_GPU * per_core, 1),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=str(CIFAR10), help="dataset folder or Hub id (default: the shared copy)")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pipeline_batches", type=int, default=20, help="batches timed per pipeline round")
    parser.add_argument("--parts", default="cifar,imagenet", help="measurements to run (comma-separated)")
    parser.add_argument("--imagenet_images", type=int, default=512, help="generated ImageNet-like JPEGs")
    parser.add_argument("--imagenet_batch_size", type=int, default=256, help="the ImageNet config's batch per GPU")
    parser.add_argument("--imagenet_batches", type=int, default=8, help="ImageNet batches timed")
    parser.add_argument("--output", type=Path, default=RESULTS / "data_throughput.json")
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    if unknown := parts - {"cifar", "imagenet"}:
        parser.error(f"unknown --parts {sorted(unknown)}; choose from cifar, imagenet")
    result = json.loads(args.output.read_text()) if args.output.exists() else {}
    if "cifar" in parts:
        result.update(cifar_pipelines(args))
    if "imagenet" in parts:
        measured = imagenet_pipeline(args)
        side = gpu_side(measured["images_per_second_per_core"])
        result["imagenet_224"] = measured | {"gpu_side": side}
        print(
            f"streamed 224-px ImageNet pipeline {measured['images_per_second_per_core']:.1f} images/s per core (JPEG "
            f"decode alone {measured['jpeg_decode_images_per_second_per_core']:.1f}); one GPU's MixACM ResNet-50 step "
            f"consumes {side['gpu_mixacm_images_per_second']:.1f} images/s ({GPU_RESNET50['images_per_second']} / "
            f"{MIXACM_STEP_COST:.2f}): {side['cores_needed_per_gpu']:.1f} cores per GPU, against "
            f"{DEVICE_CORES_PER_GPU} on the device machines"
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
