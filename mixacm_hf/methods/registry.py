"""The methods registry: one `Method` entry per `--method` (its facts, its hyperparameters as a `MethodParams`
dataclass, its objective and its loss-terms function), `register_method`, `get_method`, and what the training
arguments, the run script and the cards ask of it (`method_flag_fields`, `flag_owners`, `relevant_hyperparameters`).

It imports nothing of the package, so every module may import it.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar, get_type_hints

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..losses import WeightedTerms


@dataclass(frozen=True)
class MethodParams:
    """A method's hyperparameters (the base of each method's params class; a method without any uses it as it is).

    A subclass declares its fields with their defaults, documents each in its docstring's `Args:` block (the text of
    its `--help`), sets `method` (the `--method` its errors name) and checks its values in `__post_init__` (calling
    `super().__post_init__()` first) with `check` and `refuse_zero`: errors name the flag and its valid range.
    """

    method: ClassVar[str] = ""

    def __post_init__(self) -> None:
        """Checks of the subclasses' fields (none here)."""

    def check(self, name: str, ok: bool, meaning: str) -> None:
        """Refuse the value of field `name` unless `ok` (and finite, for a number); `meaning`: its valid range."""
        value = getattr(self, name)
        finite = not isinstance(value, (int, float)) or math.isfinite(value)
        if not (ok and finite):
            raise ValueError(f"--{name} {value} is invalid: it must be {'' if finite else 'finite and '}{meaning}.")

    def refuse_zero(self, name: str, weighs: str) -> None:
        """Refuse 0 for a weight that would switch the method's point off (`weighs`: what it weighs and what 0 would
        leave, e.g. TRADES with beta = 0 is natural training at the cost of TRADES)."""
        if getattr(self, name) == 0:
            raise ValueError(f"--{name} 0 switches off --method {self.method}: it weighs {weighs}.")


def documented_fields(params: type[MethodParams]) -> dict[str, str]:
    """{field: its description} from the `Args:` blocks of the docstrings of `params` and its bases (a subclass's
    description of a field wins)."""
    docs: dict[str, str] = {}
    for cls in reversed(params.__mro__):
        _, _, block = inspect.cleandoc(cls.__dict__.get("__doc__") or "").partition("Args:\n")
        name = None
        for line in block.splitlines():
            entry = re.fullmatch(r" {4}(\w+): (.*)", line)
            if entry:
                name, docs[entry[1]] = entry[1], entry[2]
            elif name and line.startswith(" " * 8):
                docs[name] += " " + line.strip()
            else:
                break
    return docs


@dataclass(frozen=True)
class Objective:
    """What a method optimises in one run, as it decides from its params and the teacher.

    Args:
        loss_terms: {term name: weight}; `terms` must return exactly these (checked on every batch).
        mixup_alpha: the Beta parameter of the mixup that runs, None when no mixup runs.
        kld_dropped: the soft-label term was dropped (a teacher trained on other classes).
        inactive: fields of the params that have no effect in this run (mixup off, KL term dropped): recorded as None.
    """

    loss_terms: dict[str, float]
    mixup_alpha: float | None = None
    kld_dropped: bool = False
    inactive: tuple[str, ...] = ()


TeacherSignals = Callable[["torch.Tensor", bool], tuple["torch.Tensor | None", "list[torch.Tensor] | None"]]
"""(pixel_values, with_maps) -> the frozen teacher's logits (B, K) and, with `with_maps`, its raw activated channel
maps (B, C) per stage (`MixACMTrainer.teacher_signals`)."""


@dataclass(frozen=True)
class TrainingBatch:
    """What a method's `terms` gets for one training batch, from the trainer.

    Args:
        pixel_values: (B, C, H, W) in [0, 1].
        labels: (B,) class indices.
        generator: the batch's CPU generator, seeded from (seed, global step, micro-batch, rank): draw every random
            number from it, not from the global RNG, so that a resumed run trains on the same numbers.
        objective: the run's objective (`Method.objective`): which terms run, with which weights.
        teacher: the frozen teacher's signals (`TeacherSignals`), None for a method without a teacher.
        student: the student outside DDP's hooks, for input gradients (inner attacks); the `model` argument of
            `terms` is the one to train.
        affine_maps: the learned teacher->student channel maps (acm_channel_align="affine"), else None.
    """

    pixel_values: torch.Tensor
    labels: torch.Tensor
    generator: torch.Generator
    objective: Objective
    teacher: TeacherSignals | None
    student: nn.Module
    affine_maps: nn.ModuleList | None = None


TermsFunction = Callable[["nn.Module", TrainingBatch, Any], tuple["WeightedTerms", Any]]
"""(student, batch, params) -> ({term: (weight, value)}, the student's outputs)."""
ObjectiveFunction = Callable[[Any, Callable[[], bool]], Objective]
"""(params, teacher_shares_labels) -> the run's `Objective`. `teacher_shares_labels()` checks that the teacher
predicts the student's classes: call it only where soft labels would be used (it raises, or warns and returns False
where they must be dropped)."""


def one_pass(params: MethodParams) -> int:
    """One backward pass per image (natural training, distillation on clean or mixup images)."""
    return 1


def attack_and_train(params: Any) -> int:
    """The inner attack's `pgd_steps` backward passes plus the training step's one."""
    return int(params.pgd_steps) + 1


