"""Transfer attacks (`transfer`, `transfer:<model>`): their source models, loaded once per evaluation, and the sanity
check that a transfer attack does not beat white-box PGD of the same budget (gradient masking)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from ..data import model_class_names, model_num_labels
from .attacks import attack_mode, logits_of
from .classifier import as_classifier
from .registry import AttackSpec, parse_attack
from .report import Check, accuracy, check_ordered

SUMMARY = "train_summary.json"  # a trained folder's summary, naming its teacher


def default_source(model: nn.Module | str) -> str:
    """The teacher a distilled student's folder names in its train_summary.json.

    Raises:
        ValueError: `model` is not such a folder (the message says to name the source).
    """
    summary = Path(model, SUMMARY) if isinstance(model, str) else None
    teacher = json.loads(summary.read_text()).get("teacher") if summary and summary.is_file() else None
    if not teacher:
        raise ValueError(
            "transfer: no source model. Name one (transfer:<folder or Hub id>); the default, the teacher, is known "
            f"only for a distilled student's folder whose {SUMMARY} names it."
        )
    return str(teacher)


def load_transfer_sources(
    specs: list[AttackSpec], model: nn.Module | str, robustbench_model_dir: str | None = None
) -> list[AttackSpec]:
    """`specs` with each transfer attack's source model loaded (`as_classifier`): the named one, else the teacher of
    the evaluated folder (`default_source`), in fp32. Sources given as modules (`source_model`) are kept.

    Raises:
        ValueError: no source (`default_source`), a source that is a file (a checkpoint needs its architecture) or
            that cannot be loaded (naming the attack, the source and where the default one was named).
    """
    loaded = []
    for spec in specs:
        if spec.attack.role == "transfer" and spec.source_model is None:
            source = spec.source or default_source(model)
            if Path(source).is_file():
                raise ValueError(
                    f"{spec.name}: {source} is a file: a transfer source is a model folder, Hub id or RobustBench "
                    "entry (training/convert_teacher.py turns a checkpoint file into a model folder; from Python, "
                    "transfer_from(load_teacher(file, architecture=...), name) attacks from it)."
                )
            try:
                module, _ = as_classifier(source, robustbench_model_dir=robustbench_model_dir)
            except (ValueError, OSError) as error:
                named = "" if spec.source else f", the teacher named in {Path(str(model), SUMMARY)}"
                raise ValueError(
                    f"{spec.name}: its source model ({source}{named}) cannot be loaded: {error}"
                ) from error
            spec = replace(spec, source=source, source_model=module.float().eval())  # attacked in fp32
        loaded.append(spec)
    return loaded


def check_transfer_sources(
    specs: list[AttackSpec], model: nn.Module, x: torch.Tensor, num_classes: int, device: torch.device
) -> None:
    """Each transfer source takes the evaluated images and has the evaluated model's classes, in the same order
    (compared by name where both name them): its examples are crafted against the evaluated labels.

    Raises:
        ValueError: naming the attack and what differs (input size, number of classes, class names or order).
    """
    for spec in (spec for spec in specs if spec.attack.role == "transfer" and spec.source_model is not None):
        source = spec.source_model.to(device)
        try:
            with torch.no_grad(), attack_mode(source, device.type):
                classes = logits_of(source(x[:1].to(device))).shape[-1]
        except (ValueError, RuntimeError) as error:
            raise ValueError(
                f"{spec.name}: the source model does not take the evaluated images {tuple(x.shape[1:])} (C, H, W): "
                f"{error} Transfer from a model of the evaluated images' size."
            ) from error
        if classes != num_classes:
            raise ValueError(
                f"{spec.name}: the source model has {classes} classes, the evaluated model {num_classes}: its "
                "examples would be crafted against other classes. Transfer from a model of the same classes."
            )
        theirs, mine = model_class_names(source, fold_case=True), model_class_names(model, fold_case=True)
        if theirs and mine and theirs != mine:
            raise ValueError(
                f"{spec.name}: the source model's classes ({', '.join(theirs)}) are not the evaluated model's "
                f"({', '.join(mine)}) in the same order: its examples would be crafted against other labels. "
                "Transfer from a model of the same classes in the same order."
            )


def check_teacher_as_source(attacks: list[str], teacher: nn.Module | None, student: nn.Module) -> None:
    """Before training: a `transfer` attack of the end-of-run evaluation (from the teacher) needs a teacher of the
    student's classes in the same order, as far as their configs say (`check_transfer_sources` checks the rest).

    Raises:
        ValueError: naming --eval_attacks and what differs.
    """
    if teacher is None or not any(parse_attack(name).name == "transfer" for name in attacks):
        return
    counts = model_num_labels(teacher), model_num_labels(student)
    names = model_class_names(teacher, fold_case=True), model_class_names(student, fold_case=True)
    if None not in counts and counts[0] != counts[1] or all(names) and names[0] != names[1]:
        raise ValueError(
            f"--eval_attacks: transfer crafts its examples on the teacher, whose classes ({counts[0]}: "
            f"{', '.join(names[0] or ['unnamed'])}) are not the student's ({counts[1]}: "
            f"{', '.join(names[1] or ['unnamed'])}) in the same order: name a source of the student's classes "
            "(transfer:<model>) or leave transfer out."
        )


def transfer_from(source: nn.Module, name: str) -> AttackSpec:
    """A transfer attack crafting its examples on the module `source` (recorded as `name`)."""
    return replace(parse_attack(f"transfer:{name}"), source_model=source)


def check_white_box_partner(specs: list[AttackSpec]) -> None:
    """A transfer attack is checked against white-box PGD of at least its steps, which the evaluation must run.

    Raises:
        ValueError: a transfer attack without such a PGD (the message says which to add).
    """
    for spec in specs:
        if spec.attack.role == "transfer" and not _white_box(specs, spec.attack.strength(spec)):
            raise ValueError(
                f"{spec.name} is checked against white-box PGD of the same budget (gradient masking): add "
                f"pgd-{spec.steps} (or more steps) to the attacks."
            )


def _white_box(specs: list[AttackSpec], min_strength: int) -> list[AttackSpec]:
    return [s for s in specs if s.attack.role == "gradient" and s.attack.strength(s) >= min_strength]


def transfer_checks(specs: list[AttackSpec], correct: dict[str, torch.Tensor]) -> list[Check]:
    """White-box PGD (of at least a transfer attack's steps) <= the transfer attack: examples crafted on another
    model fooling this one more often than its own gradients do mean its gradients are masked."""
    accuracies = {name: accuracy(flags) for name, flags in correct.items()}
    return [
        check_ordered(white.name, spec.name, accuracies)
        for spec in specs
        if spec.attack.role == "transfer"
        for white in _white_box(specs, spec.attack.strength(spec))
    ]
