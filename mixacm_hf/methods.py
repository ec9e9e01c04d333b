"""Training methods as a registry: one `Method` entry per method, read by the trainer, the run script, the model card
and the benchmarks (docs/design.md, "Adding a method").

A method is its facts (needs a teacher? which loss terms? mixup? adversarial examples? backward passes per image?
which hyperparameters belong in its card?) plus one function that computes its weighted loss terms for a batch.
Adding a method is one `register_method(Method(...))` call and its loss function; nothing else changes.

It imports only `losses` and `robustness.attacks` (never the trainer, run script or hub), so they all may import it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from .losses import (
    ARD_ALPHA,
    WeightedTerms,
    acm_loss,
    ard_loss,
    hidden_states_of,
    kd_loss,
    kl_divergence,
    mixup,
    mixup_cross_entropy,
    rslad_loss,
    trades_loss,
)
from .robustness.attacks import gradient_ascent


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
        description: one sentence for `--help` and the model card, citing the paper.
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
def _uniform(x: torch.Tensor, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    """U(low, high) noise shaped like x, drawn on the CPU from `generator` (the batch's seeded stream)."""
    return torch.empty(x.shape, dtype=x.dtype).uniform_(low, high, generator=generator).to(x.device)


def _normal(x: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    """N(0, std^2) noise shaped like x, drawn on the CPU from `generator`."""
    return (torch.randn(x.shape, dtype=x.dtype, generator=generator) * std).to(x.device)


def _logits(model: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    return model(pixel_values=pixel_values).logits.float()


def distillation_weights(trainer: MixACMTrainer) -> dict[str, float]:
    """MixACM's objective (paper Sec. 3.3, docs/design.md section 3): (1 - alpha_kld) CE on the (mixup) images +
    alpha_kld L_KLD + alpha_acm L_ACM, each term only where the method uses it and it runs (no KL term for a teacher
    with other classes; `loss_ce` instead of `loss_mix` when mixup is off)."""
    args, method = trainer.args, get_method(trainer.args.method)
    ce_weight = round(1 - args.alpha_kld, 12) if trainer.use_kld else 1.0  # 0.05, not 0.050000000000000044
    weights = {"loss_mix" if trainer.uses_mixup else "loss_ce": ce_weight}
    if trainer.use_kld:
        weights["loss_kld"] = args.alpha_kld
    if method.uses_acm:
        weights["loss_acm"] = args.alpha_acm
    return weights


def distillation_terms(
    trainer: MixACMTrainer, model: nn.Module, pixel_values: torch.Tensor, labels: torch.Tensor
) -> tuple[WeightedTerms, Any]:
    """The terms of `distillation_weights` on one batch: mixup (one lambda per batch, Zhang et al. 2018), the
    teacher's soft labels and activated channel maps on the same (mixed) images, the student's outputs."""
    args, method = trainer.args, get_method(trainer.args.method)
    weights = distillation_weights(trainer)
    labels_b, lam = labels, 1.0
    if trainer.uses_mixup:
        pixel_values, labels, labels_b, lam = mixup(pixel_values, labels, args.mixup_alpha, trainer.batch_generator())
    teacher_logits, teacher_maps = trainer.teacher_signals(pixel_values, method.uses_acm)
    outputs = model(pixel_values=pixel_values, output_hidden_states=method.uses_acm)
    ce_name = "loss_mix" if trainer.uses_mixup else "loss_ce"
    terms = {ce_name: (weights[ce_name], mixup_cross_entropy(outputs.logits, labels, labels_b, lam))}
    if "loss_kld" in weights:
        terms["loss_kld"] = (weights["loss_kld"], kd_loss(outputs.logits, teacher_logits, args.temperature))
    if "loss_acm" in weights:
        acm = acm_loss(
            teacher_maps, hidden_states_of(outputs, "student"), align=args.acm_channel_align,
            teacher_layers=args.acm_teacher_layers, student_layers=args.acm_student_layers,
            layer_mapping=args.acm_layer_mapping, affine_maps=trainer.affine_maps,
        )  # fmt: skip
        terms["loss_acm"] = (weights["loss_acm"], acm)
    return terms, outputs


def _adversarial_ce(model: nn.Module, adversarial: torch.Tensor, labels: torch.Tensor) -> tuple[WeightedTerms, Any]:
    outputs = model(pixel_values=adversarial)
    return {"loss_adv": (1.0, F.cross_entropy(outputs.logits.float(), labels))}, outputs


def pgd_at_terms(
    trainer: MixACMTrainer, model: nn.Module, pixel_values: torch.Tensor, labels: torch.Tensor
) -> tuple[WeightedTerms, Any]:
    """PGD adversarial training (Madry et al., ICLR 2018): CE on x_adv from `pgd_steps` steps of size
    `pgd_step_size` on the CE from a uniform start in the Linf `pgd_eps` ball."""
    args, attacked = trainer.args, trainer.accelerator.unwrap_model(model)  # input gradients only: bypass DDP hooks
    start = (pixel_values + _uniform(pixel_values, -args.pgd_eps, args.pgd_eps, trainer.batch_generator())).clamp(0, 1)
    adversarial = gradient_ascent(
        lambda x: F.cross_entropy(_logits(attacked, x), labels), pixel_values, start, eps=args.pgd_eps,
        step_size=args.pgd_step_size, steps=args.pgd_steps,
    )  # fmt: skip
    return _adversarial_ce(model, adversarial, labels)


def nfgsm_terms(
    trainer: MixACMTrainer, model: nn.Module, pixel_values: torch.Tensor, labels: torch.Tensor
) -> tuple[WeightedTerms, Any]:
    """N-FGSM (de Jorge et al., NeurIPS 2022): CE on x + eta + eps sign(grad), eta ~ U(-k eps, k eps) with
    k = `nfgsm_noise`, not projected back onto the eps ball, clipped to [0, 1]."""
    args, attacked = trainer.args, trainer.accelerator.unwrap_model(model)
    noise = _uniform(pixel_values, -args.nfgsm_noise * args.pgd_eps, args.nfgsm_noise * args.pgd_eps,
                     trainer.batch_generator())  # fmt: skip
    adversarial = gradient_ascent(
        lambda x: F.cross_entropy(_logits(attacked, x), labels), pixel_values, (pixel_values + noise).clamp(0, 1),
        eps=args.pgd_eps, step_size=args.pgd_eps, steps=1, projected=False,
    )  # fmt: skip
    return _adversarial_ce(model, adversarial, labels)


def _kl_attack(
    trainer: MixACMTrainer, model: nn.Module, pixel_values: torch.Tensor, target_logits: torch.Tensor | None
) -> torch.Tensor:
    """TRADES' and RSLAD's inner maximisation: from x + 0.001 N(0, 1), `pgd_steps` signed steps of `pgd_step_size`
    maximising KL(softmax(target) || softmax(f(x'))), the model in eval mode as in both papers' code. A None
    `target_logits` is TRADES' target: the model's own logits of x, also in eval mode (as the reference code computes
    them inside its attack loop), so the inner and outer KL measure the same quantity."""
    args, attacked = trainer.args, trainer.accelerator.unwrap_model(model)
    start = (pixel_values + _normal(pixel_values, 0.001, trainer.batch_generator())).clamp(0, 1)
    was_training = attacked.training
    attacked.eval()
    try:
        if target_logits is None:
            with torch.no_grad():
                target_logits = _logits(attacked, pixel_values)
        return gradient_ascent(
            lambda x: kl_divergence(target_logits.detach(), _logits(attacked, x)), pixel_values, start,
            eps=args.pgd_eps, step_size=args.pgd_step_size, steps=args.pgd_steps,
        )  # fmt: skip
    finally:
        attacked.train(was_training)


def trades_terms(
    trainer: MixACMTrainer, model: nn.Module, pixel_values: torch.Tensor, labels: torch.Tensor
) -> tuple[WeightedTerms, Any]:
    """TRADES (Zhang et al., ICML 2019): `losses.trades_loss` with x_adv from `_kl_attack` against f(x) (eval mode)."""
    adversarial = _kl_attack(trainer, model, pixel_values, None)
    outputs = model(pixel_values=pixel_values)
    adversarial_logits = _logits(model, adversarial)
    return trades_loss(outputs.logits, adversarial_logits, labels, beta=trainer.args.trades_beta), outputs


def ard_terms(
    trainer: MixACMTrainer, model: nn.Module, pixel_values: torch.Tensor, labels: torch.Tensor
) -> tuple[WeightedTerms, Any]:
    """ARD (Goldblum et al., AAAI 2020): `losses.ard_loss`, x_adv by PGD on the student's CE from a uniform start
    (the student in training mode, as in the reference code)."""
    args, attacked = trainer.args, trainer.accelerator.unwrap_model(model)
    start = (pixel_values + _uniform(pixel_values, -args.pgd_eps, args.pgd_eps, trainer.batch_generator())).clamp(0, 1)
    adversarial = gradient_ascent(
        lambda x: F.cross_entropy(_logits(attacked, x), labels), pixel_values, start, eps=args.pgd_eps,
        step_size=args.pgd_step_size, steps=args.pgd_steps,
    )  # fmt: skip
    teacher_logits, _ = trainer.teacher_signals(pixel_values, False)
    outputs = model(pixel_values=adversarial)
    natural = _logits(model, pixel_values) if args.ard_alpha < 1 else None
    terms = ard_loss(outputs.logits, teacher_logits, labels, natural, alpha=args.ard_alpha,
                     temperature=args.ard_temperature)  # fmt: skip
    return terms, outputs


def rslad_terms(
    trainer: MixACMTrainer, model: nn.Module, pixel_values: torch.Tensor, labels: torch.Tensor
) -> tuple[WeightedTerms, Any]:
    """RSLAD (Zi et al., ICCV 2021): `losses.rslad_loss`, x_adv from `_kl_attack` against the teacher's soft labels."""
    teacher_logits, _ = trainer.teacher_signals(pixel_values, False)
    adversarial = _kl_attack(trainer, model, pixel_values, teacher_logits.float())
    outputs = model(pixel_values=pixel_values)
    terms = rslad_loss(outputs.logits, _logits(model, adversarial), teacher_logits, alpha=trainer.args.rslad_alpha)
    return terms, outputs


def _attack_and_two(hyperparameters: Mapping[str, Any]) -> int:
    """The inner attack's `pgd_steps` backward passes plus one through each of the two forward passes (x and x_adv)
    that the outer loss differentiates."""
    return int(hyperparameters["pgd_steps"]) + 2


def _ard_passes(hyperparameters: Mapping[str, Any]) -> int:
    """PGD on the student, then one backward through x_adv, and one through x when the CE term has weight."""
    return int(hyperparameters["pgd_steps"]) + (2 if hyperparameters.get("ard_alpha", ARD_ALPHA) < 1 else 1)


ADVERSARIAL_WEIGHTS: Callable[[MixACMTrainer], dict[str, float]] = lambda trainer: {"loss_adv": 1.0}  # noqa: E731
DISTILLATION = {"terms": distillation_terms, "weights": distillation_weights, "needs_teacher": True}
for entry in (
    Method("mixacm", "MixACM (Awais et al., NeurIPS 2021): mixup CE, soft labels and activated channel maps.",
           uses_mixup=True, uses_kld=True, uses_acm=True,
           hyperparameters=("mixup_alpha", *KLD_HYPERPARAMETERS, *ACM_HYPERPARAMETERS), **DISTILLATION),
    Method("mixacm-no-mixup", "MixACM without mixup (the paper's ablation): CE, soft labels and channel maps.",
           uses_kld=True, uses_acm=True, hyperparameters=(*KLD_HYPERPARAMETERS, *ACM_HYPERPARAMETERS), **DISTILLATION),
    Method("acm-only", "Activated channel maps and CE only (no soft labels).", uses_acm=True,
           hyperparameters=ACM_HYPERPARAMETERS, **DISTILLATION),
    Method("kd", "Soft labels only (Hinton et al. 2015; the paper's RKD baseline).", uses_kld=True,
           hyperparameters=KLD_HYPERPARAMETERS, **DISTILLATION),
    Method("natural", "Natural training: CE on clean images, no teacher.", terms=distillation_terms,
           weights=distillation_weights),
    Method("pgd-at", "PGD adversarial training (Madry et al., ICLR 2018).", terms=pgd_at_terms,
           weights=ADVERSARIAL_WEIGHTS, adversarial=True, hyperparameters=PGD_HYPERPARAMETERS,
           backward_passes=attack_and_train, defaults={"pgd_steps": 7, "pgd_step_size": 2 / 255}),
    Method("n-fgsm", "N-FGSM single-step adversarial training (de Jorge et al., NeurIPS 2022).", terms=nfgsm_terms,
           weights=ADVERSARIAL_WEIGHTS, adversarial=True, hyperparameters=("pgd_eps", "nfgsm_noise"),
           backward_passes=lambda hyperparameters: 2),
    Method("trades", "TRADES (Zhang et al., ICML 2019): CE + beta KL(f(x) || f(x_adv)).", terms=trades_terms,
           weights=lambda trainer: {"loss_ce": 1.0, "loss_trades_kl": trainer.args.trades_beta}, adversarial=True,
           hyperparameters=(*PGD_HYPERPARAMETERS, "trades_beta"), backward_passes=_attack_and_two,
           defaults={"pgd_steps": 10, "pgd_step_size": 0.007}),
    Method("ard", "ARD (Goldblum et al., AAAI 2020): the teacher's soft labels on the student's adversarial images.",
           terms=ard_terms, needs_teacher=True, uses_kld=True, adversarial=True,
           weights=lambda trainer: {"loss_kld": trainer.args.ard_alpha}
           | ({"loss_ce": 1 - trainer.args.ard_alpha} if trainer.args.ard_alpha < 1 else {}),
           hyperparameters=(*PGD_HYPERPARAMETERS, "ard_alpha", "ard_temperature"), backward_passes=_ard_passes,
           defaults={"pgd_steps": 10, "pgd_step_size": 2 / 255}),
    Method("rslad", "RSLAD (Zi et al., ICCV 2021): robust soft labels of the teacher on clean and adversarial images.",
           terms=rslad_terms, needs_teacher=True, uses_kld=True, adversarial=True,
           weights=lambda trainer: {"loss_rslad_natural": 1 - trainer.args.rslad_alpha,
                                    "loss_rslad_adv": trainer.args.rslad_alpha},
           hyperparameters=(*PGD_HYPERPARAMETERS, "rslad_alpha"), backward_passes=_attack_and_two,
           defaults={"pgd_steps": 10, "pgd_step_size": 2 / 255}),
):  # fmt: skip
    register_method(entry)


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
