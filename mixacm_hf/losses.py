"""MixACM loss terms (DESIGN.md, "The method, exactly"): activated channel maps, ACM loss, soft-label KD, mixup."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

CHANNEL_ALIGNMENTS = ("adaptive_max_pool", "affine")
LAYER_MAPPINGS = ("index", "relative_depth")


def activated_channel_map(hidden_state: torch.Tensor, normalize: bool = True, eps: float = 1e-12) -> torch.Tensor:
    """(B, C, H, W) -> (B, C): each channel's spatial maximum, L2-normalised per sample (in fp32).

    The maximum is taken in the map's own dtype (exact) by global max pooling, whose backward writes the gradient to
    the argmax only (on CPU, alone, ~20x cheaper than `amax` over (H, W) of an fp32 copy and its backward). An all-zero
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


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 10.0) -> torch.Tensor:
    """gamma^2 KL(softmax(T / gamma) || softmax(S / gamma)), batch mean, in fp32."""
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"Student logits {tuple(student_logits.shape)} and teacher logits {tuple(teacher_logits.shape)} differ: "
            "soft labels need a teacher trained on the same classes (drop KLD for cross-dataset transfer)."
        )
    student_log_probs = F.log_softmax(student_logits.float() / temperature, dim=-1)
    teacher_log_probs = F.log_softmax(teacher_logits.detach().float() / temperature, dim=-1)
    kl = F.kl_div(student_log_probs, teacher_log_probs, reduction="batchmean", log_target=True)
    return kl * temperature**2


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
