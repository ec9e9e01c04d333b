"""MixACM and its ablations, soft labels only (kd) and natural training: one terms function for all of them, which
runs the MixACM components (mixup, soft labels, activated channel maps) that each method's entry uses."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..losses import WeightedTerms, acm_loss, hidden_states_of, kd_loss, mixup, mixup_cross_entropy
from .registry import ACM_HYPERPARAMETERS, KLD_HYPERPARAMETERS, Method, MixACMTrainer, get_method, register_method


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


KD_CITATION = """@article{hinton2015distilling,
  title   = {Distilling the Knowledge in a Neural Network},
  author  = {Hinton, Geoffrey and Vinyals, Oriol and Dean, Jeff},
  journal = {arXiv preprint arXiv:1503.02531},
  year    = {2015}
}"""
MIXACM_TAGS = ("mixacm", "knowledge-distillation")
DISTILLATION = {"terms": distillation_terms, "weights": distillation_weights, "needs_teacher": True}
for entry in (
    Method("mixacm", "MixACM (Awais et al., NeurIPS 2021): mixup CE, soft labels and activated channel maps.",
           card_title="MixACM",
           card_text=(
               "The student never sees an adversarial example: it is trained on mixup images only and learns "
               "robustness from the frozen, adversarially trained teacher by matching the teacher's activated "
               "channel maps (per-channel spatial maxima of each stage's output) and its soft labels. Loss: (1 - "
               "alpha_kld) L_mix + alpha_kld L_kld + alpha_acm L_acm (Awais et al., NeurIPS 2021)."
           ),
           uses_mixup=True, uses_kld=True, uses_acm=True, tags=MIXACM_TAGS,
           hyperparameters=("mixup_alpha", *KLD_HYPERPARAMETERS, *ACM_HYPERPARAMETERS), **DISTILLATION),
    Method("mixacm-no-mixup", "MixACM without mixup (the paper's ablation): CE, soft labels and channel maps.",
           card_title="MixACM without mixup",
           card_text=(
               "MixACM's ablation on clean (not mixup) images: soft labels and activated-channel-map matching with "
               "the frozen teacher, plus cross-entropy."
           ),
           uses_kld=True, uses_acm=True, tags=MIXACM_TAGS,
           hyperparameters=(*KLD_HYPERPARAMETERS, *ACM_HYPERPARAMETERS), **DISTILLATION),
    Method("acm-only", "Activated channel maps and CE only (no soft labels).",
           card_title="activated-channel-map distillation only",
           card_text=(
               "The student matches the frozen teacher's activated channel maps on clean images (no mixup), "
               "plus cross-entropy, without the soft-label term."
           ), uses_acm=True, tags=MIXACM_TAGS,
           hyperparameters=ACM_HYPERPARAMETERS, **DISTILLATION),
    Method("kd", "Soft labels only (Hinton et al. 2015; the paper's RKD baseline).",
           card_title="knowledge distillation (RKD)",
           card_text=(
               "Soft-label distillation from the frozen robust teacher on clean images (the paper's RKD baseline): "
               "no mixup, no channel maps, no adversarial examples."
           ), uses_kld=True, citation=KD_CITATION, tags=("knowledge-distillation",),
           hyperparameters=KLD_HYPERPARAMETERS,
           refuses_zero={"alpha_kld": "the soft-label term; with 0 it is natural training (--method natural)"},
           **DISTILLATION),
    Method("natural", "Natural training: CE on clean images, no teacher.",
           card_title="natural training",
           card_text=(
               "Plain cross-entropy on clean images, no teacher: a non-robust baseline."
           ), terms=distillation_terms,
           weights=distillation_weights),
):  # fmt: skip
    register_method(entry)
