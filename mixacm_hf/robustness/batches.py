"""Running attacks batch by batch: progress kept per batch (resume), batches spread over `torch.distributed`
processes, every adversarial batch checked to lie in [0, 1] and the eps ball."""

from __future__ import annotations

import json
import math
import re
import time
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


def _check_adversarial(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str, name: str) -> None:
    """Adversarial examples must lie in [0, 1] and in the eps ball (up to float rounding)."""
    delta = (x_adv - x).flatten(1)
    size = {"Linf": delta.abs().amax(1), "L1": delta.abs().sum(1)}.get(norm, delta.norm(dim=1))
    if x_adv.min() < 0 or x_adv.max() > 1 or (size > eps * (1 + 1e-5) + 1e-6).any():
        raise RuntimeError(
            f"{name} returned examples outside [0, 1] or the {norm} ball of radius {eps:g} "
            f"(largest perturbation {size.max():.6g}, range [{x_adv.min():.4g}, {x_adv.max():.4g}])."
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


@dataclass
class AttackRun:
    """Model, examples and settings shared by every attack of one evaluation.

    Batches are spread over the processes of a `torch.distributed` group (batch i on rank i % world size, seeded
    with seed + i whatever the number of processes) and the flags gathered on every rank.
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
    warnings: dict[str, set[str]] = field(default_factory=dict)
    seconds: dict[tuple[str, float], float] = field(default_factory=dict)  # (attack, eps) -> this rank's seconds

    def __post_init__(self):
        check_batch_size(self.batch_size)

    def _batch(self, spec: AttackSpec, eps: float, index: int) -> tuple[torch.Tensor, list[str], float]:
        began = time.perf_counter()
        start = index * self.batch_size
        x = self.x[start : start + self.batch_size].to(self.device)
        y = self.y[start : start + self.batch_size].to(self.device)
        with autoattack_warnings() as caught:
            x_adv = spec.run(self.model, x, y, eps, self.norm, self.seed + index)
        _check_adversarial(x_adv, x, eps, self.norm, spec.name)
        with torch.no_grad(), attack_mode(self.model, self.device.type):
            correct = (logits_of(self.model(x_adv)).argmax(1) == y).cpu()
        return correct, sorted(set(caught)), time.perf_counter() - began

    def correct(self, spec: AttackSpec, eps: float) -> torch.Tensor:
        """Per-example correctness (bool, on CPU) on `spec`'s adversarial examples at budget `eps`; its seconds on
        this rank (batches run now plus those resumed from `progress`, as they took then) go to
        `seconds[spec.name, eps]`."""
        self.bar.set_description(f"{spec.name} eps={eps:.4f}")
        rank, world = rank_and_world_size()
        key = f"{re.sub(r'[^a-z0-9.+-]', '_', spec.name)}-eps{eps:.8f}"
        done, failure = {}, None
        try:
            for index in range(rank, math.ceil(len(self.x) / self.batch_size), world):
                result = self.progress.load(key, index) if self.progress else None
                if result is None:
                    result = self._batch(spec, eps, index)
                    if self.progress:
                        self.progress.save(key, index, *result)
                done[index] = result
                self.bar.update(1)
        except Exception as error:  # every rank learns of it at the gathering below, none waits for this one
            failure = error
        self.seconds[spec.name, eps] = sum(seconds for _, _, seconds in done.values())
        gathered = gather_from_ranks(done, failure)
        done = {index: result for part in gathered for index, result in part.items()}
        for _, caught, _ in done.values():
            self.warnings.setdefault(spec.name, set()).update(caught)
        return torch.cat([done[index][0] for index in sorted(done)])
