"""The methods registry: one `Method` entry per `--method` (its facts and its loss-terms function), `register_method`,
`get_method`, and what the run script and the cards ask of it (`check_method_flags`, `ignored_flags`,
`relevant_hyperparameters`).

It imports nothing of the package, so every module may import it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..losses import WeightedTerms


class MixACMTrainer(Protocol):
    """What a method's functions may use of the trainer (`mixacm_hf.trainer.MixACMTrainer` provides it)."""

    args: Any  # MixACMTrainingArguments
    accelerator: Any  # accelerate.Accelerator: `unwrap_model(model)` for input gradients outside DDP's hooks
    uses_mixup: bool  # the method uses mixup and mixup_alpha > 0
    use_kld: bool  # the soft-label KL term runs (the teacher predicts the student's classes)
    affine_maps: nn.ModuleList | None  # learned teacher->student channel maps (acm_channel_align="affine")

    def batch_generator(self) -> torch.Generator:
        """The training batch's CPU generator, seeded from (seed, global step, micro-batch, rank)."""

    def teacher_signals(
        self, pixel_values: torch.Tensor, uses_acm: bool
    ) -> tuple[torch.Tensor | None, list[torch.Tensor] | None]:
        """The frozen teacher's logits (B, K) and, with `uses_acm`, raw activated channel maps (B, C) per stage."""


TermsFunction = Callable[["MixACMTrainer", "nn.Module", "torch.Tensor", "torch.Tensor"], tuple["WeightedTerms", Any]]
"""(trainer, student, pixel_values (B, C, H, W) in [0, 1], labels (B,)) -> ({term: (weight, value)}, outputs)."""

ACM_HYPERPARAMETERS = (
    "alpha_acm", "acm_channel_align", "acm_layer_mapping", "acm_teacher_layers", "acm_student_layers",
)  # fmt: skip
KLD_HYPERPARAMETERS = ("alpha_kld", "temperature")
PGD_HYPERPARAMETERS = ("pgd_eps", "pgd_step_size", "pgd_steps")


def one_pass(hyperparameters: Mapping[str, Any]) -> int:
    """One backward pass per image (natural training, distillation on clean or mixup images)."""
    return 1


def attack_and_train(hyperparameters: Mapping[str, Any]) -> int:
    """The inner attack's `pgd_steps` backward passes plus the training step's one."""
    return int(hyperparameters["pgd_steps"]) + 1


@dataclass(frozen=True)
class Method:
    """One training method.

    Args:
        name: the `--method` value.
        description: one sentence for `--help`, citing the paper.
        terms: computes the batch's weighted loss terms (see `TermsFunction`); the loss is sum(weight * value), and
            each term is logged under its own name.
        weights: {term name: weight} that `terms` uses for a trainer (its arguments, and what runs: e.g. no KL term
            for a teacher with other classes); recorded as the run's objective, and checked against every batch.
        needs_teacher: a frozen teacher is required (`--teacher`).
        uses_mixup, uses_kld, uses_acm: which MixACM components it uses (for the card and the checks).
        adversarial: it trains on adversarial examples.
        hyperparameters: the `MixACMTrainingArguments` fields its card records.
        backward_passes: backward passes per training image, from the run's hyperparameters (training cost).
        defaults: per-method defaults for fields the user left unset (None).
        card_title, card_text: the method's name in its model card's first line, and the card's paragraph on it.
        citation: BibTeX of the method's paper, cited in its cards beside MixACM and AutoAttack ("" for MixACM's own
            methods).
        tags: the Hub tags of its cards beside `adversarial-robustness` (e.g. `adversarial-training`): a card says
            how its model was trained, so a TRADES model is not found under `mixacm`.
        refuses_zero: {field: what it weighs, and what a 0 would leave}: fields a 0 would switch the method's point
            off, so 0 is refused (e.g. TRADES with beta = 0 is natural training at the cost of TRADES).
    """

    name: str
    description: str
    terms: TermsFunction
    weights: Callable[[MixACMTrainer], dict[str, float]]
    needs_teacher: bool = False
    uses_mixup: bool = False
    uses_kld: bool = False
    uses_acm: bool = False
    adversarial: bool = False
    hyperparameters: tuple[str, ...] = ()
    backward_passes: Callable[[Mapping[str, Any]], int] = one_pass
    defaults: Mapping[str, Any] = field(default_factory=dict)
    card_title: str = ""
    card_text: str = ""
    citation: str = ""
    tags: tuple[str, ...] = ()
    refuses_zero: Mapping[str, str] = field(default_factory=dict)


