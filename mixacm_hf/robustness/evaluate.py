"""`evaluate_robustness`: clean and robust accuracy of an image classifier under a list of attacks, as a report."""

from __future__ import annotations

import math
import re
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from ..data import resolve_columns
from .attacks import Norm, attack_mode, check_eps, fgsm, logits_of, pgd
from .autoattack import AUTOATTACK_ATTACKS, STANDARD_ATTACKS, autoattack, check_autoattack_attacks
from .report import (
    RobustnessReport,
    accuracy,
    check_eps_zero,
    check_monotone,
    check_not_above_clean,
    check_ordered,
    check_within_noise,
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
            **common, "package": "pyautoattack", "version": "standard" if self.components is None else "custom",
            "attacks": list(self.components or STANDARD_ATTACKS), "seed": seed,
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


def pil_to_pixels(image: Image.Image) -> torch.Tensor:
    """PIL image -> float tensor (3, H, W) in [0, 1], without resizing."""
    return torch.from_numpy(np.array(image.convert("RGB"), dtype=np.uint8)).permute(2, 0, 1).float().div(255)


def _to_pixels(value: Any) -> torch.Tensor:
    return pil_to_pixels(value) if isinstance(value, Image.Image) else torch.as_tensor(value, dtype=torch.float32)


def load_examples(
    dataset: datasets.Dataset | tuple[torch.Tensor, torch.Tensor], n_examples: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `n_examples` as tensors (pixel_values (N, 3, H, W) in [0, 1], labels (N,)).

    Accepts a (pixel_values, labels) pair or a `datasets.Dataset` with columns img/image/pixel_values and
    label/labels (PIL images are converted; transforms set with `set_transform` apply).
    """
    size = len(dataset[1]) if isinstance(dataset, (tuple, list)) else len(dataset)
    n = size if n_examples is None else n_examples
    if not 1 <= n <= size:
        split = getattr(dataset, "split", None)
        raise ValueError(f"n_examples={n} but the {'split ' + str(split) if split else 'data'} has {size} examples.")
    if isinstance(dataset, (tuple, list)):
        x, y = dataset
        return x[:n].float(), torch.as_tensor(y[:n]).long()
    rows = dataset[:n]
    image_column, label_column = resolve_columns(list(rows))
    x = torch.stack([_to_pixels(value) for value in rows[image_column]])
    return x, torch.as_tensor(rows[label_column]).long()


def load_classifier(name_or_path: str, revision: str | None = None, trust_remote_code: bool = False) -> nn.Module:
    """An image classifier from a local folder or Hub id (WideResNets resolve through mixacm_hf's Auto classes)."""
    from transformers import AutoModelForImageClassification

    return AutoModelForImageClassification.from_pretrained(
        name_or_path, revision=revision, trust_remote_code=trust_remote_code
    )


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


@dataclass
class _Run:
    """Model, examples and settings shared by every attack of one evaluation."""

    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    norm: Norm
    seed: int
    batch_size: int
    device: torch.device
    bar: tqdm

    def correct(self, spec: AttackSpec, eps: float) -> torch.Tensor:
        """Per-example correctness (bool, on CPU) on `spec`'s adversarial examples at budget `eps`."""
        self.bar.set_description(f"{spec.name} eps={eps:.4f}")
        correct = []
        for index, start in enumerate(range(0, len(self.x), self.batch_size)):
            x = self.x[start : start + self.batch_size].to(self.device)
            y = self.y[start : start + self.batch_size].to(self.device)
            x_adv = spec.run(self.model, x, y, eps, self.norm, self.seed + index)
            _check_adversarial(x_adv, x, eps, self.norm, spec.name)
            with torch.no_grad(), attack_mode(self.model, self.device.type):
                correct.append((logits_of(self.model(x_adv)).argmax(1) == y).cpu())
            self.bar.update(1)
        return torch.cat(correct)


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
) -> tuple[nn.Module, datasets.Dataset | tuple[torch.Tensor, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """Load a model / dataset given by path or Hub id; describe both for the report."""
    if isinstance(model, str):
        name_or_path, model = model, load_classifier(model, model_revision, trust_remote_code)
        model_revision = hub_commit(name_or_path, model_revision)
    if isinstance(dataset, str):
        dataset_name = dataset_name or dataset
        image_size = getattr(getattr(model, "config", None), "image_size", 32)
        dataset = load_split(dataset, split, image_size, dataset_revision)
    info = getattr(dataset, "info", None)
    dataset_meta = {
        "name": dataset_name or getattr(info, "dataset_name", None) or type(dataset).__name__,
        "split": str(getattr(dataset, "split", None) or split),
        "revision": dataset_revision,
    }
    return model, dataset, model_info(model, model_revision), dataset_meta


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
    progress: bool = True,
) -> RobustnessReport:
    """Clean accuracy and robust accuracy under each attack (and the per-example worst case, "all").

    `model`: an HF image classifier (output with `.logits`) or a plain module returning logits, or a folder /
    Hub id (moved to `device`; default cuda when available). `dataset`: a `datasets.Dataset`, a (pixel_values,
    labels) pair, or a folder / Hub id (`split` is loaded); the first `n_examples` are used (default: all).
    `attacks`: names as in `parse_attack`. `eps_sweep` re-runs the attacks at each budget (AutoAttack is skipped
    at eps = 0). Sanity checks that hint at gradient masking are recorded in the report and warned about.
    """
    eps = check_eps(eps, norm)
    specs = list({spec.name: spec for spec in map(parse_attack, attacks)}.values())
    attacked = [spec for spec in specs if spec.kind != "clean"]
    sweep_eps = None if eps_sweep is None else [check_eps(float(e), norm) for e in eps_sweep]
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, dataset, model_meta, dataset_meta = _resolve(
        model, dataset, split, dataset_name, model_revision, dataset_revision, trust_remote_code
    )
    x, y = load_examples(dataset, n_examples)
    runs = 1 + len(attacked) + (_sweep_runs(attacked, sweep_eps, eps) if sweep_eps else 0)
    runs += 0 if sweep_eps and 0.0 in sweep_eps else 1
    with tqdm(total=runs * math.ceil(len(x) / batch_size), disable=not progress, unit="batch") as bar:
        run = _Run(model.to(device), x, y, norm, seed, batch_size, device, bar)
        seconds, correct = {}, {}
        for spec in [CLEAN, *attacked]:
            start = time.perf_counter()
            correct[spec.name] = run.correct(spec, eps)
            seconds[spec.name] = time.perf_counter() - start
        clean = correct.pop("clean")
        sweep = None if sweep_eps is None else _sweep(run, attacked, sweep_eps, eps, correct)
        at_zero = _correct_at_zero(run, sweep_eps, sweep)

    worst = torch.stack([clean, *correct.values()]).all(0)
    robust = {name: accuracy(flags) for name, flags in {**correct, "all": worst}.items()}
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
        intervals={
            name: wilson_interval(int(flags.sum()), len(x))
            for name, flags in {"clean": clean, **correct, "all": worst}.items()
        },
        sanity_checks=_sanity_checks(attacked, clean, correct, at_zero, sweep_eps, sweep),
        eps_sweep=None if sweep is None else {
            "eps": sweep_eps,
            "robust_accuracy": {
                name: [None if f is None else accuracy(f) for f in flags] for name, flags in sweep.items()
            },
        },
        versions=_versions(),
    )  # fmt: skip
    if report.flags:
        warnings.warn(
            "Robustness sanity checks failed (possible gradient masking or a broken evaluation): "
            + "; ".join(report.flags),
            stacklevel=2,
        )
    return report
