"""GPU smoke test: MixACM training steps and AutoAttack of the paper's model pairs on this machine's accelerator.

    python benchmarks/gpu_smoke.py [--pairs cifar10,imagenet] [--steps 10] [--warmup 2] [--batch_size N]
        [--image_size 224] [--autoattack_n 256] [--autoattack_batch_size 256] [--attack autoattack] [--toy]
        [--output benchmarks/results/gpu_smoke.json]

Pairs, with random weights, each at its config's batch size, precision (bf16 autocast + channels_last), MixACM
hyperparameters and optimiser (learning rate fixed at LEARNING_RATE: the step's cost does not depend on it):
  cifar10   paper Table 3 (training/configs/cifar10_wrn28-10_to_wrn16-10.yaml): dm-wrn-28-10 teacher -> dm-wrn-16-10
            student, 32 px, 10 classes, batch 128
  imagenet  paper Table 2 (training/configs/imagenet_resnet50_mixacm.yaml): ResNet-50 teacher as converted from the
            `robustness` library (HF ResNet normalising outside, wrapped in PixelSpaceClassifier) -> ResNet-50 student
            from a transformers ResNetConfig (microsoft/resnet-50's architecture, new weights), 224 px (--image_size),
            1000 classes, batch 256
on cuda when available, else on the CPU (then every figure is a CPU figure, and says so). For each pair: the MixACM
training step (MixACMTrainer.training_step, gradient clipping, SGD update), the student's natural training step and
the teacher's forward (`MixACMTrainer.teacher_signals`), in interleaved rounds (medians); images/s; the ratio MixACM
step / (natural step + teacher forward); the peak memory of one MixACM step (torch.cuda.max_memory_allocated; on the
CPU the process's peak resident set size, which is not one step's); that the steps trained (losses finite, weights
changed); and AutoAttack images/s through `evaluate_robustness` (the config's eps) on --autoattack_n random images
labelled with the student's own predictions, so that every image is attacked (AutoAttack skips misclassified images,
and random weights misclassify most true labels). Random weights break at the first component (APGD-CE), so the
others run on few images: a robust model costs more per image. --toy swaps in small models of the same families
(dm-wrn-16-1 -> dm-wrn-10-1; bottleneck ResNets with one narrow block per stage) for a test on the CPU.
"""

from __future__ import annotations

import argparse
import atexit
import copy
import datetime
import json
import math
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from transformers import ResNetConfig, ResNetForImageClassification

from mixacm_hf import MixACMTrainer, MixACMTrainingArguments, WideResNetConfig, WideResNetForImageClassification
from mixacm_hf.cli import parse_fraction
from mixacm_hf.robustness import evaluate_robustness
from mixacm_hf.teachers import RAW_PIXELS, as_pixel_space

REPO = Path(__file__).resolve().parents[1]
RESULTS_FILE = REPO / "benchmarks" / "results" / "gpu_smoke.json"  # GPU figures only
CONFIGS = REPO / "training" / "configs"
PAIRS = {"cifar10": "cifar10_wrn28-10_to_wrn16-10.yaml", "imagenet": "imagenet_resnet50_mixacm.yaml"}
CONFIG_KEYS = ("method", "alpha_acm", "alpha_kld", "temperature", "mixup_alpha", "optim", "optim_args",
               "weight_decay", "bf16", "channels_last", "seed")  # fmt: skip
LEARNING_RATE = 0.01
IMAGENET_NORMALIZATION = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # the `robustness` library's normaliser


def resnet_config(toy: bool) -> ResNetConfig:
    """ResNet-50 (microsoft/resnet-50's and the converted teacher's architecture), or a narrow one-block-per-stage
    bottleneck ResNet with `toy`; 1000 classes."""
    if toy:
        return ResNetConfig(embedding_size=8, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1], num_labels=1000)
    return ResNetConfig(embedding_size=64, hidden_sizes=[256, 512, 1024, 2048], depths=[3, 4, 6, 3], num_labels=1000)


def build_pair(pair: str, toy: bool) -> tuple[nn.Module, nn.Module, str, str]:
    """(teacher, student, teacher name, student name) with random weights; the teacher as `load_teacher` gives it."""
    torch.manual_seed(0)
    if pair == "cifar10":
        teacher_name, student_name = ("dm-wrn-16-1", "dm-wrn-10-1") if toy else ("dm-wrn-28-10", "dm-wrn-16-10")
        teacher = WideResNetForImageClassification(WideResNetConfig.from_name(teacher_name, num_labels=10))
        student = WideResNetForImageClassification(WideResNetConfig.from_name(student_name, num_labels=10))
        return teacher, student, teacher_name, student_name
    name = "toy bottleneck ResNet" if toy else "ResNet-50"
    teacher = as_pixel_space(ResNetForImageClassification(resnet_config(toy)), None, IMAGENET_NORMALIZATION, name)
    return teacher, ResNetForImageClassification(resnet_config(toy)), f"{name} (robustness-resnet50 layout)", name


