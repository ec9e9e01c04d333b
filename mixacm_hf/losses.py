"""MixACM loss terms (docs/design.md, "The method, exactly"; paper Sections 5.1-5.4): activated channel maps, ACM
loss, soft-label KD, mixup."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

CHANNEL_ALIGNMENTS = ("adaptive_max_pool", "affine")
LAYER_MAPPINGS = ("index", "relative_depth")


def activated_channel_map(hidden_state: torch.Tensor, normalize: bool = True, eps: float = 1e-12) -> torch.Tensor:
    """(B, C, H, W) -> (B, C): each channel's spatial maximum, L2-normalised per sample (in fp32).

    The maximum is taken in the map's own dtype (exact) by global max pooling, whose backward writes the gradient to
    the argmax only (cheaper than `amax` over (H, W) of an fp32 copy and its backward). An all-zero
    map stays zero instead of dividing by zero.
    """
    if hidden_state.dim() != 4:
        raise ValueError(
            f"activated_channel_map expects a (B, C, H, W) feature map, got shape {tuple(hidden_state.shape)}."
        )
    channel_map = F.adaptive_max_pool2d(hidden_state, 1).flatten(1).float()
    return normalize_channel_map(channel_map, eps) if normalize else channel_map


def normalize_channel_map(channel_map: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Divide each row of (B, C) by its L2 norm (rows of zeros stay zero)."""
    return channel_map / channel_map.norm(dim=1, keepdim=True).clamp_min(eps)


def align_channels(channel_map: torch.Tensor, num_channels: int) -> torch.Tensor:
    """Resample (B, C) to (B, num_channels) by 1-d adaptive max pooling (down- or up-sampling)."""
    if channel_map.shape[1] == num_channels:
        return channel_map
    return F.adaptive_max_pool1d(channel_map.unsqueeze(1), num_channels).squeeze(1)


def match_layers(
    num_teacher: int,
    num_student: int,
    teacher_layers: Sequence[int] | None = None,
    student_layers: Sequence[int] | None = None,
    mapping: str = "index",
) -> list[tuple[int, int]]:
    """Pairs (teacher index, student index) of hidden states to match.

    Explicit `teacher_layers` / `student_layers` win (negative indices allowed). Otherwise `"index"` pairs all hidden
    states by position (the counts must agree) and `"relative_depth"` pairs every student hidden state with the
    teacher's at the same relative depth: student i of n_s -> teacher round(i (n_t - 1) / (n_s - 1)).
    """
    if mapping not in LAYER_MAPPINGS:
        raise ValueError(f"Unknown ACM layer mapping {mapping!r}; choose one of {LAYER_MAPPINGS}.")
    if teacher_layers is None and student_layers is None:
        if num_teacher == num_student:
            return [(i, i) for i in range(num_student)]
        if mapping == "index":
            raise ValueError(
                f"The teacher has {num_teacher} hidden states and the student {num_student}, so they cannot be "
                "paired by index. Pass `acm_teacher_layers` and `acm_student_layers` (e.g. teacher 1,2,3,4 with "
                "student 0,1,2,3) or set `acm_layer_mapping='relative_depth'`."
            )
        if num_student == 1:
            return [(num_teacher - 1, 0)]
        return [(round(i * (num_teacher - 1) / (num_student - 1)), i) for i in range(num_student)]
    teacher_layers = list(range(num_teacher)) if teacher_layers is None else list(teacher_layers)
    student_layers = list(range(num_student)) if student_layers is None else list(student_layers)
    if len(teacher_layers) != len(student_layers):
        raise ValueError(
            f"acm_teacher_layers {teacher_layers} and acm_student_layers {student_layers} must have the same length."
        )
    for name, layers, count in (("teacher", teacher_layers, num_teacher), ("student", student_layers, num_student)):
        bad = [i for i in layers if not -count <= i < count]
        if bad:
            raise ValueError(f"ACM {name} layer indices {bad} are out of range: the {name} has {count} hidden states.")
    return [(t % num_teacher, s % num_student) for t, s in zip(teacher_layers, student_layers)]


