"""Methods that train on adversarial examples: PGD adversarial training, N-FGSM, TRADES, and the adversarial
distillation baselines ARD and RSLAD, each with its params (`PGDParams` and the baselines' extras) and the inner
attack of its paper's reference code."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import (
    ARD_ALPHA,
    ARD_TEMPERATURE,
    RSLAD_ALPHA,
    TRADES_BETA,
    WeightedTerms,
    ard_loss,
    kl_divergence,
    rslad_loss,
    trades_loss,
)
from ..robustness.attacks import check_eps, gradient_ascent
from .registry import (
    Method,
    MethodParams,
    Objective,
    ObjectiveFunction,
    TrainingBatch,
    attack_and_train,
    register_method,
)

NO_ATTACK = (
    "train without adversarial examples: give it a budget > 0 (e.g. --pgd_eps 8/255 --pgd_step_size 2/255), or use "
    "--method kd / natural for no attack"
)


@dataclass(frozen=True)
class EpsParams(MethodParams):
    """The adversarial examples' budget.

    Args:
        pgd_eps: Linf budget of adversarial training, in [0, 1] pixel units (8/255), > 0.
    """

    pgd_eps: float = 8 / 255

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_budget("pgd_eps")

    def check_budget(self, name: str) -> None:
        """A Linf budget or step in pixel units (`check_eps`), > 0: with 0 the method trains on clean images."""
        check_eps(getattr(self, name), "Linf", f"--{name}")
        if getattr(self, name) == 0:
            raise ValueError(f"--{name} 0 makes --method {self.method} {NO_ATTACK}.")


@dataclass(frozen=True)
class NFGSMParams(EpsParams):
    """N-FGSM: one FGSM step of size pgd_eps from a noisy start.

    Args:
        nfgsm_noise: uniform noise in [-k eps, k eps] before the eps-sized FGSM step (k >= 0).
    """

    method = "n-fgsm"
    nfgsm_noise: float = 2.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check("nfgsm_noise", self.nfgsm_noise >= 0, ">= 0")


@dataclass(frozen=True)
class PGDParams(EpsParams):
    """PGD-k adversarial training (Madry et al.; defaults: the paper's PGD-7 baseline).

    Args:
        pgd_step_size: step size of the inner attack, in pixel units, > 0.
        pgd_steps: steps of the inner attack (>= 1).
    """

    method = "pgd-at"
    pgd_step_size: float = 2 / 255
    pgd_steps: int = 7

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_budget("pgd_step_size")
        self.check("pgd_steps", self.pgd_steps >= 1, ">= 1")


@dataclass(frozen=True)
class TRADESParams(PGDParams):
    """TRADES (Zhang et al., ICML 2019; defaults: their CIFAR-10 settings, 10 steps of 0.007).

    Args:
        trades_beta: weight of KL(f(x) || f(x_adv)), > 0 (0 would be natural training at the cost of TRADES).
    """

    method = "trades"
    pgd_step_size: float = 0.007
    pgd_steps: int = 10
    trades_beta: float = TRADES_BETA

    def __post_init__(self) -> None:
        super().__post_init__()
        self.refuse_zero("trades_beta", "the robustness term beta KL(f(x) || f(x_adv)); with 0 it is natural "
                                        "training at the cost of TRADES (--method natural)")  # fmt: skip
        self.check("trades_beta", self.trades_beta > 0, "> 0")


@dataclass(frozen=True)
class ARDParams(PGDParams):
    """ARD (Goldblum et al., AAAI 2020; defaults: their code's CIFAR-10 settings, 10 PGD steps).

    Args:
        ard_alpha: weight of the adversarial KL, in (0, 1]; the CE on clean images gets 1 - ard_alpha.
        ard_temperature: softmax temperature of the KL (> 0).
    """

    method = "ard"
    pgd_steps: int = 10
    ard_alpha: float = ARD_ALPHA
    ard_temperature: float = ARD_TEMPERATURE

    def __post_init__(self) -> None:
        super().__post_init__()
        self.refuse_zero("ard_alpha", "the adversarial distillation term; with 0 it is CE on clean images at the "
                                      "cost of ARD (--method natural)")  # fmt: skip
        self.check("ard_alpha", 0 < self.ard_alpha <= 1, "in (0, 1]")
        self.check("ard_temperature", self.ard_temperature > 0, "> 0")


@dataclass(frozen=True)
class RSLADParams(PGDParams):
    """RSLAD (Zi et al., ICCV 2021; defaults: their CIFAR-10 settings, 10 PGD steps).

    Args:
        rslad_alpha: weight of the adversarial KL term, in (0, 1]; the clean one gets 1 - rslad_alpha.
    """

    method = "rslad"
    pgd_steps: int = 10
    rslad_alpha: float = RSLAD_ALPHA

    def __post_init__(self) -> None:
        super().__post_init__()
        self.refuse_zero("rslad_alpha", "the adversarial term; with 0 it is soft labels on clean images at the "
                                        "cost of RSLAD (--method kd)")  # fmt: skip
        self.check("rslad_alpha", 0 < self.rslad_alpha <= 1, "in (0, 1]")


def _uniform(x: torch.Tensor, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    """U(low, high) noise shaped like x, drawn on the CPU from `generator` (the batch's seeded stream)."""
    return torch.empty(x.shape, dtype=x.dtype).uniform_(low, high, generator=generator).to(x.device)


def _normal(x: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    """N(0, std^2) noise shaped like x, drawn on the CPU from `generator`."""
    return (torch.randn(x.shape, dtype=x.dtype, generator=generator) * std).to(x.device)


def _logits(model: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    return model(pixel_values=pixel_values).logits.float()


def _adversarial_ce(model: nn.Module, adversarial: torch.Tensor, labels: torch.Tensor) -> tuple[WeightedTerms, Any]:
    outputs = model(pixel_values=adversarial)
    return {"loss_adv": (1.0, F.cross_entropy(outputs.logits.float(), labels))}, outputs


def _pgd_on_ce(batch: TrainingBatch, params: PGDParams) -> torch.Tensor:
    """`pgd_steps` steps of size `pgd_step_size` on the student's CE from a uniform start in the Linf `pgd_eps` ball
    (input gradients through `batch.student`, outside DDP's hooks)."""
    x, labels, eps = batch.pixel_values, batch.labels, params.pgd_eps
    start = (x + _uniform(x, -eps, eps, batch.generator)).clamp(0, 1)
    return gradient_ascent(
        lambda images: F.cross_entropy(_logits(batch.student, images), labels), x, start, eps=eps,
        step_size=params.pgd_step_size, steps=params.pgd_steps,
    )  # fmt: skip


def pgd_at_terms(model: nn.Module, batch: TrainingBatch, params: PGDParams) -> tuple[WeightedTerms, Any]:
    """PGD adversarial training (Madry et al., ICLR 2018): CE on x_adv from `_pgd_on_ce`."""
    return _adversarial_ce(model, _pgd_on_ce(batch, params), batch.labels)


def nfgsm_terms(model: nn.Module, batch: TrainingBatch, params: NFGSMParams) -> tuple[WeightedTerms, Any]:
    """N-FGSM (de Jorge et al., NeurIPS 2022): CE on x + eta + eps sign(grad), eta ~ U(-k eps, k eps) with
    k = `nfgsm_noise`, not projected back onto the eps ball, clipped to [0, 1]."""
    x, labels, eps = batch.pixel_values, batch.labels, params.pgd_eps
    noise = _uniform(x, -params.nfgsm_noise * eps, params.nfgsm_noise * eps, batch.generator)
    adversarial = gradient_ascent(
        lambda images: F.cross_entropy(_logits(batch.student, images), labels), x, (x + noise).clamp(0, 1),
        eps=eps, step_size=eps, steps=1, projected=False,
    )  # fmt: skip
    return _adversarial_ce(model, adversarial, labels)


def _kl_attack(batch: TrainingBatch, params: PGDParams, target_logits: torch.Tensor | None) -> torch.Tensor:
    """TRADES' and RSLAD's inner maximisation: from x + 0.001 N(0, 1), `pgd_steps` signed steps of `pgd_step_size`
    maximising KL(softmax(target) || softmax(f(x'))), the model in eval mode as in both papers' code. A None
    `target_logits` is TRADES' target: the model's own logits of x, also in eval mode (as the reference code computes
    them inside its attack loop), so the inner and outer KL measure the same quantity."""
    attacked, x = batch.student, batch.pixel_values
    start = (x + _normal(x, 0.001, batch.generator)).clamp(0, 1)
    was_training = attacked.training
    attacked.eval()
    try:
        if target_logits is None:
            with torch.no_grad():
                target_logits = _logits(attacked, x)
        return gradient_ascent(
            lambda images: kl_divergence(target_logits.detach(), _logits(attacked, images)), x, start,
            eps=params.pgd_eps, step_size=params.pgd_step_size, steps=params.pgd_steps,
        )  # fmt: skip
    finally:
        attacked.train(was_training)


def trades_terms(model: nn.Module, batch: TrainingBatch, params: TRADESParams) -> tuple[WeightedTerms, Any]:
    """TRADES (Zhang et al., ICML 2019): `losses.trades_loss` with x_adv from `_kl_attack` against f(x) (eval mode)."""
    adversarial = _kl_attack(batch, params, None)
    outputs = model(pixel_values=batch.pixel_values)
    adversarial_logits = _logits(model, adversarial)
    return trades_loss(outputs.logits, adversarial_logits, batch.labels, beta=params.trades_beta), outputs


def ard_terms(model: nn.Module, batch: TrainingBatch, params: ARDParams) -> tuple[WeightedTerms, Any]:
    """ARD (Goldblum et al., AAAI 2020): `losses.ard_loss`, x_adv by `_pgd_on_ce` (the student in training mode, as
    in the reference code); the clean images always pass through the student in training mode, as in the reference
    code (with alpha = 1 without a gradient: their CE has weight 0)."""
    adversarial = _pgd_on_ce(batch, params)
    teacher_logits, _ = batch.teacher(batch.pixel_values, False)
    outputs = model(pixel_values=adversarial)
    if params.ard_alpha < 1:
        natural = _logits(model, batch.pixel_values)
    else:  # the reference code's clean forward of weight 0: it adds only the clean images' BatchNorm statistics
        with torch.no_grad():
            model(pixel_values=batch.pixel_values)
        natural = None
    terms = ard_loss(outputs.logits, teacher_logits, batch.labels, natural, alpha=params.ard_alpha,
                     temperature=params.ard_temperature)  # fmt: skip
    return terms, outputs


def rslad_terms(model: nn.Module, batch: TrainingBatch, params: RSLADParams) -> tuple[WeightedTerms, Any]:
    """RSLAD (Zi et al., ICCV 2021): `losses.rslad_loss`, x_adv from `_kl_attack` against the teacher's soft labels."""
    teacher_logits, _ = batch.teacher(batch.pixel_values, False)
    adversarial = _kl_attack(batch, params, teacher_logits.float())
    outputs = model(pixel_values=batch.pixel_values)
    terms = rslad_loss(outputs.logits, _logits(model, adversarial), teacher_logits, alpha=params.rslad_alpha)
    return terms, outputs


def _attack_and_two(params: PGDParams) -> int:
    """The inner attack's `pgd_steps` backward passes plus one through each of the two forward passes (x and x_adv)
    that the outer loss differentiates."""
    return params.pgd_steps + 2


def _ard_passes(params: ARDParams) -> int:
    """PGD on the student, then one backward through x_adv, and one through x when the CE term has weight."""
    return params.pgd_steps + (2 if params.ard_alpha < 1 else 1)


def _objective(weights: Callable[[Any], dict[str, float]], soft_labels: bool = False) -> ObjectiveFunction:
    """The objective of `weights(params)`; with `soft_labels`, the teacher's soft labels are the method's only
    teacher signal, so a teacher of other classes is refused (`teacher_shares_labels` raises), never dropped."""

    def objective(params: Any, teacher_shares_labels: Callable[[], bool]) -> Objective:
        if soft_labels:
            teacher_shares_labels()
        return Objective(weights(params))

    return objective


PGD_AT_CITATION = """@inproceedings{madry2018towards,
  title     = {Towards Deep Learning Models Resistant to Adversarial Attacks},
  author    = {Madry, Aleksander and Makelov, Aleksandar and Schmidt, Ludwig and Tsipras, Dimitris and Vladu, Adrian},
  booktitle = {International Conference on Learning Representations},
  year      = {2018}
}"""
NFGSM_CITATION = """@inproceedings{dejorge2022nfgsm,
  title     = {Make Some Noise: Reliable and Efficient Single-Step Adversarial Training},
  author    = {de Jorge, Pau and Bibi, Adel and Volpi, Riccardo and Sanyal, Amartya and Torr, Philip H. S.
               and Rogez, Gr{\\'e}gory and Dokania, Puneet K.},
  booktitle = {Advances in Neural Information Processing Systems},
  year      = {2022}
}"""
TRADES_CITATION = """@inproceedings{zhang2019trades,
  title     = {Theoretically Principled Trade-off between Robustness and Accuracy},
  author    = {Zhang, Hongyang and Yu, Yaodong and Jiao, Jiantao and Xing, Eric and El Ghaoui, Laurent
               and Jordan, Michael},
  booktitle = {International Conference on Machine Learning},
  year      = {2019}
}"""
ARD_CITATION = """@inproceedings{goldblum2020ard,
  title     = {Adversarially Robust Distillation},
  author    = {Goldblum, Micah and Fowl, Liam and Feizi, Soheil and Goldstein, Tom},
  booktitle = {Proceedings of the AAAI Conference on Artificial Intelligence},
  year      = {2020}
}"""
RSLAD_CITATION = """@inproceedings{zi2021rslad,
  title     = {Revisiting Adversarial Robustness Distillation: Robust Soft Labels Make Student Better},
  author    = {Zi, Bojia and Zhao, Shihao and Ma, Xingjun and Jiang, Yu-Gang},
  booktitle = {Proceedings of the IEEE/CVF International Conference on Computer Vision},
  year      = {2021}
}"""

AT_TAGS = ("adversarial-training",)
DISTILLATION_TAGS = ("adversarial-distillation", "knowledge-distillation")
ADVERSARIAL = _objective(lambda params: {"loss_adv": 1.0})
for entry in (
    Method("pgd-at", "PGD adversarial training (Madry et al., ICLR 2018).",
           card_title="PGD adversarial training",
           card_text=(
               "Madry et al.'s adversarial training: every step trains on PGD adversarial examples (pgd_steps steps "
               "of pgd_step_size in an Linf ball of radius pgd_eps)."
           ), citation=PGD_AT_CITATION, tags=AT_TAGS, terms=pgd_at_terms,
           objective=ADVERSARIAL, params=PGDParams, adversarial=True, backward_passes=attack_and_train),
    Method("n-fgsm", "N-FGSM single-step adversarial training (de Jorge et al., NeurIPS 2022).",
           card_title="N-FGSM adversarial training",
           card_text=(
               "Single-step adversarial training with noise (de Jorge et al., 2022): an FGSM step of size pgd_eps "
               "from a noisy start."
           ), citation=NFGSM_CITATION, tags=AT_TAGS, terms=nfgsm_terms,
           objective=ADVERSARIAL, params=NFGSMParams, adversarial=True, backward_passes=lambda params: 2),
    Method("trades", "TRADES (Zhang et al., ICML 2019): CE + beta KL(f(x) || f(x_adv)).",
           card_title="TRADES",
           card_text=(
               "TRADES adversarial training (Zhang et al., ICML 2019): cross-entropy on clean images plus "
               "trades_beta times the KL divergence between the model's predictions on the clean image and on an "
               "adversarial image found by maximising that KL (pgd_steps steps of pgd_step_size in an Linf ball of "
               "radius pgd_eps). No teacher."
           ), citation=TRADES_CITATION, tags=(*AT_TAGS, "trades"), terms=trades_terms,
           objective=_objective(lambda params: {"loss_ce": 1.0, "loss_trades_kl": params.trades_beta}),
           params=TRADESParams, adversarial=True, backward_passes=_attack_and_two),
    Method("ard", "ARD (Goldblum et al., AAAI 2020): the teacher's soft labels on the student's adversarial images.",
           card_title="ARD (adversarially robust distillation)",
           card_text=(
               "Adversarially robust distillation (Goldblum et al., AAAI 2020): the student is trained to give, on "
               "its own PGD adversarial images (pgd_steps steps of pgd_step_size in an Linf ball of radius pgd_eps, "
               "maximising its cross-entropy), the frozen robust teacher's soft labels on the clean image at "
               "temperature ard_temperature, with weight ard_alpha; 1 - ard_alpha goes to cross-entropy on clean "
               "images. The KL is averaged over classes, as in the authors' code."
           ), citation=ARD_CITATION, tags=DISTILLATION_TAGS,
           terms=ard_terms, needs_teacher=True, uses_kld=True, adversarial=True,
           objective=_objective(lambda params: {"loss_kld": params.ard_alpha}
                                | ({"loss_ce": round(1 - params.ard_alpha, 12)} if params.ard_alpha < 1 else {}),
                                soft_labels=True),
           params=ARDParams, backward_passes=_ard_passes),
    Method("rslad", "RSLAD (Zi et al., ICCV 2021): robust soft labels of the teacher on clean and adversarial images.",
           card_title="RSLAD (robust soft label adversarial distillation)",
           card_text=(
               "Robust soft label adversarial distillation (Zi et al., ICCV 2021): the frozen robust teacher's soft "
               "labels on the clean image are the target of the student's predictions on the clean image (weight 1 - "
               "rslad_alpha) and on an adversarial image found by maximising the student's KL divergence from them "
               "(weight rslad_alpha; pgd_steps steps of pgd_step_size in an Linf ball of radius pgd_eps). The KL is "
               "averaged over classes, as in the authors' code."
           ), citation=RSLAD_CITATION, tags=DISTILLATION_TAGS,
           terms=rslad_terms, needs_teacher=True, uses_kld=True, adversarial=True,
           objective=_objective(lambda params: {"loss_rslad_natural": round(1 - params.rslad_alpha, 12),
                                                "loss_rslad_adv": params.rslad_alpha}, soft_labels=True),
           params=RSLADParams, backward_passes=_attack_and_two),
):  # fmt: skip
    register_method(entry)
