"""Running attacks batch by batch: progress kept per batch (resume), batches spread over `torch.distributed`
processes or over worker processes on one machine's CPU cores, every adversarial batch checked to lie in [0, 1] and
the eps ball (a corrupted batch, which has no eps ball, in [0, 1] with the clean batch's shape)."""

from __future__ import annotations

import json
import math
import multiprocessing
import pickle
import re
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..files import atomic_write_text, locked
from .attacks import Norm, attack_mode, logits_of
from .autoattack import autoattack_warnings
from .registry import AttackSpec


def check_adversarial(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str, name: str) -> None:
    """Adversarial examples must lie in [0, 1] and in the eps ball (up to float rounding)."""
    delta = (x_adv - x).flatten(1)
    size = {"Linf": delta.abs().amax(1), "L1": delta.abs().sum(1)}.get(norm, delta.norm(dim=1))
    if x_adv.min() < 0 or x_adv.max() > 1 or (size > eps * (1 + 1e-5) + 1e-6).any():
        raise RuntimeError(
            f"{name} returned examples outside [0, 1] or the {norm} ball of radius {eps:g} "
            f"(largest perturbation {size.max():.6g}, range [{x_adv.min():.4g}, {x_adv.max():.4g}])."
        )


def _check_corrupted(x_corrupted: torch.Tensor, x: torch.Tensor, name: str) -> None:
    """Corrupted images (no eps ball applies) must have the clean images' shape and lie in [0, 1]."""
    if x_corrupted.shape != x.shape or x_corrupted.min() < 0 or x_corrupted.max() > 1:
        raise RuntimeError(
            f"{name} returned images of shape {tuple(x_corrupted.shape)} in [{x_corrupted.min():.4g}, "
            f"{x_corrupted.max():.4g}], not {tuple(x.shape)} in [0, 1]."
        )


