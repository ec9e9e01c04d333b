"""`evaluate_robustness`: clean and robust accuracy of an image classifier under a list of attacks, as a report."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from ..data import resolve_columns
from ..files import atomic_write_text, locked
from .attacks import Norm, attack_mode, check_eps, fgsm, logits_of, pgd
from .autoattack import (
    AUTOATTACK_ATTACKS,
    STANDARD_ATTACKS,
    autoattack,
    autoattack_warnings,
    check_autoattack_attacks,
    usable_components,
)
from .classifier import as_classifier, attack_layout
from .report import (
    RobustnessReport,
    accuracy,
    check_eps_zero,
    check_monotone,
    check_not_above_clean,
    check_ordered,
    check_within_noise,
    make_check,
    wilson_interval,
)

ATTACK_HELP = (
    "clean, fgsm, pgd-<steps>[x<restarts>] (e.g. pgd-20, pgd-100, pgd-20x5), autoattack (standard: "
    f"{'+'.join(STANDARD_ATTACKS)}), autoattack:<a>+<b>+... with components from {', '.join(AUTOATTACK_ATTACKS)}"
)
_PGD = re.compile(r"^pgd-(?P<steps>\d+)(?:x(?P<restarts>\d+))?$")


@dataclass(frozen=True)
class AttackSpec:
    """One attack of an evaluation. PGD's step is `relative_step_size` * eps (0.25: 2/255 at eps = 8/255).

    Random starts and AutoAttack are seeded with the evaluation's seed plus the batch index.
    """

    name: str
    kind: str  # clean | fgsm | pgd | autoattack
    steps: int = 0
    restarts: int = 1
    relative_step_size: float = 0.25
    components: tuple[str, ...] | None = None  # AutoAttack components; None = version "standard"
    dropped: dict[str, str] | None = None  # standard components dropped for lack of classes, with the reason

    def settings(self, eps: float, norm: str, seed: int) -> dict[str, Any]:
        """What the report records about this attack at budget `eps`."""
        if self.kind == "clean":
            return {"type": "clean"}
        common = {"type": self.kind, "eps": eps, "norm": norm}
        if self.kind == "fgsm":
            return {**common, "step_size": eps, "random_start": False}
        if self.kind == "pgd":
            return {
                **common, "steps": self.steps, "restarts": self.restarts, "step_size": eps * self.relative_step_size,
                "relative_step_size": self.relative_step_size, "random_start": True, "loss": "cross_entropy",
                "seed": seed,
            }  # fmt: skip
        return {
            **common, "package": "pyautoattack",
            "version": "standard" if self.components is None or self.dropped else "custom",
            "attacks": list(self.components or STANDARD_ATTACKS), "dropped": self.dropped or {}, "seed": seed,
        }  # fmt: skip

    def run(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: Norm, seed: int
    ) -> torch.Tensor:
        """Adversarial examples for one batch."""
        if self.kind == "clean":
            return x
        if self.kind == "fgsm":
            return fgsm(model, x, y, eps=eps, norm=norm)
        if self.kind == "pgd":
            return pgd(
                model, x, y, eps=eps, norm=norm, steps=self.steps, restarts=self.restarts,
                step_size=eps * self.relative_step_size, seed=seed,
            )  # fmt: skip
        return autoattack(model, x, y, eps=eps, norm=norm, attacks=self.components, seed=seed)


def parse_attack(name: str | AttackSpec) -> AttackSpec:
    """`"clean"`, `"fgsm"`, `"pgd-20"`, `"pgd-20x5"` (5 restarts), `"autoattack"`, `"autoattack:apgd-ce+square"`."""
    if isinstance(name, AttackSpec):
        return name
    key = name.strip().lower()
    if key in ("clean", "fgsm"):
        return AttackSpec(key, key)
    if match := _PGD.match(key):
        steps, restarts = int(match["steps"]), int(match["restarts"] or 1)
        if steps >= 1 and restarts >= 1:
            return AttackSpec(key, "pgd", steps=steps, restarts=restarts)
    if key == "autoattack":
        return AttackSpec(key, "autoattack")
    if key.startswith("autoattack:"):
        return AttackSpec(key, "autoattack", components=check_autoattack_attacks(key.split(":", 1)[1].split("+")))
    raise ValueError(f"Unknown attack {name!r}. Valid attacks: {ATTACK_HELP}.")


def _as_tensor(value: Any) -> torch.Tensor:
    if isinstance(value, Image.Image):
        return torch.from_numpy(np.array(value.convert("RGB")))
    return torch.as_tensor(value)


def check_pixels(images: Any, name: str = "images") -> torch.Tensor:
    """A batch of images as float32 (N, C, H, W) in [0, 1], C in {1, 3}.

    uint8 images are scaled by 1/255 and channels-last (N, H, W, C) batches are transposed; PIL images and lists of
    arrays are stacked first.

    Raises:
        ValueError: before any attack runs, naming dtype, shape and range, when the batch is not 4-D, has no channel
            axis of size 1 or 3, or holds values outside [0, 1] (e.g. 0..255 in a float or int64 tensor).
    """
    if isinstance(images, (list, tuple)):
        images = torch.stack([_as_tensor(image) for image in images])
    x = _as_tensor(images)
    shape, dtype = tuple(x.shape), str(x.dtype).removeprefix("torch.")
    if x.dim() == 4 and x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
        x = x.permute(0, 3, 1, 2)
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(
            f"{name} have shape {shape} ({dtype}); expected a batch (N, 3, H, W) or (N, H, W, 3) "
            "(1 channel also accepted)."
        )
    x = x.float().div(255) if x.dtype == torch.uint8 else x.float()
    low, high = (float(x.min()), float(x.max())) if x.numel() else (0.0, 0.0)
    if not (0 <= low and high <= 1):
        raise ValueError(
            f"{name} ({dtype}, shape {shape}) hold values in [{low:g}, {high:g}]; the evaluator takes pixels in "
            "[0, 1] (float) or 0..255 as uint8. Divide by 255, or undo a normalisation: normalising models are "
            "wrapped by the evaluator, so pass raw pixels."
        )
    return x.contiguous()


def load_examples(
    dataset: datasets.Dataset | tuple[torch.Tensor, torch.Tensor], n_examples: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `n_examples` as tensors (pixel_values (N, 3, H, W) float32 in [0, 1], labels (N,) int64).

    Accepts a (pixel_values, labels) pair or a `datasets.Dataset` with columns img/image/pixel_values and
    label/labels, in any format (PIL images, `with_format("torch")` / `("numpy")` uint8 arrays, CHW or HWC;
    transforms set with `set_transform` apply). Images are checked by `check_pixels`.
    """
    size = len(dataset[1]) if isinstance(dataset, (tuple, list)) else len(dataset)
    n = size if n_examples is None else n_examples
    if not 1 <= n <= size:
        split = getattr(dataset, "split", None)
        raise ValueError(f"n_examples={n} but the {'split ' + str(split) if split else 'data'} has {size} examples.")
    if isinstance(dataset, (tuple, list)):
        images, labels = dataset[0][:n], dataset[1][:n]
    else:
        rows = dataset[:n]
        image_column, label_column = resolve_columns(list(rows))
        images, labels = rows[image_column], rows[label_column]
    return check_pixels(images, "pixel values"), torch.as_tensor(np.asarray(labels)).long()