def make_trainer(student: nn.Module, teacher: nn.Module | None, config: dict[str, Any], device: str, **flags):
    """A MixACMTrainer ready for `training_step` (optimizer created) with the config's settings and `flags`."""
    settings = {key: config[key] for key in CONFIG_KEYS if key in config} | flags
    scratch = tempfile.mkdtemp()  # the Trainer wants an output folder; nothing is saved there
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    args = MixACMTrainingArguments(
        output_dir=scratch, use_cpu=device == "cpu", report_to=[], disable_tqdm=True,
        learning_rate=LEARNING_RATE, **settings,
    )  # fmt: skip
    trainer = MixACMTrainer(model=student, teacher_model=teacher if args.needs_teacher else None, args=args)
    trainer.create_optimizer_and_scheduler(num_training_steps=1000)
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train() otherwise
    return trainer


def optimiser_step(trainer: MixACMTrainer, batch: dict[str, torch.Tensor]) -> Callable[[], float]:
    """One training iteration as `Trainer.train()` runs it: loss + backward, gradient clipping, SGD update."""
    model, optimizer = trainer.model, trainer.optimizer

    def step() -> float:
        loss = trainer.training_step(model, dict(batch))
        trainer.accelerator.clip_grad_norm_(model.parameters(), trainer.args.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss)

    return step


def timed(fn: Callable[[], Any], device: str) -> tuple[float, Any]:
    """(seconds, result) of `fn()`, the device's queued work included."""
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, result


def peak_memory(device: str, fn: Callable[[], Any]) -> dict[str, Any]:
    """Peak memory while `fn` runs: torch.cuda.max_memory_allocated, or on the CPU the process's peak RSS so far."""
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        timed(fn, device)
        peak = torch.cuda.max_memory_allocated()
        kind = "cuda max_memory_allocated during one MixACM step"
    else:
        fn()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        kind = "CPU: peak resident set size of the whole process so far (ru_maxrss), not one step's"
    return {"kind": kind, "bytes": peak, "gib": round(peak / 2**30, 2)}