def check_batch_size(batch_size: int) -> None:
    """Check that `batch_size` is a positive integer.

    Raises:
        ValueError: naming the value, when it is not.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: the batch size must be a positive integer (e.g. 128).")


def rank_and_world_size() -> tuple[int, int]:
    """(rank, world size) of an initialised `torch.distributed` group, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def check_workers(workers: int, device: torch.device) -> None:
    """Check that `workers` worker processes can share an evaluation's batches here.

    Raises:
        ValueError: naming the value, when it is not a positive integer, or when more than one worker is asked for
            on an accelerator or inside a `torch.distributed` group.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers={workers!r}: the number of worker processes must be a positive integer (e.g. 2).")
    if workers == 1:
        return
    why = (
        f"the device is {device.type} (workers share CPU cores)" if device.type != "cpu"
        else "the batches are already spread over a torch.distributed group" if rank_and_world_size()[1] > 1
        else None
    )  # fmt: skip
    if why:
        raise ValueError(f"workers={workers}: worker processes cannot be used here, since {why}; use 1 worker.")


class RankFailure(RuntimeError):
    """Work spread over `torch.distributed` processes failed on some rank; every rank raises it with the same
    message (`gather_from_ranks`), so none waits for a peer that has given up."""


def gather_from_ranks(payload: Any, failure: BaseException | None = None) -> list[Any]:
    """Every rank's `payload`, in rank order (`[payload]` outside a process group). Each rank passes the exception
    that stopped its share of the work, or None: when any rank failed, every rank raises the same `RankFailure`
    naming the ranks and their errors (the failed rank's own error chained), instead of a peer waiting forever.

    Raises:
        RankFailure: some rank passed a failure (in a single process, the failure itself is re-raised).
    """
    _, world = rank_and_world_size()
    if world == 1:
        if failure is not None:
            raise failure
        return [payload]
    gathered: list[Any] = [None] * world
    described = None if failure is None else f"{type(failure).__name__}: {failure}"
    torch.distributed.all_gather_object(gathered, (payload, described))
    failures = [f"rank {rank}: {error}" for rank, (_, error) in enumerate(gathered) if error is not None]
    if failures:
        raise RankFailure(f"failed on {len(failures)} of {world} processes: " + "; ".join(failures)) from failure
    return [part for part, _ in gathered]


class Progress:
    """Per-batch results of an evaluation in a folder, so that an interrupted evaluation resumes where it stopped.

    `config.json` holds the evaluation's settings (a rerun with other settings is refused); each finished batch of
    each attack at each eps is one small JSON file, written atomically, with its flags, warnings and seconds (so
    that a resumed report counts the time of the batches run before the interruption).

    Raises:
        ValueError: (on creation) the folder holds the progress of an evaluation with other settings.
    """

    def __init__(self, folder: str | Path, settings: dict[str, Any]):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "config.json"
        text = json.dumps(settings, indent=2, sort_keys=True)
        with locked(config):
            if config.exists() and config.read_text() != text:
                raise ValueError(
                    f"{self.folder} holds the progress of an evaluation with other settings (see its config.json). "
                    "Rerun the identical command to resume it, or delete the folder to start afresh."
                )
            atomic_write_text(config, text)
        self.saved = 0

    def _file(self, key: str, index: int) -> Path:
        return self.folder / f"{key}-batch{index:06d}.json"

    def load(self, key: str, index: int) -> tuple[torch.Tensor, list[str], float] | None:
        """Correctness flags, pyautoattack warnings and seconds of a finished batch, or None (also for a batch
        saved without its seconds by an older version: it is re-run rather than counted as taking no time)."""
        path = self._file(key, index)
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        if "seconds" not in data:
            return None
        return torch.tensor(data["correct"], dtype=torch.bool), data["warnings"], float(data["seconds"])

    def save(self, key: str, index: int, correct: torch.Tensor, caught: list[str], seconds: float) -> None:
        record = {"correct": correct.tolist(), "warnings": caught, "seconds": seconds}
        atomic_write_text(self._file(key, index), json.dumps(record))
        self.saved += 1


def attack_batch(
    model: nn.Module, spec: AttackSpec, x: torch.Tensor, y: torch.Tensor, eps: float, norm: Norm, seed: int
) -> tuple[torch.Tensor, list[str], float]:
    """Correctness flags (bool, on CPU) of `model` on `spec`'s adversarial examples of one batch, pyautoattack's
    warnings and the seconds it took."""
    began = time.perf_counter()
    with autoattack_warnings() as caught:
        x_adv = spec.run(model, x, y, eps, norm, seed)
    if spec.attack.role == "corruption":
        _check_corrupted(x_adv, x, spec.name)
    else:
        check_adversarial(x_adv, x, eps, norm, spec.name)
    with torch.no_grad(), attack_mode(model, x.device.type):
        correct = (logits_of(model(x_adv)).argmax(1) == y).cpu()
    return correct, sorted(set(caught)), time.perf_counter() - began


def check_importable(*modules: nn.Module) -> None:
    """Check that the classes of `modules` (and of their submodules) can be imported by a spawned process.

    Raises:
        TypeError: naming a class defined in a `__main__` that has no file (`python -c`, standard input, a notebook).
    """
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    for module in modules:
        for part in module.modules():
            if type(part).__module__ == "__main__" and main_file is None:
                raise TypeError(
                    f"class {type(part).__name__} is defined in __main__ without a file, which another process cannot "
                    "import: define it in a module or script file"
                )


_WORKER: dict[str, Any] = {}  # in a worker process: the model, and the attacks that carry models of their own


def _start_worker(model: nn.Module, specs: dict[str, AttackSpec], threads: int) -> None:
    _WORKER.update(model=model, specs=specs)
    torch.set_num_threads(threads)


def _worker_batch(
    spec: AttackSpec | str, x: torch.Tensor, y: torch.Tensor, eps: float, norm: Norm, seed: int
) -> tuple[torch.Tensor, list[str], float]:
    spec = _WORKER["specs"][spec] if isinstance(spec, str) else spec
    return attack_batch(_WORKER["model"], spec, x, y, eps, norm, seed)


@dataclass
class AttackRun:
    """Model, examples and settings shared by every attack of one evaluation.

    Batches are spread over the processes of a `torch.distributed` group (batch i on rank i % world size, seeded
    with seed + i whatever the number of processes) and the flags gathered on every rank. Inside `workers_started`,
    a process's batches run on `workers` spawned worker processes (forked ones could not use autograd once this
    process has), each with an equal share of the torch threads: the same batches with the same seeds, so the same
    verdicts as one process running them in turn at the workers' thread count.
    """

    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    norm: Norm
    seed: int
    batch_size: int
    device: torch.device
    bar: tqdm
    progress: Progress | None
    workers: int = 1
    specs: dict[str, AttackSpec] = field(default_factory=dict)  # attacks whose models a worker inherits by name
    warnings: dict[str, set[str]] = field(default_factory=dict)
    seconds: dict[tuple[str, float], float] = field(default_factory=dict)  # (attack, eps) -> this rank's seconds
    executor: Executor | None = field(default=None, repr=False)

    def __post_init__(self):
        check_batch_size(self.batch_size)
        check_workers(self.workers, self.device)

    @contextmanager
    def workers_started(self) -> Iterator[AttackRun]:
        """Start the worker processes (when `workers` > 1) for the duration; they are ended on the way out.

        Raises:
            ValueError: the model or an attack's model cannot be sent to another process.
        """
        if self.workers == 1:
            yield self
            return
        own_models = {name: spec for name, spec in self.specs.items() if spec.source_model is not None}
        try:
            pickle.dumps((self.model, own_models))
            check_importable(self.model, *(spec.source_model for spec in own_models.values()))
        except Exception as error:
            raise ValueError(
                f"workers={self.workers}: the model cannot be sent to worker processes ({type(error).__name__}: "
                f"{error}); use 1 worker."
            ) from error
        threads = max(1, torch.get_num_threads() // self.workers)
        context = multiprocessing.get_context("spawn")
        initargs = (self.model, own_models, threads)
        with ProcessPoolExecutor(self.workers, context, initializer=_start_worker, initargs=initargs) as pool:
            for started in [pool.submit(time.sleep, 0.1) for _ in range(self.workers)]:  # start-up before any timing
                started.result()
            self.executor = pool
            try:
                yield self
            finally:
                self.executor = None
                pool.shutdown(wait=True, cancel_futures=True)

    def run_batch(self, spec: AttackSpec, eps: float, index: int) -> tuple[torch.Tensor, list[str], float]:
        """`attack_batch` on batch `index` (seeded with seed + index)."""
        x, y = self.examples(index)
        return attack_batch(self.model, spec, x.to(self.device), y.to(self.device), eps, self.norm, self.seed + index)

    def examples(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixels and labels of batch `index`."""
        start = index * self.batch_size
        return self.x[start : start + self.batch_size], self.y[start : start + self.batch_size]

    def correct(self, spec: AttackSpec, eps: float) -> torch.Tensor:
        """Per-example correctness (bool, on CPU) on `spec`'s adversarial examples at budget `eps`; its seconds on
        this rank (batches run now plus those resumed from `progress`, as they took then) go to
        `seconds[spec.name, eps]`."""
        no_eps = spec.attack.role == "corruption"
        self.bar.set_description(spec.name if no_eps else f"{spec.name} eps={eps:.4f}")
        rank, world = rank_and_world_size()
        key = f"{re.sub(r'[^a-z0-9.+-]', '_', spec.name)}-eps{eps:.8f}"
        done, failure, pending = {}, None, []
        for index in range(rank, math.ceil(len(self.x) / self.batch_size), world):
            if (result := self.progress.load(key, index) if self.progress else None) is None:
                pending.append(index)
            else:
                done[index] = result
                self.bar.update(1)
        resumed, began = sum(seconds for _, _, seconds in done.values()), time.perf_counter()
        try:
            for index, result in self._results(spec, eps, pending):
                if self.progress:
                    self.progress.save(key, index, *result)
                done[index] = result
                self.bar.update(1)
        except Exception as error:  # every rank learns of it at the gathering below, none waits for this one
            failure = error
        # batches on worker processes overlap in time: their wall time counts, not the sum of their durations
        ran = time.perf_counter() - began if self.executor else sum(done[i][2] for i in pending if i in done)
        self.seconds[spec.name, eps] = resumed + ran
        gathered = gather_from_ranks(done, failure)
        done = {index: result for part in gathered for index, result in part.items()}
        for _, caught, _ in done.values():
            self.warnings.setdefault(spec.name, set()).update(caught)
        return torch.cat([done[index][0] for index in sorted(done)])

    def _results(
        self, spec: AttackSpec, eps: float, indices: list[int]
    ) -> Iterator[tuple[int, tuple[torch.Tensor, list[str], float]]]:
        """(index, result) of each batch in `indices`: in turn here, or as the worker processes finish them."""
        if self.executor is None or len(indices) < 2:
            for index in indices:
                yield index, self.run_batch(spec, eps, index)
            return
        task = spec if spec.source_model is None else spec.name  # a model of its own is in the workers already
        futures = {
            self.executor.submit(_worker_batch, task, *self.examples(index), eps, self.norm, self.seed + index): index
            for index in indices
        }
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:
            for future in futures:
                future.cancel()
