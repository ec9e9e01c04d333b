"""Methods that train on adversarial examples: PGD adversarial training, N-FGSM, TRADES, and the adversarial
distillation baselines ARD and RSLAD, each with the inner attack of its paper's reference code."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import ARD_ALPHA, WeightedTerms, ard_loss, kl_divergence, rslad_loss, trades_loss
from ..robustness.attacks import gradient_ascent
from .registry import PGD_HYPERPARAMETERS, Method, MixACMTrainer, attack_and_train, register_method


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
    (the student in training mode, as in the reference code); the clean images always pass through the student in
    training mode, as in the reference code (with alpha = 1 without a gradient: their CE has weight 0)."""
    args, attacked = trainer.args, trainer.accelerator.unwrap_model(model)
    start = (pixel_values + _uniform(pixel_values, -args.pgd_eps, args.pgd_eps, trainer.batch_generator())).clamp(0, 1)
    adversarial = gradient_ascent(
        lambda x: F.cross_entropy(_logits(attacked, x), labels), pixel_values, start, eps=args.pgd_eps,
        step_size=args.pgd_step_size, steps=args.pgd_steps,
    )  # fmt: skip
    teacher_logits, _ = trainer.teacher_signals(pixel_values, False)
    outputs = model(pixel_values=adversarial)
    if args.ard_alpha < 1:
        natural = _logits(model, pixel_values)
    else:  # the reference code's clean forward of weight 0: it adds only the clean images' BatchNorm statistics
        with torch.no_grad():
            model(pixel_values=pixel_values)
        natural = None
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
ADVERSARIAL_WEIGHTS: Callable[[MixACMTrainer], dict[str, float]] = lambda trainer: {"loss_adv": 1.0}  # noqa: E731
for entry in (
    Method("pgd-at", "PGD adversarial training (Madry et al., ICLR 2018).",
           card_title="PGD adversarial training",
           card_text=(
               "Madry et al.'s adversarial training: every step trains on PGD adversarial examples (pgd_steps steps "
               "of pgd_step_size in an Linf ball of radius pgd_eps)."
           ), citation=PGD_AT_CITATION, tags=AT_TAGS, terms=pgd_at_terms,
           weights=ADVERSARIAL_WEIGHTS, adversarial=True, hyperparameters=PGD_HYPERPARAMETERS,
           backward_passes=attack_and_train, defaults={"pgd_steps": 7, "pgd_step_size": 2 / 255}),
    Method("n-fgsm", "N-FGSM single-step adversarial training (de Jorge et al., NeurIPS 2022).",
           card_title="N-FGSM adversarial training",
           card_text=(
               "Single-step adversarial training with noise (de Jorge et al., 2022): an FGSM step of size pgd_eps "
               "from a noisy start."
           ), citation=NFGSM_CITATION, tags=AT_TAGS, terms=nfgsm_terms,
           weights=ADVERSARIAL_WEIGHTS, adversarial=True, hyperparameters=("pgd_eps", "nfgsm_noise"),
           backward_passes=lambda hyperparameters: 2),
    Method("trades", "TRADES (Zhang et al., ICML 2019): CE + beta KL(f(x) || f(x_adv)).",
           card_title="TRADES",
           card_text=(
               "TRADES adversarial training (Zhang et al., ICML 2019): cross-entropy on clean images plus "
               "trades_beta times the KL divergence between the model's predictions on the clean image and on an "
               "adversarial image found by maximising that KL (pgd_steps steps of pgd_step_size in an Linf ball of "
               "radius pgd_eps). No teacher."
           ), citation=TRADES_CITATION, tags=(*AT_TAGS, "trades"), terms=trades_terms,
           weights=lambda trainer: {"loss_ce": 1.0, "loss_trades_kl": trainer.args.trades_beta}, adversarial=True,
           hyperparameters=(*PGD_HYPERPARAMETERS, "trades_beta"), backward_passes=_attack_and_two,
           defaults={"pgd_steps": 10, "pgd_step_size": 0.007},
           refuses_zero={"trades_beta": "the robustness term beta KL(f(x) || f(x_adv)); with 0 it is natural "
                                        "training at the cost of TRADES (--method natural)"}),
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
           weights=lambda trainer: {"loss_kld": trainer.args.ard_alpha}
           | ({"loss_ce": round(1 - trainer.args.ard_alpha, 12)} if trainer.args.ard_alpha < 1 else {}),
           hyperparameters=(*PGD_HYPERPARAMETERS, "ard_alpha", "ard_temperature"), backward_passes=_ard_passes,
           defaults={"pgd_steps": 10, "pgd_step_size": 2 / 255},
           refuses_zero={"ard_alpha": "the adversarial distillation term; with 0 it is CE on clean images at the "
                                      "cost of ARD (--method natural)"}),
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
           weights=lambda trainer: {"loss_rslad_natural": round(1 - trainer.args.rslad_alpha, 12),
                                    "loss_rslad_adv": trainer.args.rslad_alpha},
           hyperparameters=(*PGD_HYPERPARAMETERS, "rslad_alpha"), backward_passes=_attack_and_two,
           defaults={"pgd_steps": 10, "pgd_step_size": 2 / 255},
           refuses_zero={"rslad_alpha": "the adversarial term; with 0 it is soft labels on clean images at the "
                                        "cost of RSLAD (--method kd)"}),
):  # fmt: skip
    register_method(entry)
