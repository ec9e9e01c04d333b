"""`evaluate_robustness`: clean and robust accuracy of an image classifier under a list of attacks, as a report."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import datasets
import torch
from torch import nn
from tqdm.auto import tqdm

from ..data import check_labels, class_names, label_order, model_class_names
from ..data.identity import dataset_identity
from ..provenance import package_versions
from ..statistics import wilson_interval
from ..teachers import PixelSpaceClassifier, check_zoo_preprocessing, is_zoo_spec
from .attacks import Norm, attack_mode, check_budget, check_eps, logits_of
from .batches import AttackRun, Progress, check_batch_size, check_workers, rank_and_world_size
from .classifier import as_classifier, attack_layout
from .corruption_runs import corruption_accuracy, corruption_runs, corruption_specs, corruptions_folder
from .inputs import example_indices, load_examples, load_split
from .registry import CLEAN, AttackSpec, check_attack_norms, parse_attack
from .report import (
    RobustnessReport,
    accuracy,
    check_eps_zero,
    check_monotone,
    check_not_above_clean,
    check_ordered,
    check_within_noise,
    make_check,
)
from .transfer import check_transfer_sources, check_white_box_partner, load_transfer_sources, transfer_checks


def hub_commit(name_or_path: str, revision: str | None = None) -> str | None:
    """Commit hash of a Hub model's cached snapshot (offline); `revision` for local folders or when not cached."""
    if Path(name_or_path).exists():
        return revision
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        config = try_to_load_from_cache(name_or_path, "config.json", revision=revision)
    except HFValidationError:  # not a Hub id (e.g. a missing folder): loading says so, naming it
        return revision
    return Path(config).parent.name if isinstance(config, str) else revision


def model_info(model: nn.Module, revision: str | None = None) -> dict[str, Any]:
    """Name (Hub id or folder), revision (commit hash when known) and class of a model."""
    config = getattr(model, "config", None)
    name = getattr(model, "name_or_path", None) or getattr(config, "_name_or_path", None) or type(model).__name__
    revision = revision or getattr(config, "_commit_hash", None)  # transformers < 5 kept the hash on the config
    return {"name": name, "revision": revision, "class": type(model).__name__}


Sweep = dict[str, list[torch.Tensor | None]]  # attack -> per-example correctness at each eps (None: skipped)


def _sweep(run: AttackRun, specs: list[AttackSpec], sweep_eps: list[float], eps: float, at_eps: dict) -> Sweep:
    """Correctness of each attack at each budget; reuses the results at the main eps; no AutoAttack at eps = 0."""
    return {
        spec.name: [
            None if e == 0 and spec.attack.role == "ensemble"
            else at_eps[spec.name] if math.isclose(e, eps)
            else run.correct(spec, e)
            for e in sweep_eps
        ]
        for spec in specs
    }  # fmt: skip


def _sweep_runs(specs: list[AttackSpec], sweep_eps: list[float], eps: float) -> int:
    return sum(
        not (e == 0 and s.attack.role == "ensemble") and not math.isclose(e, eps) for e in sweep_eps for s in specs
    )