METHODS: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    """Add `method` to the registry (returns it).

    Raises:
        ValueError: a method of that name is registered already.
    """
    if method.name in METHODS:
        raise ValueError(f"A method named {method.name!r} is registered already.")
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


# -- the built-in methods' loss terms ---------------------------------------------------------------------------------


# flags that only configure the teacher (a `--config` file's teacher only warns: one file serves every method)
TEACHER_FLAGS = (
    "teacher", "teacher_architecture", "teacher_image_mean", "teacher_image_std", "acm_teacher_modules",
    "robustbench_model_dir", "compile_teacher", "cross_dataset",
)  # fmt: skip


def ignored_flags(method: str, flags: Iterable[str]) -> list[str]:
    """Why `method` would ignore some of `flags` (field names, e.g. from `cli.explicit_flags`): another method's
    hyperparameter (e.g. `temperature` for ARD, whose temperature is `ard_temperature`), or a teacher setting for a
    method without a teacher. One sentence per kind, naming the flags; [] when it uses them all.

    Raises:
        ValueError: `method` is not registered.
    """
    entry, flags = get_method(method), set(flags)
    reasons = []
    foreign = sorted({name for other in METHODS.values() for name in other.hyperparameters} & flags)
    foreign = [name for name in foreign if name not in entry.hyperparameters]
    if foreign:
        owners = {name: ", ".join(other.name for other in METHODS.values() if name in other.hyperparameters)
                  for name in foreign}  # fmt: skip
        takes = ", ".join(f"--{name}" for name in entry.hyperparameters) or "none"
        reasons.append(
            f"--method {method} does not use "
            + "; ".join(f"--{name} (a hyperparameter of {owners[name]})" for name in foreign)
            + f": remove it, or choose the method it belongs to. --method {method} takes: {takes}."
        )
    unused = [name for name in TEACHER_FLAGS if name in flags] if not entry.needs_teacher else []
    if unused:
        reasons.append(
            f"--method {method} learns from no teacher: {', '.join(f'--{name}' for name in unused)} would be "
            "ignored. Remove it, or choose a method with a teacher (e.g. mixacm, kd, ard, rslad)."
        )
    return reasons


def check_method_flags(method: str, flags: Iterable[str]) -> None:
    """Refuse the command line's flags that `method` would ignore without a word (`ignored_flags`). Values from a
    `--config` file are only warned of (one file serves several methods).

    Raises:
        ValueError: naming each such flag, the methods it belongs to and the flags `method` takes.
    """
    reasons = ignored_flags(method, flags)
    if reasons:
        raise ValueError(" ".join(reasons))


def relevant_hyperparameters(method: str, hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
    """The recorded hyperparameters that `method` uses (MixACM's loss weights mean nothing for natural training):
    those any registered method lists are kept only for the methods that list them; others (the optimiser's) stay.
    An unknown method (a card written elsewhere) keeps them all."""
    if method not in METHODS:
        return {key: value for key, value in hyperparameters.items() if key != "method" and value is not None}
    listed = {name for entry in METHODS.values() for name in entry.hyperparameters}
    own = set(METHODS[method].hyperparameters)
    return {
        key: value
        for key, value in hyperparameters.items()
        if key != "method" and value is not None and (key in own or key not in listed)
    }
