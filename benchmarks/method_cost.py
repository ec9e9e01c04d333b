"""Training cost of every method against PGD-7 adversarial training, measured in real training runs.

    python benchmarks/method_cost.py [--steps 25] [--rounds 3] [--dataset ../shared/datasets/cifar10]

Runs `run_mixacm` (the code behind training/run_mixacm.py) with training/configs/cifar10_cpu_wrn16-2.yaml (WRN-16-2
student and teacher, batch 128, bf16 autocast + channels_last, CIFAR-10 decoded into memory and augmented a batch at
a time, no data-loader worker) for `--steps` optimiser steps of natural, kd, mixacm-no-mixup, mixacm, mixacm with
the teacher compiled (--compile_teacher), n-fgsm, pgd-at (PGD-7, step 2/255), trades, ard and rslad (10 PGD steps,
their papers' defaults), and of mixacm (teacher compiled)
and pgd-at with the per-image PIL input pipeline in one data-loader worker (the config's before), in `--rounds`
rounds that each run every variant once (interleaved, so slow drift of the machine's speed hits all alike), and
reports the median time per training iteration over all rounds (data loading and Trainer bookkeeping included, the
first 5 of each run left out) and, for the teacher methods, the median time of the teacher's forward. Prints each
iteration relative to PGD-7 AT's with the same input pipeline (target for mixacm: <= 0.25, the CPU reproduction's
acceptance on wall time) and writes benchmarks/results/method_cost.json (refusing to replace it with fewer timed
steps: the CPU reproduction's costs read it; `--output` writes elsewhere). Each round is one short training run per
variant. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from transformers import TrainerCallback

REPO = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as `python benchmarks/method_cost.py`: make `benchmarks` importable
    sys.path.insert(0, str(REPO))

from benchmarks.step_overhead import RESULTS  # noqa: E402
from mixacm_hf.cli import parse_with_config  # noqa: E402
from mixacm_hf.methods import get_method  # noqa: E402
from mixacm_hf.run import run_mixacm  # noqa: E402
from mixacm_hf.run_args import argument_parser  # noqa: E402
from mixacm_hf.trainer import MixACMTrainer, MixACMTrainingArguments  # noqa: E402

CONFIG = REPO / "training" / "configs" / "cifar10_cpu_wrn16-2.yaml"
METHODS = ["natural", "kd", "mixacm-no-mixup", "mixacm", "n-fgsm", "pgd-at", "trades", "ard", "rslad"]
COMPILED_TEACHER = ["--compile_teacher", "true"]
PIL_PIPELINE = ["--in_memory_images", "false", "--dataloader_num_workers", "1"]
# name -> (method, extra flags); the compiled variants pay their one-off compile inside the left-out first steps
VARIANTS = {method: (method, []) for method in METHODS} | {
    "mixacm+compiled-teacher": ("mixacm", COMPILED_TEACHER),
    "mixacm+compiled-teacher+pil-pipeline": ("mixacm", [*COMPILED_TEACHER, *PIL_PIPELINE]),
    "pgd-at+pil-pipeline": ("pgd-at", PIL_PIPELINE),
}
WARMUP = 5


def backward_passes(method: str) -> int:
    """Backward passes per training image with the method's default hyperparameters (the methods registry)."""
    args = MixACMTrainingArguments(output_dir=str(REPO / "outputs"), method=method, use_cpu=True, report_to=[])
    return get_method(method).backward_passes(args.method_params())


TARGET = 0.25