def _correct_at_zero(
    run: AttackRun, sweep_eps: list[float] | None, sweep: Sweep | None
) -> tuple[dict[str, torch.Tensor], str]:
    """Per-example correctness of the attacks at eps = 0: from the sweep when it has 0, else FGSM at eps = 0 (in
    Linf for an L1 evaluation: every norm's ball of radius 0 is the image itself)."""
    if sweep is None or 0.0 not in sweep_eps:
        fgsm = parse_attack("fgsm")
        run = run if run.norm in fgsm.attack.norms else replace(run, norm="Linf")
        return {"fgsm": run.correct(fgsm, 0.0)}, "fgsm at eps=0"
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
    """robust <= clean; AutoAttack <= PGD/FGSM; more steps not above fewer beyond noise; white-box PGD <= transfer;
    eps = 0 equals clean; accuracy does not rise with eps along the sweep. An evaluation with `autoattack:rand`
    declares the model randomised: its comparisons with clean and AutoAttack's with PGD then hold within noise."""
    randomised = any(s.version == "rand" for s in specs)
    accuracies = {name: accuracy(flags) for name, flags in correct.items()}
    gradient = sorted((s for s in specs if s.attack.role == "gradient"), key=lambda s: s.attack.strength(s))
    if randomised:
        with_clean = {**correct, "clean": clean}
        checks = [check_within_noise(name, "clean", with_clean) for name in correct]
        order = [
            check_within_noise(a.name, g.name, correct) for a in specs if a.attack.role == "ensemble" for g in gradient
        ]
    else:
        checks = check_not_above_clean(accuracy(clean), accuracies)
        order = [
            check_ordered(a.name, g.name, accuracies) for a in specs if a.attack.role == "ensemble" for g in gradient
        ]
    checks += order + transfer_checks(specs, correct)
    checks += [check_within_noise(b.name, a.name, correct) for i, a in enumerate(gradient) for b in gradient[i + 1 :]]
    zero = check_eps_zero(clean, at_zero[0], randomised)
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
    image_size: int | None = None,
    robustbench_model_dir: str | None = None,
) -> tuple[nn.Module, datasets.Dataset | tuple[torch.Tensor, torch.Tensor], dict[str, Any], dict[str, Any], Any]:
    """Load a model / dataset given by path or Hub id, apply the input contract; describe both for the report and
    return the model as loaded (before the input contract: its config names its classes) last.

    A split is loaded at `image_size`; by default at its own size when the model's image processor resizes (the
    wrapper resizes as the processor does: attacks stay in the dataset's pixels), else at the model's
    `config.image_size` (32 without one: a RobustBench zoo entry's is its dataset's), for a zoo entry only when that
    gives RobustBench's own preprocessing of its images (`check_zoo_preprocessing`)."""
    described = model
    zoo_spec = model if is_zoo_spec(model) else (getattr(model, "provenance", None) or {}).get("spec")
    if isinstance(dataset, str) and zoo_spec:
        check_zoo_preprocessing(zoo_spec, image_size)
    if isinstance(model, str) and not is_zoo_spec(model):
        model_revision = hub_commit(model, model_revision)
    wrapped, contract = as_classifier(
        model, image_mean=normalization[0], image_std=normalization[1], revision=model_revision,
        trust_remote_code=trust_remote_code, robustbench_model_dir=robustbench_model_dir,
    )  # fmt: skip
    if isinstance(described, str):
        described = getattr(wrapped, "model", wrapped)
    if isinstance(dataset, str):
        dataset_name = dataset_name or dataset
        if image_size is None and not (isinstance(wrapped, PixelSpaceClassifier) and wrapped.steps.size is not None):
            image_size = getattr(getattr(wrapped, "config", None), "image_size", 32)
        dataset = load_split(dataset, split, image_size, dataset_revision)
    info = getattr(dataset, "info", None)
    dataset_meta = {
        "name": dataset_name or getattr(info, "dataset_name", None) or type(dataset).__name__,
        "split": str(getattr(dataset, "split", None) or split),
        "revision": dataset_revision,
    }
    dataset_meta["identity"] = dataset_identity(dataset_meta["name"])  # here, where a relative path means something
    model_meta = {**model_info(described, model_revision), **contract, "attack_dtype": "float32"}
    if isinstance(model, str):  # a zoo entry as RobustBench spells it (its dataset and threat model in any case)
        model_meta["name"] = contract["source"]["spec"] if is_zoo_spec(model) else model
    return wrapped, dataset, model_meta, dataset_meta, described


