"""AutoAttack (Croce & Hein, 2020) through the `pyautoattack` package, for HF classifiers and plain modules."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pyautoattack import AutoAttack
from torch import nn

from .attacks import LogitsModel, Norm, attack_mode, check_eps

AUTOATTACK_ATTACKS: tuple[str, ...] = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")
STANDARD_ATTACKS: tuple[str, ...] = ("apgd-ce", "apgd-t", "fab-t", "square")


def check_autoattack_attacks(attacks: Sequence[str]) -> tuple[str, ...]:
    """Validate a custom list of AutoAttack components."""
    unknown = [name for name in attacks if name not in AUTOATTACK_ATTACKS]
    if unknown or not attacks:
        raise ValueError(
            f"Unknown AutoAttack component(s) {unknown or list(attacks)}; choose from {', '.join(AUTOATTACK_ATTACKS)}."
        )
    return tuple(attacks)


def build_autoattack(
    forward: nn.Module,
    *,
    eps: float,
    norm: Norm,
    num_classes: int,
    attacks: Sequence[str] | None,
    seed: int,
    device: torch.device,
) -> AutoAttack:
    """A `pyautoattack.AutoAttack`: version "standard", or "custom" with `attacks`.

    Targeted components use min(9, num_classes - 1) target classes, so models with fewer than 10 classes work.
    """
    adversary = AutoAttack(
        forward,
        attacks=None if attacks is None else list(check_autoattack_attacks(attacks)),
        device=device,
        eps=eps,
        norm=norm,
        seed=seed,
        version="standard" if attacks is None else "custom",
    )
    adversary.apgd_targeted.n_target_classes = min(adversary.apgd_targeted.n_target_classes, num_classes - 1)
    adversary.fab.n_target_classes = min(adversary.fab.n_target_classes, num_classes - 1)
    return adversary


def autoattack(
    model: nn.Module,
    pixel_values: torch.Tensor,
    labels: torch.Tensor,
    *,
    eps: float,
    norm: Norm = "Linf",
    attacks: Sequence[str] | None = None,
    seed: int = 0,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Run AutoAttack ("standard": APGD-CE, APGD-T, FAB-T, Square; or the components in `attacks`).

    Only correctly classified examples are attacked (AutoAttack's protocol), so examples the model already gets
    wrong are returned unchanged. Returns adversarial examples in the eps ball and in [0, 1]. The global RNG state
    (which pyautoattack reseeds) is restored afterwards.
    """
    eps = check_eps(eps, norm)
    x = pixel_values.detach().float()
    y = labels.to(x.device)
    forward = LogitsModel(model)
    cuda_devices = [x.device] if x.device.type == "cuda" else []
    with attack_mode(model, x.device.type), torch.random.fork_rng(devices=cuda_devices):
        with torch.no_grad():
            num_classes = forward(x[:1]).shape[1]
        adversary = build_autoattack(
            forward, eps=eps, norm=norm, num_classes=num_classes, attacks=attacks, seed=seed, device=x.device
        )
        x_adv, _ = adversary.run_standard_evaluation(x, y, batch_size=batch_size or len(x))
    return x_adv
