"""Training cost of every method of the trainer, per optimiser step, against PGD-7 adversarial training.

    python benchmarks/method_cost.py [--batch-size 128] [--repeats 5] [--fp32]

Times one full step (loss, backward, SGD update) of natural, kd, mixacm-no-mixup, mixacm, n-fgsm and pgd-at (PGD-7,
step 2/255) training of a WRN-16-2 student (WRN-16-2 teacher) under bf16 autocast + channels_last, as the CPU
reproduction trains, round-robin (medians) in one run so background load hits all alike. Prints each step's time
relative to PGD-7 AT (target for mixacm: <= 0.25, the CPU reproduction's acceptance on wall time) and writes
benchmarks/results/method_cost.json.
"""

from __future__ import annotations

import argparse
import json

import torch
from step_overhead import RESULTS, median_seconds, training_step, wrn_16_2

# backward passes per training image: attack steps (PGD-k: k, N-FGSM: 1) + the training step
METHODS = {"natural": 1, "kd": 1, "mixacm-no-mixup": 1, "mixacm": 1, "n-fgsm": 2, "pgd-at": 8}
TARGET = 0.25


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--fp32", action="store_true", help="Time fp32 steps instead of bf16 + channels_last.")
    args = parser.parse_args()
    batch = {"pixel_values": torch.rand(args.batch_size, 3, 32, 32), "labels": torch.randint(0, 10, (args.batch_size,))}
    teacher = wrn_16_2(1).eval().requires_grad_(False)
    flags = {} if args.fp32 else {"bf16": True, "channels_last": True}
    candidates = {
        method: training_step(method, batch, teacher, pgd_steps=7, pgd_step_size=2 / 255, **flags) for method in METHODS
    }
    seconds = median_seconds(candidates, args.repeats)
    relative = {method: seconds[method] / seconds["pgd-at"] for method in METHODS}
    result = {
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "precision": "fp32" if args.fp32 else "bf16 autocast + channels_last",
        "seconds_per_step": {k: round(v, 4) for k, v in seconds.items()},
        "backward_passes_per_image": METHODS,
        "vs_pgd7_at": {k: round(v, 3) for k, v in relative.items()},
        "target_mixacm_vs_pgd7_at": TARGET,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "method_cost.json").write_text(json.dumps(result, indent=2) + "\n")
    for method in METHODS:
        print(f"{method:16s} {seconds[method]:.4f} s/step  {relative[method]:.3f} x PGD-7 AT {METHODS[method]} bwd/img")
    print(f"MixACM step / PGD-7 AT step = {relative['mixacm']:.3f} (target <= {TARGET})")


if __name__ == "__main__":
    main()