def acm_loss(
    teacher_hidden_states: Sequence[torch.Tensor],
    student_hidden_states: Sequence[torch.Tensor],
    align: str = "adaptive_max_pool",
    teacher_layers: Sequence[int] | None = None,
    student_layers: Sequence[int] | None = None,
    layer_mapping: str = "index",
    affine_maps: nn.ModuleList | None = None,
) -> torch.Tensor:
    """Sum over matched layers of mean over (batch, channels) of (a_T - a_S)^2 for normalised activated channel maps.

    Teacher entries may be (B, C, H, W) feature maps or their raw (unnormalised) channel maps (B, C), e.g. reduced
    right after the teacher's forward pass to free its feature maps early.

    When channel counts differ, the teacher's map is resampled to the student's count before normalisation:
    `align="adaptive_max_pool"`, or `"affine"` with `affine_maps[k]` (a learned `nn.Linear(C_T, C_S)` per pair).
    """
    if align not in CHANNEL_ALIGNMENTS:
        raise ValueError(f"Unknown ACM channel alignment {align!r}; choose one of {CHANNEL_ALIGNMENTS}.")
    pairs = match_layers(
        len(teacher_hidden_states), len(student_hidden_states), teacher_layers, student_layers, layer_mapping
    )
    if align == "affine" and (affine_maps is None or len(affine_maps) != len(pairs)):
        raise ValueError("align='affine' needs one affine map per matched layer pair (see `build_affine_maps`).")
    total = torch.zeros((), device=student_hidden_states[0].device)
    for k, (t, s) in enumerate(pairs):
        teacher_state = teacher_hidden_states[t].detach()
        teacher_map = (
            activated_channel_map(teacher_state, normalize=False) if teacher_state.dim() == 4 else teacher_state
        )
        student_map = activated_channel_map(student_hidden_states[s])
        if align == "affine":
            teacher_map = affine_maps[k](teacher_map)
        else:
            teacher_map = align_channels(teacher_map, student_map.shape[1])
        total = total + (normalize_channel_map(teacher_map) - student_map).pow(2).mean()
    return total


def build_affine_maps(teacher_channels: Sequence[int], student_channels: Sequence[int]) -> nn.ModuleList:
    """One learned linear map teacher channels -> student channels per matched pair (for `align="affine"`)."""
    return nn.ModuleList(nn.Linear(t, s) for t, s in zip(teacher_channels, student_channels))


WeightedTerms = dict[str, tuple[float, torch.Tensor]]
"""{term name: (weight, value)}: a method's objective is sum(weight * value); each term is logged on its own."""