def autoattack_throughput(
    model: nn.Module, shape: tuple[int, ...], eps: float, args: argparse.Namespace, device: str, **normalization
) -> dict[str, Any]:
    """AutoAttack (`args.attack`) through `evaluate_robustness` on random images labelled with `model`'s predictions;
    `normalization`: image_mean/image_std for a model that has no image processor saying how it takes pixels."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(args.autoattack_n, *shape, generator=generator)
    model.eval()
    with torch.no_grad():
        y = torch.cat([model(pixel_values=part.to(device)).logits.argmax(1).cpu() for part in x.split(64)])
    seconds, report = timed(
        lambda: evaluate_robustness(model, (x, y), [args.attack], eps=eps, batch_size=args.autoattack_batch_size,
                                    device=device, progress=False, **normalization),
        device,
    )  # fmt: skip
    attack_seconds = report.seconds[args.attack]
    return {
        "attack": args.attack, "eps": eps, "n_examples": args.autoattack_n, "batch_size": args.autoattack_batch_size,
        "labels": "the student's own predictions on random pixels (every image is attacked)",
        "clean_accuracy": report.clean_accuracy, "robust_accuracy": report.robust_accuracy[args.attack],
        "attack_seconds": round(attack_seconds, 3), "images_per_second": round(args.autoattack_n / attack_seconds, 2),
        "evaluate_robustness_seconds": round(seconds, 3),
    }  # fmt: skip


def smoke_pair(pair: str, args: argparse.Namespace, device: str) -> dict[str, Any]:
    """Time MixACM / natural steps and the teacher forward of one pair, check that it trains, run AutoAttack."""
    config = yaml.safe_load((CONFIGS / PAIRS[pair]).read_text())
    size = args.image_size if pair == "imagenet" else 32
    batch_size = args.batch_size or config["per_device_train_batch_size"]
    teacher, student, teacher_name, student_name = build_pair(pair, args.toy)
    num_labels = student.config.num_labels
    generator = torch.Generator().manual_seed(1)
    batch = {
        "pixel_values": torch.rand(batch_size, 3, size, size, generator=generator).to(device),
        "labels": torch.randint(0, num_labels, (batch_size,), generator=generator).to(device),
    }
    mixacm = make_trainer(student, teacher, config, device)
    before = [p.detach().clone() for p in mixacm.model.parameters()]
    mixacm_step = optimiser_step(mixacm, batch)
    losses = [mixacm_step() for _ in range(args.warmup)]
    memory = peak_memory(device, mixacm_step)
    natural_step = optimiser_step(make_trainer(copy.deepcopy(student), None, config, device, method="natural"), batch)
    pixels = batch["pixel_values"]
    if mixacm.args.channels_last:  # as `compute_loss` hands them to the teacher
        pixels = pixels.contiguous(memory_format=torch.channels_last)

    def teacher_forward() -> None:
        mixacm.teacher_signals(pixels, uses_acm=True)

    candidates = {"mixacm_step": mixacm_step, "natural_step": natural_step, "teacher_forward": teacher_forward}
    for name in ("natural_step", "teacher_forward"):
        for _ in range(args.warmup):
            candidates[name]()
    seconds: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(args.steps):
        for name, fn in candidates.items():
            elapsed, result = timed(fn, device)
            seconds[name].append(elapsed)
            if name == "mixacm_step":
                losses.append(result)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    change = max(float((a - b.detach()).abs().max()) for a, b in zip(before, mixacm.model.parameters()))
    eps = parse_fraction(str(config.get("eval_eps", "8/255")), "eval_eps")
    result = {
        "config": f"training/configs/{PAIRS[pair]}",
        "teacher": teacher_name, "student": student_name, "random_weights": True,
        "image_size": size, "batch_size": batch_size,
        "precision": "bf16 autocast" if mixacm.args.bf16 else "fp32",
        "channels_last": mixacm.args.channels_last, "steps_timed": args.steps, "warmup_steps": args.warmup,
        "seconds": {name: round(value, 5) for name, value in median.items()},
        "mixacm_step_seconds": [round(s, 5) for s in seconds["mixacm_step"]],
        "images_per_second": round(batch_size / median["mixacm_step"], 2),
        "overhead_ratio": round(median["mixacm_step"] / (median["natural_step"] + median["teacher_forward"]), 4),
        "peak_memory": memory,
        "losses": [round(loss, 5) for loss in losses],
        "losses_finite": all(math.isfinite(loss) for loss in losses),
        "max_abs_weight_change": change,
    }  # fmt: skip
    # the ResNet student takes raw [0, 1] pixels, as the project's students do (its saved folder's processor says so)
    raw = {"image_mean": RAW_PIXELS[0], "image_std": RAW_PIXELS[1]} if pair == "imagenet" else {}
    result["autoattack"] = autoattack_throughput(mixacm.model, (3, size, size), eps, args, device, **raw)
    return result


def device_info(device: str) -> dict[str, Any]:
    """The accelerator (or CPU) the figures were measured on, and the software."""
    if device == "cuda":
        name = torch.cuda.get_device_name()
    else:
        lines = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []
        models = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
        name = f"CPU: {models[0] if models else platform.processor() or platform.machine()}"
    return {"type": device, "name": name, "torch": torch.__version__, "cuda": torch.version.cuda,
            "threads": torch.get_num_threads()}  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", default="cifar10,imagenet", help="model pairs to run (comma-separated)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps of each candidate (interleaved)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps of each candidate first")
    parser.add_argument("--batch_size", type=int, help="training batch of both pairs (default: each config's)")
    parser.add_argument("--image_size", type=int, default=224, help="image side of the imagenet pair")
    parser.add_argument("--autoattack_n", type=int, default=256, help="images attacked per pair")
    parser.add_argument("--autoattack_batch_size", type=int, default=256)
    parser.add_argument("--attack", default="autoattack", help="e.g. autoattack:apgd-ce for a cheap run")
    parser.add_argument("--toy", action="store_true", help="small models of the same families (a CPU test)")
    parser.add_argument(
        "--output", type=Path, help="JSON file (default on a GPU: benchmarks/results/gpu_smoke.json; on a CPU: none)"
    )
    args = parser.parse_args(argv)
    pairs = args.pairs.split(",")
    if unknown := set(pairs) - set(PAIRS):
        parser.error(f"unknown --pairs {sorted(unknown)}; choose from {', '.join(PAIRS)}")
    for flag in ("steps", "warmup", "batch_size", "autoattack_n", "autoattack_batch_size"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            parser.error(f"--{flag} {getattr(args, flag)}: must be >= 1")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        print("No GPU: every figure below is a CPU figure.", file=sys.stderr)
        if args.output is None:  # benchmarks/results/gpu_smoke.json holds GPU figures only
            print("No --output: the CPU figures are printed, not saved.", file=sys.stderr)
    now = datetime.datetime.now(datetime.timezone.utc)
    result = {
        "device": device_info(device), "date": now.isoformat(timespec="seconds"),
        "command": " ".join(["python benchmarks/gpu_smoke.py", *(sys.argv[1:] if argv is None else argv)]),
        "toy": args.toy, "learning_rate": LEARNING_RATE, "pairs": {},
    }  # fmt: skip
    for pair in pairs:
        result["pairs"][pair] = measured = smoke_pair(pair, args, device)
        print(
            f"{pair}: {measured['student']} <- {measured['teacher']}, batch {measured['batch_size']} at "
            f"{measured['image_size']} px on {result['device']['name']}: MixACM step "
            f"{measured['seconds']['mixacm_step']:.4f} s ({measured['images_per_second']:.1f} images/s), ratio to "
            "natural step + teacher forward "
            f"{measured['overhead_ratio']:.3f}, peak memory {measured['peak_memory']['gib']} GiB; {args.attack} "
            f"{measured['autoattack']['images_per_second']:.1f} images/s"
        )
    output = args.output or (RESULTS_FILE if device == "cuda" else None)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