def load_split(path: str, split: str, image_size: int, revision: str | None = None) -> datasets.Dataset:
    """A split of a local dataset folder or Hub id, with eval transforms (pixel_values in [0, 1], labels)."""
    from ..data import load_image_dataset

    return load_image_dataset(path, split=split, train=False, image_size=image_size, revision=revision)


def hub_commit(name_or_path: str, revision: str | None = None) -> str | None:
    """Commit hash of a Hub model's cached snapshot (offline); `revision` for local folders or when not cached."""
    if Path(name_or_path).exists():
        return revision
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(name_or_path, "config.json", revision=revision)
    return Path(config).parent.name if isinstance(config, str) else revision


def model_info(model: nn.Module, revision: str | None = None) -> dict[str, Any]:
    """Name (Hub id or folder), revision (commit hash when known) and class of a model."""
    config = getattr(model, "config", None)
    name = getattr(model, "name_or_path", None) or getattr(config, "_name_or_path", None) or type(model).__name__
    revision = revision or getattr(config, "_commit_hash", None)  # transformers < 5 kept the hash on the config
    return {"name": name, "revision": revision, "class": type(model).__name__}


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("mixacm-hf", "torch", "transformers", "datasets", "pyautoattack"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


def _check_adversarial(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str, name: str) -> None:
    """Adversarial examples must lie in [0, 1] and in the eps ball (up to float rounding)."""
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "Linf" else delta.norm(dim=1)
    if x_adv.min() < 0 or x_adv.max() > 1 or (size > eps * (1 + 1e-5) + 1e-6).any():
        raise RuntimeError(
            f"{name} returned examples outside [0, 1] or the {norm} ball of radius {eps:g} "
            f"(largest perturbation {size.max():.6g}, range [{x_adv.min():.4g}, {x_adv.max():.4g}])."
        )


CLEAN = AttackSpec("clean", "clean")
Sweep = dict[str, list[torch.Tensor | None]]  # attack -> per-example correctness at each eps (None: skipped)
KILL_AFTER_BATCHES = "MIXACM_EVAL_KILL_AFTER_BATCHES"  # test hook: SIGKILL this process after saving that many batches


def _distributed() -> tuple[int, int]:
    """(rank, world size) of an initialised `torch.distributed` group, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class Progress:
    """Per-batch results of an evaluation in a folder, so that an interrupted evaluation resumes where it stopped.

    `config.json` holds the evaluation's settings (a rerun with other settings is refused); each finished batch of
    each attack at each eps is one small JSON file, written atomically.
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

    def load(self, key: str, index: int) -> tuple[torch.Tensor, list[str]] | None:
        """Correctness flags and pyautoattack warnings of a finished batch, or None."""
        path = self._file(key, index)
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return torch.tensor(data["correct"], dtype=torch.bool), data["warnings"]

    def save(self, key: str, index: int, correct: torch.Tensor, caught: list[str]) -> None:
        atomic_write_text(self._file(key, index), json.dumps({"correct": correct.tolist(), "warnings": caught}))
        self.saved += 1
        if self.saved == int(os.environ.get(KILL_AFTER_BATCHES, 0)):
            os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class _Run:
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

    def _batch(self, spec: AttackSpec, eps: float, index: int) -> tuple[torch.Tensor, list[str]]:
        start = index * self.batch_size
        x = self.x[start : start + self.batch_size].to(self.device)
        y = self.y[start : start + self.batch_size].to(self.device)
        with autoattack_warnings() as caught:
            x_adv = spec.run(self.model, x, y, eps, self.norm, self.seed + index)
        _check_adversarial(x_adv, x, eps, self.norm, spec.name)
        with torch.no_grad(), attack_mode(self.model, self.device.type):
            correct = (logits_of(self.model(x_adv)).argmax(1) == y).cpu()
        return correct, sorted(set(caught))

    def correct(self, spec: AttackSpec, eps: float) -> torch.Tensor:
        """Per-example correctness (bool, on CPU) on `spec`'s adversarial examples at budget `eps`."""
        self.bar.set_description(f"{spec.name} eps={eps:.4f}")
        rank, world = _distributed()
        key = f"{re.sub(r'[^a-z0-9.+-]', '_', spec.name)}-eps{eps:.8f}"
        done = {}
        for index in range(rank, math.ceil(len(self.x) / self.batch_size), world):
            done[index] = self.progress.load(key, index) if self.progress else None
            if done[index] is None:
                done[index] = self._batch(spec, eps, index)
                if self.progress:
                    self.progress.save(key, index, *done[index])
            self.bar.update(1)
        if world > 1:
            gathered = [None] * world
            torch.distributed.all_gather_object(gathered, done)
            done = {index: result for part in gathered for index, result in part.items()}
        for _, caught in done.values():
            self.warnings.setdefault(spec.name, set()).update(caught)
        return torch.cat([done[index][0] for index in sorted(done)])


def _sweep(run: _Run, specs: list[AttackSpec], sweep_eps: list[float], eps: float, at_eps: dict) -> Sweep:
    """Correctness of each attack at each budget; reuses the results at the main eps; no AutoAttack at eps = 0."""
    return {
        spec.name: [
            None if e == 0 and spec.kind == "autoattack"
            else at_eps[spec.name] if math.isclose(e, eps)
            else run.correct(spec, e)
            for e in sweep_eps
        ]
        for spec in specs
    }  # fmt: skip


def _sweep_runs(specs: list[AttackSpec], sweep_eps: list[float], eps: float) -> int:
    return sum(not (e == 0 and s.kind == "autoattack") and not math.isclose(e, eps) for e in sweep_eps for s in specs)


def _correct_at_zero(
    run: _Run, sweep_eps: list[float] | None, sweep: Sweep | None
) -> tuple[dict[str, torch.Tensor], str]:
    """Per-example correctness of the attacks at eps = 0: from the sweep when it has 0, else FGSM at eps = 0."""
    if sweep is None or 0.0 not in sweep_eps:
        return {"fgsm": run.correct(AttackSpec("fgsm", "fgsm"), 0.0)}, "fgsm at eps=0"
    at = sweep_eps.index(0.0)
    return {name: flags[at] for name, flags in sweep.items() if flags[at] is not None}, "sweep"


def _sanity_checks(
    specs: list[AttackSpec],
    clean: torch.Tensor,
    correct: dict[str, torch.Tensor],
    at_zero: tuple[dict[str, torch.Tensor], str],
    sweep_eps: list[float] | None,
    sweep: Sweep | None,
) -> list[dict[str, Any]]:
    """robust <= clean; AutoAttack <= PGD/FGSM; more steps not above fewer beyond noise; eps = 0 equals clean;
    accuracy does not rise with eps along the sweep."""
    clean_accuracy = accuracy(clean)
    accuracies = {name: accuracy(flags) for name, flags in correct.items()}
    gradient = sorted((s for s in specs if s.kind in ("fgsm", "pgd")), key=lambda s: max(s.steps, 1) * s.restarts)
    checks = check_not_above_clean(clean_accuracy, accuracies)
    checks += [check_ordered(a.name, g.name, accuracies) for a in specs if a.kind == "autoattack" for g in gradient]
    checks += [check_within_noise(b.name, a.name, correct) for i, a in enumerate(gradient) for b in gradient[i + 1 :]]
    zero = check_eps_zero(clean, at_zero[0])
    checks.append({**zero, "detail": f"{zero['detail']} ({at_zero[1]})"})
    for name, flags in (sweep or {}).items():
        measured = [(e, f) for e, f in zip(sweep_eps, flags) if f is not None]
        checks.append(check_monotone(name, [e for e, _ in measured], [f for _, f in measured]))
    return checks


def _resolve(
    model: nn.Module | str,
    dataset: datasets.Dataset | tuple[torch.Tensor, torch.Tensor] | str,
    split: str,
    dataset_name: str | None,
    model_revision: str | None,
    dataset_revision: str | None,
    trust_remote_code: bool,
    normalization: tuple[Sequence[float] | None, Sequence[float] | None],
) -> tuple[nn.Module, datasets.Dataset | tuple[torch.Tensor, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """Load a model / dataset given by path or Hub id, apply the input contract; describe both for the report."""
    described = model
    if isinstance(model, str):
        model_revision = hub_commit(model, model_revision)
    wrapped, contract = as_classifier(
        model, image_mean=normalization[0], image_std=normalization[1], revision=model_revision,
        trust_remote_code=trust_remote_code,
    )  # fmt: skip
    if isinstance(described, str):
        described = getattr(wrapped, "model", wrapped)
    if isinstance(dataset, str):
        dataset_name = dataset_name or dataset
        image_size = getattr(getattr(wrapped, "config", None), "image_size", 32)
        dataset = load_split(dataset, split, image_size, dataset_revision)
    info = getattr(dataset, "info", None)
    dataset_meta = {
        "name": dataset_name or getattr(info, "dataset_name", None) or type(dataset).__name__,
        "split": str(getattr(dataset, "split", None) or split),
        "revision": dataset_revision,
    }
    model_meta = {**model_info(described, model_revision), **contract, "attack_dtype": "float32"}
    if isinstance(model, str):
        model_meta["name"] = model
    return wrapped, dataset, model_meta, dataset_meta


def _autoattack_components(specs: list[AttackSpec], num_classes: int) -> list[AttackSpec]:
    """AutoAttack specs with the components usable for `num_classes` (see `usable_components`)."""
    return [
        replace(spec, **dict(zip(("components", "dropped"), usable_components(spec.components, num_classes))))
        if spec.kind == "autoattack" else spec
        for spec in specs
    ]  # fmt: skip


def _warning_checks(found: dict[str, set[str]]) -> list[dict[str, Any]]:
    """pyautoattack's own warnings (probability outputs, randomness, ...) as failed sanity checks."""
    return [
        make_check(f"{name}: pyautoattack warning", False, message)
        for name, messages in found.items()
        for message in sorted(messages)
    ]


def evaluate_robustness(
    model: nn.Module | str,
    dataset: datasets.Dataset | tuple[torch.Tensor, torch.Tensor] | str,
    attacks: Sequence[str | AttackSpec] = ("clean", "pgd-20"),
    *,
    eps: float = 8 / 255,
    norm: Norm = "Linf",
    n_examples: int | None = None,
    batch_size: int = 128,
    seed: int = 0,
    device: str | torch.device | None = None,
    eps_sweep: Sequence[float] | None = None,
    split: str = "test",
    dataset_name: str | None = None,
    model_revision: str | None = None,
    dataset_revision: str | None = None,
    trust_remote_code: bool = False,
    image_mean: Sequence[float] | None = None,
    image_std: Sequence[float] | None = None,
    resume_dir: str | Path | None = None,
    channels_last: bool = True,
    progress: bool = True,
) -> RobustnessReport:
    """Clean and robust accuracy under each attack, the per-example worst case ("all") and per-example records.

    `model`: anything `as_classifier` accepts (folder / Hub id, `PreTrainedModel`, timm model, module taking
    [0, 1] pixels); models that normalise outside are wrapped with their processor's mean/std (or `image_mean` /
    `image_std`), and bf16/fp16 models are attacked in fp32 (their dtype is restored). The report's `model` says
    which. `dataset`: a `datasets.Dataset` (any format), a (pixel_values, labels) pair (float in [0, 1] or uint8,
    CHW or HWC), or a folder / Hub id (`split` is loaded); the first `n_examples` are used (default: all).
    `attacks`: names as in `parse_attack`; AutoAttack components that need more classes than the model has are
    dropped per AutoAttack's rule (recorded). `eps_sweep` re-runs the attacks at each budget (AutoAttack is skipped
    at eps = 0). `channels_last` runs convolutions in channels-last memory (faster; the same attacks, verdicts equal
    up to float summation order on borderline examples). `resume_dir`: per-batch progress is kept there and reused
    by an identical rerun. Under an initialised `torch.distributed` group the batches are spread over the processes
    (batch i on rank i % world size, seeded with seed + i); every rank returns the report.

    Raises:
        ValueError: bad eps, attack names, images, n_examples or a model whose input convention is unknown, all
            before any attack runs.
    """
    eps = check_eps(eps, norm)
    specs = list({spec.name: spec for spec in map(parse_attack, attacks)}.values())
    sweep_eps = None if eps_sweep is None else [check_eps(float(e), norm) for e in eps_sweep]
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, dataset, model_meta, dataset_meta = _resolve(
        model, dataset, split, dataset_name, model_revision, dataset_revision, trust_remote_code,
        (image_mean, image_std),
    )  # fmt: skip
    x, y = load_examples(dataset, n_examples)
    model_meta["memory_format"] = "channels_last" if channels_last else "contiguous"
    with attack_layout(model.to(device), channels_last):
        with torch.no_grad(), attack_mode(model, device.type):
            model_meta["num_classes"] = logits_of(model(x[:1].to(device))).shape[1]
        specs = _autoattack_components(specs, model_meta["num_classes"])
        attacked = [spec for spec in specs if spec.kind != "clean"]
        settings = {
            "model": model_meta, "dataset": dataset_meta, "n_examples": len(x), "batch_size": batch_size,
            "seed": seed, "eps": eps, "norm": norm, "attacks": [s.name for s in specs], "eps_sweep": sweep_eps,
        }  # fmt: skip
        saved = None if resume_dir is None else Progress(resume_dir, settings)
        runs = 1 + len(attacked) + (_sweep_runs(attacked, sweep_eps, eps) if sweep_eps else 0)
        runs += 0 if sweep_eps and 0.0 in sweep_eps else 1
        rank, world = _distributed()
        total = runs * len(range(rank, math.ceil(len(x) / batch_size), world))
        with tqdm(total=total, disable=not progress or rank != 0, unit="batch") as bar:
            run = _Run(model, x, y, norm, seed, batch_size, device, bar, saved)
            seconds, correct = {}, {}
            for spec in [CLEAN, *attacked]:
                start = time.perf_counter()
                correct[spec.name] = run.correct(spec, eps)
                seconds[spec.name] = time.perf_counter() - start
            clean = correct.pop("clean")
            sweep = None if sweep_eps is None else _sweep(run, attacked, sweep_eps, eps, correct)
            at_zero = _correct_at_zero(run, sweep_eps, sweep)

    worst = torch.stack([clean, *correct.values()]).all(0)
    flags = {"clean": clean, **correct, "all": worst}
    robust = {name: accuracy(f) for name, f in flags.items() if name != "clean"}
    report = RobustnessReport(
        clean_accuracy=accuracy(clean),
        robust_accuracy=robust,
        n_examples=len(x),
        eps=eps,
        norm=norm,
        attacks={spec.name: spec.settings(eps, norm, seed) for spec in specs},
        seconds=seconds,
        seed=seed,
        model=model_meta,
        dataset=dataset_meta,
        intervals={name: wilson_interval(int(f.sum()), len(x)) for name, f in flags.items()},
        sanity_checks=[
            *_sanity_checks(attacked, clean, correct, at_zero, sweep_eps, sweep), *_warning_checks(run.warnings)
        ],
        eps_sweep=None if sweep is None else {
            "eps": sweep_eps,
            "robust_accuracy": {
                name: [None if f is None else accuracy(f) for f in flags] for name, flags in sweep.items()
            },
        },
        versions=_versions(),
        per_example={"index": list(range(len(x))), **{name: f.tolist() for name, f in flags.items()}},
        processes=world,
    )  # fmt: skip
    if report.flags:
        warnings.warn(
            "Robustness sanity checks failed (possible gradient masking or a broken evaluation): "
            + "; ".join(report.flags),
            stacklevel=2,
        )
    return report