@dataclass(frozen=True)
class Method:
    """One training method.

    Args:
        name: the `--method` value.
        description: one sentence for `--help`, citing the paper.
        terms: computes the batch's weighted loss terms (see `TermsFunction`); the loss is sum(weight * value), and
            each term is logged under its own name.
        objective: decides the run's objective from the params and the teacher (see `ObjectiveFunction`); recorded
            in the summary and checkpoints.
        params: its hyperparameters' dataclass (`MethodParams`): fields, defaults, checks and `--help`; its fields
            are the method's command-line flags, recorded in its card and checkpoints.
        needs_teacher: a frozen teacher is required (`--teacher`).
        uses_mixup, uses_kld, uses_acm: which MixACM components it uses (for the card and the checks).
        adversarial: it trains on adversarial examples.
        backward_passes: backward passes per training image, from its params (training cost).
        card_title, card_text: the method's name in its model card's first line, and the card's paragraph on it.
        citation: BibTeX of the method's paper, cited in its cards beside MixACM and AutoAttack ("" for MixACM's own
            methods).
        tags: the Hub tags of its cards beside `adversarial-robustness` (e.g. `adversarial-training`): a card says
            how its model was trained, so a TRADES model is not found under `mixacm`.
    """

    name: str
    description: str
    terms: TermsFunction
    objective: ObjectiveFunction
    params: type[MethodParams] = MethodParams
    needs_teacher: bool = False
    uses_mixup: bool = False
    uses_kld: bool = False
    uses_acm: bool = False
    adversarial: bool = False
    backward_passes: Callable[[Any], int] = one_pass
    card_title: str = ""
    card_text: str = ""
    citation: str = ""
    tags: tuple[str, ...] = ()

    @property
    def flags(self) -> tuple[str, ...]:
        """Its hyperparameters' names: its command-line flags."""
        return tuple(item.name for item in fields(self.params))

    def params_from(self, values: Mapping[str, Any] | Any) -> MethodParams:
        """Its params from `values` (a mapping, or an object such as the training arguments): each of its fields
        that `values` sets (not None), the params class's default for the others; other keys are not read.

        Raises:
            ValueError: a value out of its range (`MethodParams.check`), naming the flag.
        """
        get = values.get if isinstance(values, Mapping) else lambda name: getattr(values, name, None)
        given = {name: get(name) for name in self.flags}
        return self.params(**{name: value for name, value in given.items() if value is not None})


METHODS: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    """Add `method` to the registry (returns it).

    Raises:
        ValueError: a method of that name is registered already; its params class names another method, or leaves
            a field undocumented.
    """
    if method.name in METHODS:
        raise ValueError(f"A method named {method.name!r} is registered already.")
    if method.params.method not in ("", method.name):
        raise ValueError(f"{method.params.__name__}.method is {method.params.method!r}, not {method.name!r}.")
    undocumented = [name for name in method.flags if name not in documented_fields(method.params)]
    if undocumented:
        raise ValueError(f"{method.params.__name__} documents no {', '.join(undocumented)} in its `Args:` block.")
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    """The registered method `name`.

    Raises:
        ValueError: no such method (the message lists the registered ones).
    """
    if name not in METHODS:
        raise ValueError(f"Unknown method {name!r}; choose one of {', '.join(METHODS)}.")
    return METHODS[name]


def flag_owners() -> dict[str, list[str]]:
    """{flag: the registered methods whose params have it}, in registration order."""
    owners: dict[str, list[str]] = {}
    for method in METHODS.values():
        for name in method.flags:
            owners.setdefault(name, []).append(method.name)
    return owners


def method_flag_fields(exclude: Iterable[str] = ()) -> list[tuple[str, Any, Any]]:
    """`dataclasses.make_dataclass` fields for the flags of every registered method (but `exclude`): each of its
    params' type or None, default None (the method's own default), help from its `Args:` description and each
    method's default. The training arguments are built from them (`training_args.training_arguments_class`)."""
    specs, defaults = {}, {}
    for method in METHODS.values():
        hints = get_type_hints(method.params)
        docs = documented_fields(method.params)
        for item in fields(method.params):
            if item.name in exclude:
                continue
            default = item.default if item.default is not MISSING else item.default_factory()
            defaults.setdefault(item.name, {}).setdefault(_shown(default), []).append(method.name)
            specs.setdefault(item.name, (hints[item.name], docs[item.name], dict(item.metadata)))
    result = []
    for name, (hint, doc, metadata) in specs.items():
        by_value = "; ".join(f"{', '.join(methods)}: {value}" for value, methods in defaults[name].items())
        help_text = f"{doc} Unset (None): the method's default ({by_value})."
        result.append((name, hint | None, field(default=None, metadata={**metadata, "help": help_text})))
    return result


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def relevant_hyperparameters(method: str, hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
    """The recorded hyperparameters that `method` uses (MixACM's loss weights mean nothing for natural training):
    the flags of any registered method's params are kept only for the methods that have them; others (the
    optimiser's) stay. An unknown method (a card written elsewhere) keeps them all."""
    if method not in METHODS:
        return {key: value for key, value in hyperparameters.items() if key != "method" and value is not None}
    listed, own = flag_owners(), set(METHODS[method].flags)
    return {
        key: value
        for key, value in hyperparameters.items()
        if key != "method" and value is not None and (key in own or key not in listed)
    }


def recorded_params(params: MethodParams, objective: Objective) -> dict[str, Any]:
    """The params as a run records them (`dataclasses.asdict`): those without effect in the run (`inactive`) as
    None, unset ones (None, e.g. layer lists left to their default) left out."""
    return {
        name: None if name in objective.inactive else value
        for name, value in asdict(params).items()
        if value is not None
    }
