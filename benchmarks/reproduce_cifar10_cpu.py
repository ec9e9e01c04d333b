"""Reproduce MixACM's central claim at CPU scale on CIFAR-10 (resumable; each stage is skipped when its output exists).

    python benchmarks/reproduce_cifar10_cpu.py [--dataset ../shared/datasets/cifar10] [--only NAME ...] [--dry-run]

Stages: (1) a robust WRN-16-2 teacher by N-FGSM adversarial training (its row doubles as the fast single-step AT
baseline), (2) students with the same epochs and schedule: natural, kd (RKD), mixacm-no-mixup, mixacm (WRN-16-2),
mixacm (WRN-16-1) and the PGD-7 adversarial-training baseline, (3) robustness evaluation of every model, (4) the
results table `benchmarks/results/cifar10_cpu.json` and plots. Each training run is one `run_mixacm.py` command,
recorded in its row; a killed run resumes from its last epoch checkpoint.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNS = REPO / "benchmarks" / "runs"
RESULTS = REPO / "benchmarks" / "results"
EPOCHS = 10
SEED = 0
TEACHER = "teacher-wrn16-2-nfgsm"


@dataclass
class Stage:
    name: str
    role: str
    method: str
    arch: str
    flags: list[str] = field(default_factory=list)

    @property
    def output_dir(self) -> Path:
        return RUNS / self.name

    def command(self, dataset: str) -> list[str]:
        teacher = ["--teacher", str((RUNS / TEACHER).relative_to(REPO))] if self.method in TEACHER_METHODS else []
        return [
            "accelerate", "launch", "--num_processes", "1", "--cpu", "training/run_mixacm.py",
            "--config", "training/configs/cifar10_cpu_wrn16-2.yaml",
            "--dataset", dataset, "--student", self.arch, "--method", self.method,
            "--num_train_epochs", str(EPOCHS), "--seed", str(SEED),
            "--output_dir", str(self.output_dir.relative_to(REPO)), "--resume_from_checkpoint", "last",
            *teacher, *self.flags,
        ]  # fmt: skip


TEACHER_METHODS = {"mixacm", "mixacm-no-mixup", "acm-only", "kd"}
STAGES = [
    Stage(TEACHER, "teacher", "n-fgsm", "wrn-16-2"),
    Stage("wrn16-2-mixacm", "student", "mixacm", "wrn-16-2"),
    Stage("wrn16-2-kd", "student", "kd", "wrn-16-2"),
    Stage("wrn16-2-pgd7-at", "student", "pgd-at", "wrn-16-2", ["--pgd_steps", "7", "--pgd_step_size", "2/255"]),
    Stage("wrn16-2-mixacm-no-mixup", "student", "mixacm-no-mixup", "wrn-16-2"),
    Stage("wrn16-2-natural", "student", "natural", "wrn-16-2"),
    Stage("wrn16-1-mixacm", "student", "mixacm", "wrn-16-1"),
]


def train(stage: Stage, dataset: str, dry_run: bool) -> None:
    if (stage.output_dir / "train_summary.json").exists():
        print(f"[skip] {stage.name}: trained")
        return
    command = stage.command(dataset)
    print(f"[train] {stage.name}: {shlex.join(command)}", flush=True)
    if not dry_run:
        stage.output_dir.mkdir(parents=True, exist_ok=True)
        with open(stage.output_dir / "train.log", "a") as log:
            executable = [str(Path(sys.executable).parent / "accelerate"), *command[1:]]
            subprocess.run(executable, cwd=REPO, check=True, stdout=log, stderr=subprocess.STDOUT)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=str(REPO.parent / "shared" / "datasets" / "cifar10"))
    parser.add_argument("--only", nargs="*", help="Run only these stages (names as in STAGES).")
    parser.add_argument("--dry-run", action="store_true", help="Print the commands without running them.")
    args = parser.parse_args(argv)
    stages = [s for s in STAGES if not args.only or s.name in args.only]
    for stage in stages:
        train(stage, args.dataset, args.dry_run)
    print(json.dumps({"trained": [s.name for s in stages if (s.output_dir / "train_summary.json").exists()]}))


if __name__ == "__main__":
    sys.exit(main())
