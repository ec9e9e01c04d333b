"""MixACM and its ablations, soft labels only (kd) and natural training: their params (`KLDParams`, `ACMParams`
and the methods' combinations of them) and one terms function for all of them, which runs the MixACM components
(mixup, soft labels, activated channel maps) that the method's params have."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..losses import (
    CHANNEL_ALIGNMENTS,
    LAYER_MAPPINGS,
    WeightedTerms,
    acm_loss,
    hidden_states_of,
    kd_loss,
    mixup,
    mixup_cross_entropy,
)
from .registry import Method, MethodParams, Objective, TrainingBatch, register_method


@dataclass(frozen=True)
class KLDParams(MethodParams):
    """The soft-label term.

    Args:
        alpha_kld: weight of the soft-label KL term, in [0, 1]; the (mixup) CE gets 1 - alpha_kld.
        temperature: softmax temperature gamma of the KL term (> 0).
    """

    alpha_kld: float = 0.95
    temperature: float = 10.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check("alpha_kld", 0 <= self.alpha_kld <= 1, "in [0, 1] (the CE gets 1 - alpha_kld)")
        self.check("temperature", self.temperature > 0, "> 0")


@dataclass(frozen=True)
class ACMParams(MethodParams):
    """The activated-channel-map term.

    Args:
        alpha_acm: weight (>= 0) of the activated-channel-map loss.
        acm_channel_align: teacher->student channel alignment when counts differ: 'adaptive_max_pool' or 'affine'
            (a learned linear map per layer, trained with the student; saved in checkpoints, not in the model).
        acm_layer_mapping: pairing when no indices are given: 'index' (counts must agree) or 'relative_depth'.
        acm_teacher_layers: teacher hidden-state indices to match (default: all, see acm_layer_mapping).
        acm_student_layers: student hidden-state indices, paired with acm_teacher_layers.
    """

    alpha_acm: float = 5000.0
    acm_channel_align: str = "adaptive_max_pool"
    acm_layer_mapping: str = "index"
    acm_teacher_layers: list[int] | None = None
    acm_student_layers: list[int] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check(
            "alpha_acm", self.alpha_acm >= 0, "a weight >= 0 (a negative one trains away from the teacher's maps)"
        )
        self.check("acm_channel_align", self.acm_channel_align in CHANNEL_ALIGNMENTS, f"one of {CHANNEL_ALIGNMENTS}")
        self.check("acm_layer_mapping", self.acm_layer_mapping in LAYER_MAPPINGS, f"one of {LAYER_MAPPINGS}")


@dataclass(frozen=True)
class MixACMNoMixupParams(KLDParams, ACMParams):
    """MixACM's ablation without mixup: soft labels and activated channel maps (the fields of both)."""

    method = "mixacm-no-mixup"


@dataclass(frozen=True)
class MixACMParams(MixACMNoMixupParams):
    """MixACM (Awais et al., NeurIPS 2021; defaults: the paper's CIFAR settings).

    Args:
        mixup_alpha: mixup lambda ~ Beta(alpha, alpha); 0 disables mixup.
    """

    method = "mixacm"
    mixup_alpha: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check("mixup_alpha", self.mixup_alpha >= 0, "the Beta parameter, > 0, or 0 to turn mixup off")


@dataclass(frozen=True)
class ACMOnlyParams(ACMParams):
    """Activated channel maps and CE only."""

    method = "acm-only"


@dataclass(frozen=True)
class KDParams(KLDParams):
    """Soft labels only: alpha_kld = 0 is refused (it would be natural training)."""

    method = "kd"

    def __post_init__(self) -> None:  # its range first: (0, 1], not KLDParams' [0, 1]
        self.refuse_zero("alpha_kld", "the soft-label term; with 0 it is natural training (--method natural)")
        self.check("alpha_kld", 0 < self.alpha_kld <= 1, "in (0, 1] (the CE gets 1 - alpha_kld)")
        super().__post_init__()


def distillation_objective(params: MethodParams, teacher_shares_labels: Callable[[], bool]) -> Objective:
    """MixACM's objective (paper Sec. 3.3, docs/design.md section 3): (1 - alpha_kld) CE on the (mixup) images +
    alpha_kld L_KLD + alpha_acm L_ACM, each term only where the params have it and it runs: no KL term with
    alpha_kld = 0 or a teacher with other classes (dropped), `loss_ce` instead of `loss_mix` with mixup_alpha = 0."""
    mixup_alpha = getattr(params, "mixup_alpha", 0) or None
    wants_kld = isinstance(params, KLDParams) and params.alpha_kld > 0
    use_kld = wants_kld and teacher_shares_labels()
    ce_weight = round(1 - params.alpha_kld, 12) if use_kld else 1.0  # 0.05, not 0.050000000000000044
    weights = {"loss_mix" if mixup_alpha else "loss_ce": ce_weight}
    if use_kld:
        weights["loss_kld"] = params.alpha_kld
    if isinstance(params, ACMParams):
        weights["loss_acm"] = params.alpha_acm
    inactive = (("mixup_alpha",) if hasattr(params, "mixup_alpha") and not mixup_alpha else ()) + (
        ("alpha_kld", "temperature") if isinstance(params, KLDParams) and not use_kld else ()
    )
    return Objective(weights, mixup_alpha, kld_dropped=wants_kld and not use_kld, inactive=inactive)


