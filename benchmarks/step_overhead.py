"""MixACM's overhead on top of the work it cannot avoid: one student training step plus one teacher forward.

    python benchmarks/step_overhead.py [--batch_size 128] [--repeats 10]

Prints, from one run on this machine (WRN-16-2 teacher -> WRN-16-2 student, batch 128):
  ratio = MixACM step / (natural student train step + teacher forward), target <= 1.10,
in fp32 and in the CPU config's bf16 autocast + channels_last, and the MixACM step under bf16 autocast and
channels_last relative to fp32. Candidates are timed round-robin
(medians), so background load affects all of them alike. Writes benchmarks/results/step_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from mixacm_hf import MixACMTrainer, MixACMTrainingArguments, WideResNetConfig, WideResNetForImageClassification

RESULTS = Path(__file__).resolve().parent / "results"


def wrn_16_2(seed: int) -> WideResNetForImageClassification:
    torch.manual_seed(seed)
    return WideResNetForImageClassification(WideResNetConfig.from_name("wrn-16-2", num_labels=10))


def training_step(method: str, batch: dict[str, torch.Tensor], teacher, **flags) -> Callable[[], None]:
    """One full optimiser step of MixACMTrainer (loss, backward, SGD update) for `method`."""
    args = MixACMTrainingArguments(
        output_dir=tempfile.mkdtemp(), method=method, use_cpu=True, report_to=[], learning_rate=0.01, **flags
    )
    trainer = MixACMTrainer(model=wrn_16_2(0), teacher_model=teacher if args.needs_teacher else None, args=args)
    trainer.create_optimizer_and_scheduler(num_training_steps=1000)
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train() otherwise
    model, optimizer = trainer.model, trainer.optimizer

    def step() -> None:
        trainer.training_step(model, dict(batch))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def median_seconds(candidates: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median wall time of each candidate, measured round-robin so that background load hits all alike."""
    for fn in candidates.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    batch = {"pixel_values": torch.rand(args.batch_size, 3, 32, 32), "labels": torch.randint(0, 10, (args.batch_size,))}
    teacher = wrn_16_2(1).eval().requires_grad_(False)

    teacher_channels_last = wrn_16_2(1).eval().requires_grad_(False).to(memory_format=torch.channels_last)
    pixels_channels_last = batch["pixel_values"].contiguous(memory_format=torch.channels_last)

    def teacher_forward() -> None:
        with torch.no_grad():
            teacher(pixel_values=batch["pixel_values"], output_hidden_states=True)

    def teacher_forward_bf16_channels_last() -> None:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            teacher_channels_last(pixel_values=pixels_channels_last, output_hidden_states=True)

    candidates = {
        "natural_step": training_step("natural", batch, None),
        "teacher_forward": teacher_forward,
        "natural_step_bf16_channels_last": training_step("natural", batch, None, bf16=True, channels_last=True),
        "teacher_forward_bf16_channels_last": teacher_forward_bf16_channels_last,
        "mixacm_step": training_step("mixacm", batch, teacher),
        "mixacm_step_bf16": training_step("mixacm", batch, teacher, bf16=True),
        # channels_last trainers convert their teacher in place: they get the channels_last copy
        "mixacm_step_channels_last": training_step("mixacm", batch, teacher_channels_last, channels_last=True),
        "mixacm_step_bf16_channels_last": training_step(
            "mixacm", batch, teacher_channels_last, bf16=True, channels_last=True
        ),
    }
    seconds = median_seconds(candidates, args.repeats)
    ratio = seconds["mixacm_step"] / (seconds["natural_step"] + seconds["teacher_forward"])
    ratio_bf16 = seconds["mixacm_step_bf16_channels_last"] / (
        seconds["natural_step_bf16_channels_last"] + seconds["teacher_forward_bf16_channels_last"]
    )
    result = {
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "seconds": {k: round(v, 4) for k, v in seconds.items()},
        "overhead_ratio": round(ratio, 4),
        "overhead_ratio_bf16_channels_last": round(ratio_bf16, 4),
        "target": 1.10,
        "bf16_vs_fp32": round(seconds["mixacm_step_bf16"] / seconds["mixacm_step"], 3),
        "channels_last_vs_fp32": round(seconds["mixacm_step_channels_last"] / seconds["mixacm_step"], 3),
        "bf16_channels_last_vs_fp32": round(seconds["mixacm_step_bf16_channels_last"] / seconds["mixacm_step"], 3),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "step_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    for name, value in seconds.items():
        print(f"{name:28s} {value:.4f} s")
    print(f"MixACM step / (student step + teacher forward) = {ratio:.3f} fp32, {ratio_bf16:.3f} bf16 + channels_last")
    print(
        f"step time vs fp32: bf16 {result['bf16_vs_fp32']}, channels_last {result['channels_last_vs_fp32']}, "
        f"both {result['bf16_channels_last_vs_fp32']}"
    )


if __name__ == "__main__":
    main()