def kl_divergence(target_logits: torch.Tensor, input_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(softmax(target / t) || softmax(input / t)) per example, batch mean, in fp32; gradients reach both sides.

    Args:
        target_logits: (B, K) logits of the distribution the KL is measured from (e.g. the teacher's soft labels).
        input_logits: (B, K) logits of the distribution being fitted (e.g. the student's).
        temperature: softmax temperature t > 0.
    This is `nn.KLDivLoss(reduction="batchmean")(log_softmax(input), softmax(target))`, i.e. what papers written
    against PyTorch denote KL(input, target) or KL(input || target): the expectation is always under `target`.

    Raises:
        ValueError: the logits' shapes differ.
    """
    if target_logits.shape != input_logits.shape:
        raise ValueError(
            f"KL divergence needs logits of one shape: target {tuple(target_logits.shape)} vs input "
            f"{tuple(input_logits.shape)} (soft labels need a teacher trained on the same classes)."
        )
    input_log_probs = F.log_softmax(input_logits.float() / temperature, dim=-1)
    target_log_probs = F.log_softmax(target_logits.float() / temperature, dim=-1)
    return F.kl_div(input_log_probs, target_log_probs, reduction="batchmean", log_target=True)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 10.0) -> torch.Tensor:
    """gamma^2 KL(softmax(T / gamma) || softmax(S / gamma)), batch mean, in fp32 (MixACM paper, Eq. 5; Hinton et al.).

    Args:
        student_logits, teacher_logits: (B, K) logits; the teacher's are detached.
        temperature: gamma > 0.

    Raises:
        ValueError: the teacher has other classes than the student (drop the KL term for cross-dataset transfer).
    """
    return kl_divergence(teacher_logits.detach(), student_logits, temperature) * temperature**2


TRADES_BETA = 6.0  # Zhang et al., ICML 2019, CIFAR-10 (1/lambda in the paper's notation)
ARD_ALPHA, ARD_TEMPERATURE = 1.0, 30.0  # Goldblum et al., AAAI 2020, reference code's CIFAR-10 defaults
RSLAD_ALPHA = 5 / 6  # Zi et al., ICCV 2021, Eq. 7 and reference code


def trades_loss(
    natural_logits: torch.Tensor, adversarial_logits: torch.Tensor, labels: torch.Tensor, beta: float = TRADES_BETA
) -> WeightedTerms:
    """TRADES (Zhang et al., ICML 2019, Eq. 5): CE(f(x), y) + beta * KL(f(x) || f(x_adv)).

    Args:
        natural_logits: (B, K) the model's logits on clean images x.
        adversarial_logits: (B, K) its logits on x_adv (found by maximising the same KL in the eps ball).
        labels: (B,) class indices.
        beta: weight of the robustness (KL) term; 6 for CIFAR-10 in the paper.
    Returns {"loss_ce": (1, CE), "loss_trades_kl": (beta, KL)}; gradients reach both logits (as in the paper's code).
    """
    return {
        "loss_ce": (1.0, F.cross_entropy(natural_logits.float(), labels)),
        "loss_trades_kl": (beta, kl_divergence(natural_logits, adversarial_logits)),
    }


def ard_loss(
    student_adversarial_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    student_natural_logits: torch.Tensor | None = None,
    alpha: float = ARD_ALPHA,
    temperature: float = ARD_TEMPERATURE,
) -> WeightedTerms:
    """ARD (Goldblum et al., AAAI 2020, Eq. 2): (1 - alpha) CE(S(x), y) + alpha t^2 KL(T(x)/t || S(x_adv)/t) / K.

    The KL is at the reference code's scale: its `nn.KLDivLoss()` averages over the batch and the K classes, so its
    term is the paper's per-example KL divided by K. The defaults (alpha, t, and the paper's learning rate) were set
    at that scale; keeping it keeps the CE/KL balance for alpha < 1 and the step size of the paper's runs.

    Args:
        student_adversarial_logits: (B, K) the student's logits on x_adv (PGD on the student's CE).
        teacher_logits: (B, K) the frozen teacher's logits on clean x (detached here).
        labels: (B,) class indices.
        student_natural_logits: (B, K) the student's logits on clean x; needed only when alpha < 1.
        alpha, temperature: the paper's reference defaults 1 and 30 for CIFAR-10.
    Returns {"loss_kld": (alpha, t^2 KL / K)} plus {"loss_ce": (1 - alpha, CE)} when alpha < 1.

    Raises:
        ValueError: alpha < 1 without `student_natural_logits`; the teacher has other classes than the student.
    """
    classes = student_adversarial_logits.shape[-1]
    terms = {"loss_kld": (alpha, kd_loss(student_adversarial_logits, teacher_logits, temperature) / classes)}
    if alpha < 1:
        if student_natural_logits is None:
            raise ValueError("ard_loss with alpha < 1 needs the student's logits on the clean images.")
        terms["loss_ce"] = (round(1 - alpha, 12), F.cross_entropy(student_natural_logits.float(), labels))
    return terms


def rslad_loss(
    student_natural_logits: torch.Tensor,
    student_adversarial_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    alpha: float = RSLAD_ALPHA,
) -> WeightedTerms:
    """RSLAD (Zi et al., ICCV 2021, Eq. 7): (1 - alpha) KL(T(x) || S(x)) / K + alpha KL(T(x) || S(x_adv)) / K,
    temperature 1.

    The paper writes KL(S(x), T(x)) for PyTorch's `KLDivLoss(log S, T)`, which is KL(T || S): the teacher's robust
    soft labels are the target of both terms. Both KLs are at the reference code's scale: it takes `torch.mean` of the
    element-wise KL over the batch and the K classes, the paper's per-example KL divided by K (the scale its learning
    rate was set at).

    Args:
        student_natural_logits, student_adversarial_logits: (B, K) the student's logits on x and on x_adv (PGD
            maximising KL(T(x) || S(x'))).
        teacher_logits: (B, K) the frozen teacher's logits on clean x (detached here).
        alpha: 5/6 in the paper and its code.
    Returns {"loss_rslad_natural": (1 - alpha, KL / K), "loss_rslad_adv": (alpha, KL / K)}.

    Raises:
        ValueError: the teacher has other classes than the student.
    """
    classes = student_natural_logits.shape[-1]
    return {
        "loss_rslad_natural": (round(1 - alpha, 12), kd_loss(student_natural_logits, teacher_logits, 1.0) / classes),
        "loss_rslad_adv": (alpha, kd_loss(student_adversarial_logits, teacher_logits, 1.0) / classes),
    }


def mixup(
    pixel_values: torch.Tensor, labels: torch.Tensor, alpha: float = 1.0, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Mixup with one lambda ~ Beta(alpha, alpha) per batch: returns (mixed pixels, labels, labels[perm], lambda).

    `alpha <= 0` disables mixing (lambda = 1). Draws from `generator` (a CPU generator) when given, else from torch's
    global RNG (seeded by the Trainer).
    """
    if alpha <= 0:
        return pixel_values, labels, labels, 1.0
    if generator is None:
        lam = float(torch.distributions.Beta(alpha, alpha).sample())
    else:  # torch.distributions takes no generator: numpy's Beta, seeded from the generator
        lam = float(np.random.default_rng(int(torch.randint(2**62, (1,), generator=generator))).beta(alpha, alpha))
    perm = torch.randperm(pixel_values.shape[0], generator=generator).to(pixel_values.device)
    mixed = lam * pixel_values + (1 - lam) * pixel_values[perm]
    return mixed, labels, labels[perm], lam


def mixup_cross_entropy(
    logits: torch.Tensor, labels_a: torch.Tensor, labels_b: torch.Tensor, lam: float
) -> torch.Tensor:
    """lambda CE(logits, labels_a) + (1 - lambda) CE(logits, labels_b), in fp32."""
    logits = logits.float()
    return lam * F.cross_entropy(logits, labels_a) + (1 - lam) * F.cross_entropy(logits, labels_b)


def hidden_states_of(outputs: Any, who: str) -> tuple[torch.Tensor, ...]:
    """The (B, C, H, W) stage outputs a model returned with `output_hidden_states=True` (the ACM contract).

    Raises:
        ValueError: none were returned, or one is not a 4-d feature map (names `who`, e.g. "teacher", "student",
            "teacher 'path'", and the first bad state's index and shape).
    """
    hidden_states = getattr(outputs, "hidden_states", None)
    if not hidden_states:
        raise ValueError(
            f"The {who} returned no hidden_states with output_hidden_states=True, but ACM matching needs its per-stage "
            "feature maps: use a model that returns them (this project's WideResNets, HF ResNet/ConvNeXt, timm models "
            "with `forward_intermediates` via TimmWrapperForImageClassification; mixacm_hf.teachers.load_teacher "
            "adapts timm/ResNet models), or method='kd' / 'natural' which need no hidden states."
        )
    for index, state in enumerate(hidden_states):
        if not isinstance(state, torch.Tensor) or state.dim() != 4:
            shape = tuple(state.shape) if isinstance(state, torch.Tensor) else type(state).__name__
            raise ValueError(
                f"The {who}'s hidden state {index} is {shape}, not a (B, C, H, W) feature map; ACM matching needs "
                "convolutional stage outputs: take them from modules whose outputs are (B, C, H, W) maps (a teacher's "
                "stage_modules, e.g. a conv stem; a token model has few or none), or for a ViT folder use the timm "
                "model through TimmWrapperForImageClassification, whose `forward_intermediates` returns NCHW maps."
            )
    return tuple(hidden_states)


def probe_outputs(model: nn.Module, pixel_values: torch.Tensor, who: str) -> tuple[Any, tuple[torch.Tensor, ...]]:
    """Run a probe batch through `model` with `output_hidden_states=True`, in eval mode and without gradients (the
    training flag is restored): its outputs and its checked hidden states (`hidden_states_of`, naming `who`).

    The one check of the teacher contract: `teachers.check_teacher` at load, the trainer's layer pairing at start.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            outputs = model(pixel_values=pixel_values, output_hidden_states=True)
    finally:
        model.train(was_training)
    return outputs, hidden_states_of(outputs, who)