class IterationClock(TrainerCallback):
    """Wall time between consecutive optimiser steps (the whole training iteration)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._last: float | None = None

    def on_step_end(self, args, state, control, **kwargs) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.seconds.append(now - self._last)
        self._last = now


def time_teacher_forward(samples: list[float]) -> None:
    """Record in `samples` the duration of every `MixACMTrainer.teacher_signals` call that runs a teacher."""
    teacher_signals = MixACMTrainer.teacher_signals

    def timed(self, *args, **kwargs):
        start = time.perf_counter()
        result = teacher_signals(self, *args, **kwargs)
        if self.teacher_model is not None:
            samples.append(time.perf_counter() - start)
        return result

    MixACMTrainer.teacher_signals = timed


def measure(
    method: str, extra_flags: list[str], steps: int, dataset: str, teacher_seconds: list[float]
) -> tuple[list[float], list[float]]:
    """Iteration times and teacher-forward times of one short run, warm-up left out. Each method runs with its
    defaults (the methods registry: PGD-7 with step 2/255 for pgd-at, 10 steps for trades, ard and rslad), the ones
    `backward_passes` counts."""
    clock, first_teacher_sample = IterationClock(), len(teacher_seconds)
    with tempfile.TemporaryDirectory() as output_dir:
        flags = [
            "--config", str(CONFIG), "--dataset", dataset, "--method", method, "--max_steps", str(steps),
            "--output_dir", output_dir, "--save_strategy", "no", "--disable_tqdm", "true", "--logging_steps", "1000",
            "--eval_n", "16", "--eval_attacks", "",
            "--eval_eps_sweep", "", *([] if get_method(method).needs_teacher else ["--teacher", ""]), *extra_flags,
        ]  # fmt: skip
        run_mixacm(*parse_with_config(argument_parser(), flags), callbacks=[clock])
    return clock.seconds[WARMUP:], teacher_seconds[first_teacher_sample + WARMUP :]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--steps", type=int, default=25, help=f"optimiser steps per run (the first {WARMUP + 1} untimed)"
    )
    parser.add_argument("--rounds", type=int, default=3, help=f"rounds, each running all {len(VARIANTS)} variants once")
    parser.add_argument(
        "--dataset", default=str(REPO.parent / "shared" / "datasets" / "cifar10"),
        help="CIFAR-10 in the Hub's parquet layout (a folder)",
    )  # fmt: skip
    parser.add_argument("--output", type=Path, default=RESULTS / "method_cost.json", help="the results JSON")
    args = parser.parse_args(argv)
    if args.steps < WARMUP + 2 or args.rounds < 1:
        parser.error(
            f"--steps {args.steps} --rounds {args.rounds}: give --steps >= {WARMUP + 2} (the first step and the "
            f"{WARMUP} after it are warm-up, left out of the timing) and --rounds >= 1."
        )
    if not Path(args.dataset).is_dir():
        parser.error(f"--dataset {args.dataset}: no such folder (the CIFAR-10 copy in the Hub's parquet layout).")
    if args.output.is_dir() or not args.output.parent.is_dir():
        parser.error(f"--output {args.output}: give a file path in an existing folder.")
    timed = args.rounds * (args.steps - 1 - WARMUP)
    if args.output.resolve() == (RESULTS / "method_cost.json").resolve() and args.output.is_file():
        committed = json.loads(args.output.read_text()).get("steps_timed", 0)
        if timed < committed:  # the reproduction's cost figure reads this file: keep the finer measurement
            parser.error(
                f"--steps {args.steps} --rounds {args.rounds} time {timed} step{'s' if timed != 1 else ''} per "
                f"variant, fewer than the {committed} of {args.output}, which the CPU reproduction's costs read: pass "
                "--output elsewhere, or more steps."
            )
    try:
        result = time_variants(args.steps, args.rounds, args.dataset)
    except (ValueError, OSError) as error:  # an unreadable dataset, say: the message names it
        sys.exit(f"error: {error}")
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    seconds, relative, teacher_forward = (
        result["seconds_per_step"],
        result["vs_pgd7_at"],
        result["teacher_forward_seconds"],
    )
    for name, (method, _) in VARIANTS.items():
        teacher = teacher_forward.get(name)
        teacher_text = f"  (teacher forward {teacher:.4f} s)" if teacher else ""
        print(
            f"{name:38s} {seconds[name]:.4f} s/step  {relative[name]:.3f} x PGD-7 AT  "
            f"{backward_passes(method)} bwd/img{teacher_text}"
        )
    print(
        f"MixACM step / PGD-7 AT step = {relative['mixacm']:.3f}, with the teacher compiled "
        f"{relative['mixacm+compiled-teacher']:.3f}; with the per-image PIL pipeline "
        f"{relative['mixacm+compiled-teacher+pil-pipeline']:.3f} (target <= {TARGET})"
    )


def time_variants(steps: int, rounds: int, dataset: str) -> dict:
    """Every variant's median step time, teacher-forward time, backward passes and ratio to PGD-7 AT's step, over
    `rounds` interleaved rounds of `steps`-step runs: method_cost.json's content."""
    teacher_seconds: list[float] = []
    time_teacher_forward(teacher_seconds)
    step_samples: dict[str, list[float]] = {name: [] for name in VARIANTS}
    teacher_samples: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for round_index in range(rounds):
        for name, (method, flags) in VARIANTS.items():
            print(f"round {round_index + 1}/{rounds}: {name}", flush=True)
            step_times, teacher = measure(method, flags, steps, dataset, teacher_seconds)
            step_samples[name] += step_times
            teacher_samples[name] += teacher
    seconds = {name: statistics.median(samples) for name, samples in step_samples.items()}
    teacher_forward = {name: statistics.median(samples) for name, samples in teacher_samples.items() if samples}
    relative = {name: seconds[name] / seconds[pgd7_with_the_pipeline_of(name)] for name in VARIANTS}
    return {
        "config": str(CONFIG.relative_to(REPO)),
        "steps_timed": rounds * (steps - 1 - WARMUP),
        "rounds": rounds,
        "seconds_per_step": {k: round(v, 4) for k, v in seconds.items()},
        "teacher_forward_seconds": {k: round(v, 4) for k, v in teacher_forward.items()},
        "backward_passes_per_image": {name: backward_passes(method) for name, (method, _) in VARIANTS.items()},
        "vs_pgd7_at": {k: round(v, 3) for k, v in relative.items()},
        "target_mixacm_vs_pgd7_at": TARGET,
    }


def pgd7_with_the_pipeline_of(name: str) -> str:
    return "pgd-at+pil-pipeline" if name.endswith("+pil-pipeline") else "pgd-at"


if __name__ == "__main__":
    main()