def distillation_terms(model: nn.Module, batch: TrainingBatch, params: MethodParams) -> tuple[WeightedTerms, Any]:
    """The terms of `distillation_objective` on one batch: mixup (one lambda per batch, Zhang et al. 2018), the
    teacher's soft labels and activated channel maps on the same (mixed) images, the student's outputs."""
    weights, pixel_values, labels = batch.objective.loss_terms, batch.pixel_values, batch.labels
    labels_b, lam = labels, 1.0
    if "loss_mix" in weights:
        pixel_values, labels, labels_b, lam = mixup(pixel_values, labels, params.mixup_alpha, batch.generator)
    uses_acm = "loss_acm" in weights
    teacher_logits, teacher_maps = batch.teacher(pixel_values, uses_acm) if batch.teacher else (None, None)
    outputs = model(pixel_values=pixel_values, output_hidden_states=uses_acm)
    ce_name = "loss_mix" if "loss_mix" in weights else "loss_ce"
    terms = {ce_name: (weights[ce_name], mixup_cross_entropy(outputs.logits, labels, labels_b, lam))}
    if "loss_kld" in weights:
        terms["loss_kld"] = (weights["loss_kld"], kd_loss(outputs.logits, teacher_logits, params.temperature))
    if uses_acm:
        acm = acm_loss(
            teacher_maps, hidden_states_of(outputs, "student"), align=params.acm_channel_align,
            teacher_layers=params.acm_teacher_layers, student_layers=params.acm_student_layers,
            layer_mapping=params.acm_layer_mapping, affine_maps=batch.affine_maps,
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
DISTILLATION = {"terms": distillation_terms, "objective": distillation_objective}
for entry in (
    Method("mixacm", "MixACM (Awais et al., NeurIPS 2021): mixup CE, soft labels and activated channel maps.",
           card_title="MixACM",
           card_text=(
               "The student never sees an adversarial example: it is trained on mixup images only and learns "
               "robustness from the frozen, adversarially trained teacher by matching the teacher's activated "
               "channel maps (per-channel spatial maxima of each stage's output) and its soft labels. Loss: (1 - "
               "alpha_kld) L_mix + alpha_kld L_kld + alpha_acm L_acm (Awais et al., NeurIPS 2021)."
           ),
           params=MixACMParams, needs_teacher=True, uses_mixup=True, uses_kld=True, uses_acm=True, tags=MIXACM_TAGS,
           **DISTILLATION),
    Method("mixacm-no-mixup", "MixACM without mixup (the paper's ablation): CE, soft labels and channel maps.",
           card_title="MixACM without mixup",
           card_text=(
               "MixACM's ablation on clean (not mixup) images: soft labels and activated-channel-map matching with "
               "the frozen teacher, plus cross-entropy."
           ),
           params=MixACMNoMixupParams, needs_teacher=True, uses_kld=True, uses_acm=True, tags=MIXACM_TAGS,
           **DISTILLATION),
    Method("acm-only", "Activated channel maps and CE only (no soft labels).",
           card_title="activated-channel-map distillation only",
           card_text=(
               "The student matches the frozen teacher's activated channel maps on clean images (no mixup), "
               "plus cross-entropy, without the soft-label term."
           ), params=ACMOnlyParams, needs_teacher=True, uses_acm=True, tags=MIXACM_TAGS, **DISTILLATION),
    Method("kd", "Soft labels only (Hinton et al. 2015; the paper's RKD baseline).",
           card_title="knowledge distillation (RKD)",
           card_text=(
               "Soft-label distillation from the frozen robust teacher on clean images (the paper's RKD baseline): "
               "no mixup, no channel maps, no adversarial examples."
           ), params=KDParams, needs_teacher=True, uses_kld=True, citation=KD_CITATION,
           tags=("knowledge-distillation",), **DISTILLATION),
    Method("natural", "Natural training: CE on clean images, no teacher.",
           card_title="natural training",
           card_text=(
               "Plain cross-entropy on clean images, no teacher: a non-robust baseline."
           ), **DISTILLATION),
):  # fmt: skip
    register_method(entry)
