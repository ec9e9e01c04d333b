"""Evaluation against training: the card protocol's evaluation time over the MixACM training's, measured in one run.

    python benchmarks/evaluation_cost.py [--model model_cards/wrn16-2-mixacm-t20-mixup02-acm2k-inmem]
        [--steps 25] [--pgd_n 200] [--autoattack_n 64] [--workers 2] [--dataset ../shared/datasets/cifar10]

Training: `--steps` optimiser steps of the CPU config's MixACM recipe (training/configs/cifar10_cpu_wrn16-2.yaml,
teacher compiled, as `method_cost.py` runs it); the median iteration times the iterations of 10 epochs of CIFAR-10.
Evaluation (`evaluate_robustness` with `--workers` worker processes, on the robust `--model`): clean and PGD-20 with
the default eps sweep (0, 2, 4, 8, 16 /255) on the first `--pgd_n` test images, and AutoAttack standard on the first
`--autoattack_n`, each scaled to the card protocol's 1000 and 500 images (AutoAttack's time per image depends on how
many images stay robust: the first images stand for the first 500). Writes benchmarks/results/evaluation_cost.json.
Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as `python benchmarks/evaluation_cost.py`: make `benchmarks` importable
    sys.path.insert(0, str(REPO))

from benchmarks.method_cost import COMPILED_TEACHER, measure  # noqa: E402
from benchmarks.step_overhead import RESULTS  # noqa: E402
from mixacm_hf.files import atomic_write_text  # noqa: E402
from mixacm_hf.robustness import evaluate_robustness  # noqa: E402

EPOCHS, TRAIN_IMAGES, BATCH = 10, 50_000, 128
PGD_IMAGES, AUTOATTACK_IMAGES = 1000, 500  # the card protocol's
SWEEP = [0, 2 / 255, 4 / 255, 8 / 255, 16 / 255]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(REPO / "model_cards" / "wrn16-2-mixacm-t20-mixup02-acm2k-inmem"))
    parser.add_argument("--dataset", default=str(REPO.parent / "shared" / "datasets" / "cifar10"))
    parser.add_argument("--steps", type=int, default=25, help="training steps timed (the first 5 left out)")
    parser.add_argument("--pgd_n", type=int, default=200, help="test images of the clean + PGD-20 + sweep timing")
    parser.add_argument("--autoattack_n", type=int, default=64, help="test images of the AutoAttack timing")
    parser.add_argument("--workers", type=int, default=2, help="the evaluator's worker processes")
    parser.add_argument("--output", type=Path, default=RESULTS / "evaluation_cost.json")
    args = parser.parse_args(argv)
    samples = measure("mixacm", COMPILED_TEACHER, args.steps, args.dataset, [])[0]
    step_seconds = statistics.median(samples)
    iterations = EPOCHS * -(-TRAIN_IMAGES // BATCH)
    evaluate = {"device": "cpu", "progress": False, "workers": args.workers}
    began = time.perf_counter()
    evaluate_robustness(
        args.model, args.dataset, ["clean", "pgd-20"], n_examples=args.pgd_n, eps_sweep=SWEEP,
        batch_size=-(-args.pgd_n // args.workers), **evaluate,
    )  # fmt: skip
    pgd_seconds, began = time.perf_counter() - began, time.perf_counter()
    autoattack = evaluate_robustness(
        args.model, args.dataset, ["autoattack"], n_examples=args.autoattack_n,
        batch_size=-(-args.autoattack_n // args.workers), **evaluate,
    )  # fmt: skip
    autoattack_seconds = time.perf_counter() - began
    seconds = {  # whole calls (loading, the sweep, the eps = 0 check included), scaled to the protocol's images
        "training": step_seconds * iterations,
        "clean_pgd20_and_sweep": pgd_seconds * PGD_IMAGES / args.pgd_n,
        "autoattack": autoattack_seconds * AUTOATTACK_IMAGES / args.autoattack_n,
    }
    evaluation = seconds["clean_pgd20_and_sweep"] + seconds["autoattack"]
    result = {
        "model": args.model, "workers": args.workers, "threads": torch.get_num_threads(),
        "training": f"{EPOCHS} epochs x {-(-TRAIN_IMAGES // BATCH)} iterations of the CPU config's MixACM recipe "
        f"(teacher compiled), {step_seconds:.4f} s per iteration (median of {len(samples)})",
        "evaluation": f"clean + PGD-20 + eps sweep {SWEEP} on {PGD_IMAGES} images (measured on {args.pgd_n}), "
        f"AutoAttack standard on {AUTOATTACK_IMAGES} (measured on {args.autoattack_n}; robust accuracy "
        f"{autoattack.robust_accuracy['autoattack']:.3f})",
        "seconds": seconds,
        "evaluation_over_training": evaluation / seconds["training"],
        "autoattack_over_training": seconds["autoattack"] / seconds["training"],
        "command": " ".join(["python", "benchmarks/evaluation_cost.py", *(sys.argv[1:] if argv is None else argv)]),
    }  # fmt: skip
    atomic_write_text(args.output, json.dumps(result, indent=2) + "\n")
    print(
        f"card protocol evaluation {evaluation / 60:.1f} min (AutoAttack {seconds['autoattack'] / 60:.1f}) over "
        f"MixACM training {seconds['training'] / 60:.1f} min = {result['evaluation_over_training']:.2f}"
    )
    return result


if __name__ == "__main__":
    main()