def _labels_by_name(labels: torch.Tensor, dataset: Any, model: Any, dataset_meta: dict[str, Any]) -> torch.Tensor:
    """The labels as the model's class indices: matched by name where the dataset and the model name their classes
    (`label_order`), else as they are (with a warning where only one side has names)."""
    names = class_names(dataset) if isinstance(dataset, datasets.Dataset) else None
    data = (
        f"the {dataset_meta['split']!r} split of {dataset_meta['name']}" if isinstance(dataset, datasets.Dataset)
        else "the given (pixel_values, labels) tensors"
    )  # fmt: skip
    order = label_order(names, model_class_names(model), data)
    if order is None:
        return labels
    check_labels(labels, len(order), dataset_meta["split"])
    return torch.as_tensor(order)[labels]


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
    image_size: int | None = None,
    robustbench_model_dir: str | None = None,
    workers: int = 1,
    corruptions_dir: str | Path | None = None,
) -> RobustnessReport:
    """Clean and robust accuracy under each attack, the per-example worst case ("all") and per-example records.

    `model`: anything `as_classifier` accepts (folder / Hub id, RobustBench zoo entry `robustbench:...` read from
    `robustbench_model_dir`, `PreTrainedModel`, timm model, module taking [0, 1] pixels); models that normalise
    outside are wrapped with their processor's mean/std (or `image_mean` / `image_std`), and bf16/fp16 models are
    attacked in fp32 (their dtype is restored). The report's `model` says which. `dataset`: a `datasets.Dataset`
    (any format), a (pixel_values, labels) pair (float in [0, 1] or uint8, CHW or HWC), or a folder / Hub id
    (`split` is loaded at `image_size`, see `_resolve`); the first `n_examples` are used (default: all). Labels
    are matched to the model's classes by name where both name them (`label_order`), else used by position.
    `attacks`: names as in `parse_attack`; AutoAttack components that need more classes than the model has are
    dropped per AutoAttack's rule (recorded). `eps_sweep` re-runs the attacks at each budget (AutoAttack is skipped
    at eps = 0). `channels_last` runs convolutions in channels-last memory (faster; the same attacks, verdicts equal
    up to float summation order on borderline examples). `resume_dir`: per-batch progress is kept there and reused
    by an identical rerun. Under an initialised `torch.distributed` group the batches are spread over the processes
    (batch i on rank i % world size, seeded with seed + i); every rank returns the report. `workers` > 1 (CPU, one
    process) runs the batches on that many worker processes sharing the torch threads: the same batches and seeds,
    so the verdicts of one process running them at the workers' thread count; `seconds` are then wall time.
    A `corruptions` evaluation (no eps or norm applies to it) reads its images from `corruptions_dir` (the published
    CIFAR-10-C layout, `corruptions.py`; its labels must be the evaluated ones, in order) or, without one, generates
    them from the evaluated images with imagecorruptions (recorded as generated); the report gives its mean accuracy
    as the attack's accuracy and the accuracy per corruption and severity in `corruptions`. It has no per-example
    column and is not part of "all".

    Raises:
        ValueError: bad eps, attack names, images, n_examples (< 1 or more than the split has), batch_size < 1,
            workers that cannot run here, labels out of the model's classes, classes other than the model's
            (matched by name), a model whose input convention is unknown, or a `corruptions_dir` that is missing
            files, of the wrong shape or size, with other labels or fewer images than evaluated, or a transfer
            source of other classes or input size (`check_transfer_sources`), all before any attack runs.
    """
    eps = check_budget(eps, norm)
    specs = list({spec.name: spec for spec in map(parse_attack, attacks)}.values())
    check_attack_norms(specs, norm)
    check_white_box_partner(specs)
    folder = corruptions_folder(specs, corruptions_dir, n_examples)
    specs = load_transfer_sources(specs, model, robustbench_model_dir)
    sweep_eps = None if eps_sweep is None else [check_eps(float(e), norm) for e in eps_sweep]
    if sweep_eps and all(spec.attack.role in ("clean", "corruption") for spec in specs):
        warning = "eps_sweep left out: none of the attacks has a budget to sweep (common corruptions have none)."
        warnings.warn(warning, stacklevel=2)
        sweep_eps = None
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    check_workers(workers, device)
    model, dataset, model_meta, dataset_meta, loaded = _resolve(
        model, dataset, split, dataset_name, model_revision, dataset_revision, trust_remote_code,
        (image_mean, image_std), image_size, robustbench_model_dir,
    )  # fmt: skip
    x, y = load_examples(dataset, n_examples)
    specs = corruption_specs(specs, folder, x, y, dataset_meta)  # the folder's labels are the split's, unmapped
    y = _labels_by_name(y, dataset, loaded, dataset_meta)
    check_eps(eps, norm, pixels=x[0].numel())
    check_batch_size(batch_size)
    model_meta["memory_format"] = "channels_last" if channels_last else "contiguous"
    with attack_layout(model.to(device), channels_last):
        with torch.no_grad(), attack_mode(model, device.type):
            model_meta["num_classes"] = logits_of(model(x[:1].to(device))).shape[1]
        check_labels(y, model_meta["num_classes"], classes_of="the model")
        check_transfer_sources(specs, loaded, x, model_meta["num_classes"], device)
        specs = [spec.attack.prepare(spec, model_meta["num_classes"]) for spec in specs]
        attacked = [spec for spec in specs if spec.attack.role not in ("clean", "corruption")]  # in an eps ball
        corrupting = [spec for spec in specs if spec.attack.role == "corruption"]
        settings = {
            "model": model_meta, "dataset": dataset_meta, "n_examples": len(x), "batch_size": batch_size,
            "seed": seed, "eps": eps, "norm": norm, "attacks": [s.name for s in specs], "eps_sweep": sweep_eps,
        }  # fmt: skip
        if sources := {s.name: s.source for s in specs if s.attack.role == "transfer"}:
            settings["transfer_sources"] = sources  # a resumed run must craft its examples on the same models
        if checksums := [dict(spec.sha256) for spec in corrupting if spec.sha256]:
            settings["corruptions_sha256"] = checksums  # a resumed run must read the same files
        saved = None if resume_dir is None else Progress(resume_dir, settings)
        runs = 1 + len(attacked) + (_sweep_runs(attacked, sweep_eps, eps) if sweep_eps else 0)
        runs += (0 if sweep_eps and 0.0 in sweep_eps else 1) + corruption_runs(corrupting)
        rank, world = rank_and_world_size()
        total = runs * len(range(rank, math.ceil(len(x) / batch_size), world))
        with tqdm(total=total, disable=not progress or rank != 0, unit="batch") as bar:
            named = {spec.name: spec for spec in specs}
            workers = min(workers, math.ceil(len(x) / batch_size))  # no worker without a batch of its own
            run = AttackRun(model, x, y, norm, seed, batch_size, device, bar, saved, workers, named)
            seconds, correct = {}, {}
            with run.workers_started():
                for spec in [CLEAN, *attacked]:
                    correct[spec.name] = run.correct(spec, eps)
                    seconds[spec.name] = run.seconds[spec.name, eps]
                clean = correct.pop("clean")
                corrupted = {}
                for spec in corrupting:
                    corrupted[spec.name], seconds[spec.name] = corruption_accuracy(run, spec, folder)
                sweep = None if sweep_eps is None else _sweep(run, attacked, sweep_eps, eps, correct)
                at_zero = _correct_at_zero(run, sweep_eps, sweep)

    worst = torch.stack([clean, *correct.values()]).all(0)
    flags = {"clean": clean, **correct, "all": worst}
    robust = {name: accuracy(f) for name, f in correct.items()}
    robust = {**robust, **{name: result["mean"] for name, result in corrupted.items()}, "all": accuracy(worst)}
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
        versions=package_versions(),
        per_example={"index": example_indices(dataset, len(x)), **{name: f.tolist() for name, f in flags.items()}},
        processes=world * workers,
        corruptions=corrupted or None,
        date=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )  # fmt: skip
    if report.flags:
        warnings.warn(
            "Robustness sanity checks failed (possible gradient masking or a broken evaluation): "
            + "; ".join(report.flags),
            stacklevel=2,
        )
    return report
