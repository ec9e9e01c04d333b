"""Attack throughput: `pgd` against a bare PyTorch PGD loop, `autoattack` against calling pyautoattack directly, and
standard AutoAttack through `evaluate_robustness` (channels-last fp32) against pyautoattack on the plain model, on a
quickly trained natural model and (`robust`) on a robust one, with the time of each AutoAttack component and the
share of it spent in the model's forward and backward passes.

    python benchmarks/attack_throughput.py [--dataset ../shared/datasets/cifar10] [--arch wrn-16-1]
        [--batch_size 64] [--repeats 5] [--aa_repeats 5] [--evaluator_repeats 2] [--threads 1]
        [--parts pgd,autoattack,evaluator,robust] [--robust_model model_cards/wrn16-2-mixacm-t20-mixup02-acm2k-inmem]
        [--robust_n 200] [--robust_batch_size 50] [--robust_workers 2] [--robust_threads 2]
        [--note TEXT] [--output benchmarks/results/attack_throughput.json]

`robust` runs pyautoattack once on the robust model's first `--robust_n` test images in one batch (as a user would
call it, `--robust_threads` torch threads, timing each component and the model's passes inside it) and
`evaluate_robustness` once on the same images (`--robust_batch_size`, `--robust_workers` worker processes sharing
those threads), and compares their throughput and per-example verdicts.

`--parts` picks the comparisons to run; the sections of the other ones already in the output file are kept.

Both comparisons use the same model and the same batch; runs alternate between the two sides and the median
counts; one torch thread by default, since on a busy machine multi-threaded timings swing by 4x. The model is a
WRN trained naturally for a moment on CIFAR-10, so that AutoAttack ("standard") behaves as on a real, non-robust
model (APGD-CE breaks the examples). Targets: PGD-20 throughput of `pgd` >= 0.9x the bare loop; AutoAttack
wrapper overhead <= 5%; the evaluator's AutoAttack >= 1.3x the direct call's throughput with >= 99.5% of examples
given the same verdict (robust or not).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from pyautoattack import AutoAttack
from torch import nn

from mixacm_hf import WideResNetConfig, WideResNetForImageClassification
from mixacm_hf.files import atomic_write_text
from mixacm_hf.robustness import LogitsModel, as_classifier, autoattack, evaluate_robustness, pgd
from mixacm_hf.robustness.inputs import load_examples, load_split

REPO = Path(__file__).resolve().parents[1]
EPS = 8 / 255
STEPS = 20


def bare_pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int) -> torch.Tensor:
    """The textbook Linf PGD loop (random start, sign steps, projection), nothing else."""
    x_adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x_adv).logits, y), x_adv)
        x_adv = torch.min(torch.max(x_adv.detach() + alpha * grad.sign(), x - eps), x + eps).clamp(0, 1)
    return x_adv


def train_natural(arch: str, x: torch.Tensor, y: torch.Tensor, epochs: int = 3, batch_size: int = 100) -> nn.Module:
    """A quickly trained, non-robust classifier (a few CPU minutes at most; also `tests/test_robustness.py`'s)."""
    torch.manual_seed(0)
    model = WideResNetForImageClassification(WideResNetConfig.from_name(arch, num_labels=10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 0.2, total_steps=epochs * -(-len(x) // batch_size))
    model.train()
    for _ in range(epochs):
        for index in torch.randperm(len(x)).split(batch_size):
            loss = F.cross_entropy(model(x[index]).logits, y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


def alternate(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, dict[str, list[float]]]:
    """Wall and CPU seconds of each callable, `repeats` times, alternating between them after one warm-up each."""
    for run in runs.values():
        run()
    seconds = {name: {"wall": [], "cpu": []} for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            wall, cpu = time.perf_counter(), time.process_time()
            run()
            seconds[name]["wall"].append(time.perf_counter() - wall)
            seconds[name]["cpu"].append(time.process_time() - cpu)
    return seconds


def evaluator_versus_direct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int) -> dict[str, object]:
    """Standard AutoAttack through `evaluate_robustness` (clean pass, AutoAttack, eps = 0 check; channels-last fp32)
    against pyautoattack on the plain model, alternating sides; same seed (0), eps and batch."""
    verdicts: dict[str, list[list[bool]]] = {"evaluator": [], "direct": []}

    def evaluator() -> None:
        report = evaluate_robustness(model, (x, y), ["autoattack"], batch_size=len(x), device="cpu", progress=False)
        verdicts["evaluator"].append(report.per_example["autoattack"])

    def direct() -> None:
        adversary = AutoAttack(LogitsModel(model), eps=EPS, norm="Linf", version="standard", seed=0, device="cpu")
        x_adv = adversary.run_standard_evaluation(x, y, batch_size=len(x))[0]
        with torch.no_grad():
            verdicts["direct"].append((model(x_adv).logits.argmax(1) == y).tolist())

    seconds = {name: {"wall": [], "cpu": []} for name in verdicts}
    for _ in range(repeats):  # no warm-up: one run takes ~30 s, far above any start-up cost
        for name, run in (("evaluator", evaluator), ("direct", direct)):
            wall, cpu = time.perf_counter(), time.process_time()
            run()
            seconds[name]["wall"].append(time.perf_counter() - wall)
            seconds[name]["cpu"].append(time.process_time() - cpu)
    same = [a == b for run_a, run_b in zip(verdicts["evaluator"], verdicts["direct"]) for a, b in zip(run_a, run_b)]
    wall, cpu = median(seconds, "wall"), median(seconds, "cpu")
    ratios = {clock: times["direct"] / times["evaluator"] for clock, times in (("wall", wall), ("cpu", cpu))}
    return {
        "version": "standard", "eps": EPS, "repeats": repeats, "seconds": seconds,
        "evaluator": "evaluate_robustness(model, (x, y), ['autoattack']): clean pass + AutoAttack + eps=0 check, "
        "fp32, channels_last",
        "direct": "pyautoattack.AutoAttack(version='standard') on the plain model (contiguous fp32)",
        "images_per_second": {name: len(x) / wall[name] for name in seconds},
        "throughput_ratio": ratios["wall"],
        "throughput_ratio_cpu_time": ratios["cpu"],
        "robust_accuracy": {name: sum(map(sum, runs)) / sum(map(len, runs)) for name, runs in verdicts.items()},
        "same_verdict_fraction": sum(same) / len(same),
        "target": "throughput_ratio >= 1.3 with same_verdict_fraction >= 0.995",
        "target_met": {clock: ratio >= 1.3 and sum(same) / len(same) >= 0.995 for clock, ratio in ratios.items()},
    }  # fmt: skip


class PassClock:
    """Seconds spent in a model's forward passes and in backward passes through it (from the gradient reaching its
    output to the gradient of its input), added up while attacks run."""

    def __init__(self) -> None:
        self.forward = self.backward = 0.0
        self.forwards = self.backwards = 0
        self._began = 0.0

    def mark(self, where: str) -> None:
        if where == "output":
            self._began = time.perf_counter()
        else:
            self.backward += time.perf_counter() - self._began
            self.backwards += 1


class _Mark(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, clock: PassClock, where: str) -> torch.Tensor:
        ctx.clock, ctx.where = clock, where
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        ctx.clock.mark(ctx.where)
        return grad, None, None


class TimedLogits(nn.Module):
    """A classifier's logits, its passes timed on `clock`."""

    def __init__(self, model: nn.Module, clock: PassClock):
        super().__init__()
        self.model, self.clock = LogitsModel(model), clock

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _Mark.apply(x, self.clock, "input") if x.requires_grad else x
        began = time.perf_counter()
        logits = self.model(x)
        self.clock.forward += time.perf_counter() - began
        self.clock.forwards += 1
        return _Mark.apply(logits, self.clock, "output") if logits.requires_grad else logits


# AutoAttack standard's components, the adversary attribute that runs each
COMPONENTS = {"apgd-ce": "apgd", "apgd-t": "apgd_targeted", "fab-t": "fab", "square": "square"}


@contextmanager
def timed_components(adversary: AutoAttack, clock: PassClock, into: dict[str, dict[str, float]]) -> Iterator[None]:
    """Time each component's `perturb` calls on `adversary`, with the forward/backward seconds inside them."""
    originals = {name: getattr(adversary, attribute).perturb for name, attribute in COMPONENTS.items()}

    def timed(name: str, perturb: Callable) -> Callable:
        def run(*args, **kwargs):
            before = (time.perf_counter(), clock.forward, clock.backward)
            try:
                return perturb(*args, **kwargs)
            finally:
                entry = into.setdefault(name, {"seconds": 0.0, "forward": 0.0, "backward": 0.0})
                entry["seconds"] += time.perf_counter() - before[0]
                entry["forward"] += clock.forward - before[1]
                entry["backward"] += clock.backward - before[2]

        return run

    for name, attribute in COMPONENTS.items():
        getattr(adversary, attribute).perturb = timed(name, originals[name])
    try:
        yield
    finally:
        for name, attribute in COMPONENTS.items():
            getattr(adversary, attribute).perturb = originals[name]


def robust_comparison(args: argparse.Namespace) -> dict[str, object]:
    """pyautoattack (one batch, timed by component and pass) against `evaluate_robustness` with worker processes,
    on a robust model's first `--robust_n` test images."""
    model, _ = as_classifier(args.robust_model)
    x, y = load_examples(load_split(args.dataset, "test", 32), args.robust_n)
    torch.set_num_threads(args.robust_threads)
    clock, components = PassClock(), {}
    began = time.perf_counter()
    adversary = AutoAttack(TimedLogits(model, clock), eps=EPS, norm="Linf", version="standard", seed=0, device="cpu")
    with timed_components(adversary, clock, components):
        x_adv = adversary.run_standard_evaluation(x, y, batch_size=len(x))[0]
    direct_seconds = time.perf_counter() - began
    with torch.no_grad():
        direct = (LogitsModel(model)(x_adv).argmax(1) == y).tolist()
    began = time.perf_counter()
    report = evaluate_robustness(
        model, (x, y), ["autoattack"], batch_size=args.robust_batch_size, device="cpu", progress=False,
        workers=args.robust_workers,
    )  # fmt: skip
    evaluator_seconds = time.perf_counter() - began
    evaluator = report.per_example["autoattack"]
    same = sum(a == b for a, b in zip(direct, evaluator)) / len(x)
    for entry in components.values():
        entry["model_share"] = (entry["forward"] + entry["backward"]) / entry["seconds"]
    model_seconds = clock.forward + clock.backward
    return {
        "model": args.robust_model, "n_images": len(x), "eps": EPS, "version": "standard",
        "threads": args.robust_threads,
        "direct": f"pyautoattack.AutoAttack(version='standard', seed=0) on the plain model (contiguous fp32), all "
        f"{len(x)} images in one batch, {args.robust_threads} torch threads",
        "evaluator": f"evaluate_robustness(model, (x, y), ['autoattack'], batch_size={args.robust_batch_size}, "
        f"workers={args.robust_workers}): clean pass + AutoAttack (batch i seeded 0 + i) + eps=0 check, fp32, "
        f"channels_last, {args.robust_threads} torch threads shared by the workers",
        "seconds": {"direct": direct_seconds, "evaluator": evaluator_seconds},
        "images_per_second": {"direct": len(x) / direct_seconds, "evaluator": len(x) / evaluator_seconds},
        "throughput_ratio": direct_seconds / evaluator_seconds,
        "robust_accuracy": {"direct": sum(direct) / len(x), "evaluator": sum(evaluator) / len(x)},
        "same_verdict_fraction": same,
        "direct_components": components,
        "direct_model_share": model_seconds / direct_seconds,
        "direct_passes": {"forward": clock.forwards, "backward": clock.backwards,
                          "forward_seconds": clock.forward, "backward_seconds": clock.backward},
        # speedup reachable by making the model's passes free (all else unchanged), and by removing all else
        "model_side_limit": direct_seconds / (direct_seconds - model_seconds),
        "bookkeeping_side_limit": direct_seconds / model_seconds,
        "target": "throughput_ratio >= 1.5 with same_verdict_fraction >= 0.995",
        "target_met": direct_seconds / evaluator_seconds >= 1.5 and same >= 0.995,
    }  # fmt: skip


def median(seconds: dict[str, dict[str, list[float]]], clock: str) -> dict[str, float]:
    return {name: statistics.median(values[clock]) for name, values in seconds.items()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=str(REPO.parent / "shared" / "datasets" / "cifar10"))
    parser.add_argument("--arch", default="wrn-16-1")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5, help="timed PGD runs per side")
    parser.add_argument("--aa_repeats", type=int, default=5, help="timed AutoAttack runs per side")
    parser.add_argument("--evaluator_repeats", type=int, default=2, help="timed evaluator/direct AutoAttack runs")
    parser.add_argument("--parts", default="pgd,autoattack,evaluator,robust",
                        help="comparisons to run (comma-separated)")  # fmt: skip
    parser.add_argument("--robust_model", default=str(REPO / "model_cards" / "wrn16-2-mixacm-t20-mixup02-acm2k-inmem"),
                        help="the robust model of the `robust` comparison (folder or Hub id)")  # fmt: skip
    parser.add_argument("--robust_n", type=int, default=200, help="test images of the `robust` comparison")
    parser.add_argument("--robust_batch_size", type=int, default=50, help="the evaluator's batch size in `robust`")
    parser.add_argument("--robust_workers", type=int, default=2, help="the evaluator's worker processes in `robust`")
    parser.add_argument("--robust_threads", type=int, default=2, help="torch threads of both sides in `robust`")
    parser.add_argument("--note", help="conditions of the run, recorded in the JSON (e.g. a shared machine)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: stable timings on a shared CPU)")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "attack_throughput.json")
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    if unknown := parts - {"pgd", "autoattack", "evaluator", "robust"}:
        parser.error(f"unknown --parts {sorted(unknown)}; choose from pgd, autoattack, evaluator, robust")
    torch.set_num_threads(args.threads)

    x_train, y_train = load_examples(load_split(args.dataset, "train", 32), 2000)
    x, y = load_examples(load_split(args.dataset, "test", 32), args.batch_size)
    model = train_natural(args.arch, x_train, y_train)
    direct_model = LogitsModel(model)

    def direct_autoattack() -> torch.Tensor:
        adversary = AutoAttack(direct_model, eps=EPS, norm="Linf", version="standard", seed=0, device="cpu")
        return adversary.run_standard_evaluation(x, y, batch_size=len(x))[0]

    with torch.no_grad():
        clean = (model(x).logits.argmax(1) == y).float().mean().item()
    command = " ".join(["python", "benchmarks/attack_throughput.py", *(sys.argv[1:] if argv is None else argv)])
    results = json.loads(args.output.read_text()) if args.output.is_file() else {}
    results.pop("command", None)  # each section records the command that measured it
    results.update({
        "device": "cpu", "threads": torch.get_num_threads(), "torch": torch.__version__,
        "model": args.arch, "batch_size": len(x), "clean_accuracy_of_batch": clean,
        "timing": "median over alternating repeats, after one warm-up run each (evaluator: no warm-up)",
    })  # fmt: skip
    if "pgd" in parts:
        pgd_seconds = alternate(
            {
                "pgd": lambda: pgd(model, x, y, eps=EPS, steps=STEPS, seed=0),
                "bare": lambda: bare_pgd(model, x, y, EPS, EPS / 4, STEPS),
            },
            args.repeats,
        )
        wall, cpu = median(pgd_seconds, "wall"), median(pgd_seconds, "cpu")
        results["pgd"] = {
            "steps": STEPS, "eps": EPS, "repeats": args.repeats, "seconds": pgd_seconds,
            "images_per_second": {name: len(x) / wall[name] for name in pgd_seconds},
            "throughput_ratio": wall["bare"] / wall["pgd"], "throughput_ratio_cpu_time": cpu["bare"] / cpu["pgd"],
            "target": ">= 0.9", "command": command,
        }  # fmt: skip
        speed = results["pgd"]["images_per_second"]
        print(
            f"PGD-{STEPS} throughput ({args.arch}, batch {len(x)}): pgd {speed['pgd']:.1f} img/s, bare loop "
            f"{speed['bare']:.1f} img/s, ratio {results['pgd']['throughput_ratio']:.3f} (CPU time "
            f"{results['pgd']['throughput_ratio_cpu_time']:.3f}; target >= 0.9)"
        )
    if "autoattack" in parts:
        aa_seconds = alternate(
            {"wrapper": lambda: autoattack(model, x, y, eps=EPS, seed=0), "direct": direct_autoattack},
            args.aa_repeats,
        )
        wall, cpu = median(aa_seconds, "wall"), median(aa_seconds, "cpu")
        results["autoattack"] = {
            "version": "standard", "eps": EPS, "repeats": args.aa_repeats, "seconds": aa_seconds,
            "overhead": wall["wrapper"] / wall["direct"] - 1, "overhead_cpu_time": cpu["wrapper"] / cpu["direct"] - 1,
            "target": "<= 0.05", "command": command,
        }  # fmt: skip
        print(
            f"AutoAttack standard (batch {len(x)}, clean accuracy {clean:.2f}): wrapper {wall['wrapper']:.2f}s, "
            f"direct {wall['direct']:.2f}s, overhead {results['autoattack']['overhead']:+.1%} "
            f"(CPU time {results['autoattack']['overhead_cpu_time']:+.1%}; target <= 5%)"
        )
    if "evaluator" in parts:
        evaluator = evaluator_versus_direct(model, x, y, args.evaluator_repeats)
        results["autoattack_evaluator"] = {**evaluator, "command": command, "note": args.note}
        print(
            f"AutoAttack standard through the evaluator (channels-last fp32) vs pyautoattack on the plain model: "
            f"throughput ratio {evaluator['throughput_ratio']:.3f} (CPU time "
            f"{evaluator['throughput_ratio_cpu_time']:.3f}), same verdict on {evaluator['same_verdict_fraction']:.2%}"
            " (target >= 1.3x with >= 99.5%)"
        )
    if "robust" in parts:
        robust = robust_comparison(args)
        results["autoattack_robust"] = {**robust, "command": command, "note": args.note}
        shares = ", ".join(f"{name} {entry['seconds']:.0f} s ({entry['model_share']:.0%} in the model)"
                           for name, entry in robust["direct_components"].items())  # fmt: skip
        print(
            f"AutoAttack standard on {robust['n_images']} images of a robust model: pyautoattack {shares}; model "
            f"passes {robust['direct_model_share']:.0%} of its time. Evaluator ({args.robust_workers} workers) / "
            f"direct throughput {robust['throughput_ratio']:.3f}, same verdict on {robust['same_verdict_fraction']:.2%}"
            " (target >= 1.5x with >= 99.5%)"
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.output, json.dumps(results, indent=2) + "\n")
    print(f"Wrote {args.output}")
    return results


if __name__ == "__main__":
    main()
