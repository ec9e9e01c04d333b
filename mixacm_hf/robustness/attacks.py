"""FGSM and PGD (Linf, L2) in pixel space [0, 1] for Hugging Face classifiers and plain modules; budgets of the
threat models (Linf, L2 and L1: AutoAttack's L1 version runs through `autoattack.py`).

Budgets are in pixel units (eps = 8/255 means 8/255: normalisation happens inside the model). Attacks run the model
in eval mode and in fp32 (autocast off), and restore each submodule's training flag afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..cli import parse_fraction

Norm = Literal["Linf", "L2", "L1"]
NORMS: tuple[str, ...] = ("Linf", "L2", "L1")  # the threat models an evaluation may name
GRADIENT_NORMS: tuple[str, ...] = ("Linf", "L2")  # those FGSM and PGD implement


def parse_eps(value: str | float) -> float:
    """Parse a budget given as a float or a fraction: `"8/255"` -> 0.0313..., `"0.5"` -> 0.5 (`cli.parse_fraction`)."""
    return parse_fraction(value, "eps")


def largest_eps(norm: str, pixels: int | None = None) -> float:
    """The budget from which every image of `pixels` values in [0, 1] reaches every other, so that it constrains
    nothing: Linf 1, L2 sqrt(pixels), L1 pixels (from black to white; infinite when `pixels` is not known)."""
    if norm == "Linf":
        return 1.0
    if not pixels:
        return math.inf
    return math.sqrt(pixels) if norm == "L2" else float(pixels)


def check_eps(eps: float, norm: str, name: str = "eps", pixels: int | None = None) -> float:
    """Validate a pixel-space budget (training's `pgd_eps`/`pgd_step_size` and evaluation's eps alike): a finite
    number >= 0 below `largest_eps`: Linf eps >= 1 (the whole pixel range) is almost certainly eps in 0..255 units;
    an L2 eps of sqrt(pixels) or an L1 eps of pixels or more (checked when `pixels`, the values per image, is given)
    spans every image.

    Raises:
        ValueError: naming `name`, with the fix (e.g. "Did you mean 8/255").
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}.")
    if not math.isfinite(eps) or eps < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {eps!r}.")
    if norm == "Linf" and eps >= 1:
        raise ValueError(
            f"{name}={eps:g} spans the whole [0, 1] pixel range: budgets are in pixel units of images in "
            f"[0, 1]. Did you mean {eps:g}/255 (= {eps / 255:.6f})?"
        )
    if eps >= largest_eps(norm, pixels):
        raise ValueError(
            f"{name}={eps:g} is an {norm} distance of at least {largest_eps(norm, pixels):.4g}, from an all-black to "
            f"an all-white image of {pixels} values in [0, 1]: every image reaches every other. {norm} budgets are "
            f"distances in pixel units (e.g. {'0.5' if norm == 'L2' else '12'} for CIFAR-10)."
        )
    return float(eps)


def check_sweep_scale(sweep: list[float] | None, eps: float, norm: str, flag: str, eps_flag: str) -> None:
    """An L2/L1 sweep (`flag`) given in Linf's range: its largest budget below a quarter of the run's `eps`
    (`eps_flag`; the default sweep starts there) is a sweep of other units (e.g. 2/255, 8/255 for an L2 eps of 0.5).

    Raises:
        ValueError: naming both flags and the budgets to give instead.
    """
    if norm == "Linf" or not sweep or max(sweep) >= eps / 4:
        return
    raise ValueError(
        f"{flag}: its largest budget {max(sweep):.4g} is below a quarter of {eps_flag} {eps:g}, the {norm} budget "
        f"reported: Linf-sized budgets (e.g. 8/255) for an {norm} evaluation? {norm} budgets are {norm} distances in "
        f"pixel units: give budgets around {eps:g} (e.g. {','.join(f'{b:g}' for b in (0, eps / 4, eps / 2, eps))}) "
        f"or leave {flag} out."
    )


LINF_DEFAULT = 8 / 255  # the default eps of every evaluation: a Linf budget
SMALLEST_L1_BUDGET = 1.0  # one value moved across the whole pixel range: L1 threat models in use are far above it


def check_budget(eps: float, norm: str, name: str = "eps", pixels: int | None = None) -> float:
    """`check_eps` for the budget an evaluation reports its threat model by (not the points of an eps sweep), also
    refusing what is most likely a Linf budget given with another norm (the default eps, 8/255, is Linf's): 8/255
    with L2 (an L2 budget is a distance over all of an image's values: 0.5 on CIFAR-10), and an L1 budget in
    (0, 1), which lets the attack move less than one value across the pixel range in total, far below the L1
    threat models in use (12 on CIFAR-10).

    Raises:
        ValueError: as `check_eps`, or such a budget, naming `name` and the fix.
    """
    eps = check_eps(eps, norm, name, pixels)
    if norm == "L2" and math.isclose(eps, LINF_DEFAULT):
        raise ValueError(
            f"{name}=8/255 is the Linf budget (the default eps), given with L2: an L2 budget is a distance over all "
            f"of an image's values (0.5 on CIFAR-10). Give the L2 budget, e.g. "
            f"{name + ' 0.5' if name.startswith('--') else name + '=0.5'}."
        )
    if norm == "L1" and 0 < eps < SMALLEST_L1_BUDGET:
        raise ValueError(
            f"{name}={eps:g} as an L1 budget lets the attack change the pixel values of an image by {eps:g} in total "
            f"(summed over all its values), less than one value across the pixel range: far below the L1 threat "
            f"models in use (12 on CIFAR-10); {eps:g} looks like a Linf budget (8/255 is Linf's). Give the L1 "
            f"budget in pixel units, e.g. {name + ' 12' if name.startswith('--') else name + '=12'}."
        )
    return eps


def logits_of(output: Any) -> torch.Tensor:
    """The logits tensor of a model output: a tensor itself, or `.logits` / `["logits"]` of an HF output."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if logits is None and isinstance(output, Mapping):
        logits = output.get("logits")
    if isinstance(logits, torch.Tensor):
        return logits
    raise TypeError(
        f"The model returned a {type(output).__name__} without logits. Attacks need a classifier that returns a "
        "logits tensor (B, num_classes) or an output with `.logits` (e.g. transformers' ImageClassifierOutput); "
        "for HF models keep return_dict=True."
    )


class LogitsModel(nn.Module):
    """Wrap a classifier so that calling it on pixel_values returns the logits tensor (what attack code expects)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return logits_of(self.model(pixel_values))


@contextmanager
def attack_mode(model: nn.Module, device_type: str) -> Iterator[None]:
    """Eval mode and fp32 (autocast disabled) for the duration; restores every submodule's training flag."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.autocast(device_type=device_type, enabled=False):
            yield
    finally:
        for module, training in modes:
            module.training = training


def _expand(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape per-example values (B,) to broadcast against inputs (B, ...)."""
    return values.view(-1, *([1] * (like.dim() - 1)))


def _l2_norm(values: torch.Tensor) -> torch.Tensor:
    return values.flatten(1).norm(dim=1).clamp_min(1e-12)


def _steepest_ascent(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """Unit-norm direction maximising the linearised loss under the norm."""
    if norm == "Linf":
        return grad.sign()
    return grad / _expand(_l2_norm(grad), grad)


def project(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Project perturbations onto the eps ball of the norm (per example)."""
    if norm == "Linf":
        return delta.clamp(-eps, eps)
    return delta * _expand((eps / _l2_norm(delta)).clamp(max=1.0), delta)


def _random_start(x: torch.Tensor, eps: float, norm: str, generator: torch.Generator | None) -> torch.Tensor:
    """Uniform in the Linf box; for L2 a uniform direction with a radius uniform in [0, eps]."""
    if norm == "Linf":
        return (torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1) * eps
    direction = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    radius = torch.rand(len(x), generator=generator, device=x.device, dtype=x.dtype) * eps
    return direction * _expand(radius / _l2_norm(direction), x)


def ascent_step(
    x_adv: torch.Tensor,
    grad: torch.Tensor,
    x: torch.Tensor,
    *,
    eps: float,
    norm: str,
    step_size: float,
    projected: bool = True,
) -> torch.Tensor:
    """One steepest-ascent step of size `step_size` from `x_adv` (B, C, H, W), projected onto the eps ball around the
    clean `x` when `projected` (PGD; N-FGSM steps without it) and clipped to the pixel range [0, 1]."""
    moved = x_adv + step_size * _steepest_ascent(grad, norm)
    if projected:
        moved = x + project(moved - x, eps, norm)
    return moved.clamp(0, 1)


def gradient_ascent(
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    start: torch.Tensor,
    *,
    eps: float,
    step_size: float,
    steps: int,
    norm: str = "Linf",
    projected: bool = True,
) -> torch.Tensor:
    """`steps` ascent steps on the scalar `loss_fn(x')` from `start`, each an `ascent_step`: the inner maximisation
    of adversarial training (PGD-AT, N-FGSM, TRADES, ARD, RSLAD). Returns the last iterate (B, C, H, W), detached,
    in [0, 1] (and in the eps ball around `x` when `projected`); gradients reach only the input."""
    x_adv = start.detach()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_fn(x_adv), x_adv)
        x_adv = ascent_step(x_adv.detach(), grad, x, eps=eps, norm=norm, step_size=step_size, projected=projected)
    return x_adv.detach()


def _pgd_run(
    forward: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    norm: str,
    steps: int,
    step_size: float,
    random_start: bool,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One PGD run. Returns, per example, the first iterate that fooled the model (else the last) and the flags."""
    x_adv = (x + _random_start(x, eps, norm, generator)).clamp(0, 1) if random_start else x.clone()
    best = x_adv.detach()
    fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        logits = forward(x_adv)
        (grad,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), x_adv)
        x_adv = x_adv.detach()
        newly_fooled = (logits.detach().argmax(1) != y) & ~fooled
        best = torch.where(_expand(newly_fooled, x), x_adv, best)
        fooled |= newly_fooled
        x_adv = ascent_step(x_adv, grad, x, eps=eps, norm=norm, step_size=step_size)
    with torch.no_grad():
        fooled_last = forward(x_adv).argmax(1) != y
    return torch.where(_expand(fooled, x), best, x_adv), fooled | fooled_last


def pgd(
    model: nn.Module,
    pixel_values: torch.Tensor,
    labels: torch.Tensor,
    *,
    eps: float,
    norm: Norm = "Linf",
    steps: int = 20,
    step_size: float | None = None,
    restarts: int = 1,
    random_start: bool = True,
    seed: int | None = None,
) -> torch.Tensor:
    """Projected gradient descent on the cross-entropy (Madry et al.), Linf or L2, in pixel space [0, 1].

    `step_size` defaults to eps / 4 (2/255 at eps = 8/255). Each restart attacks only the examples that survived
    the previous ones, so an example is robust only if it survives every restart. Returns adversarial examples
    (B, ...) in the eps ball around `pixel_values` and in [0, 1]: per example the first iterate that fooled the
    model, or the last iterate of the last restart.
    """
    eps = check_eps(eps, norm)
    if norm not in GRADIENT_NORMS:
        raise ValueError(f"PGD and FGSM are implemented for {' and '.join(GRADIENT_NORMS)}, not {norm}.")
    if steps < 1 or restarts < 1:
        raise ValueError(f"steps and restarts must be >= 1, got steps={steps}, restarts={restarts}.")
    step_size = eps / 4 if step_size is None else step_size
    x = pixel_values.detach().float()
    y = labels.to(x.device)
    generator = None if seed is None else torch.Generator(x.device).manual_seed(seed)
    forward = LogitsModel(model)
    x_adv = x.clone()
    robust = torch.ones(len(x), dtype=torch.bool, device=x.device)
    with attack_mode(model, x.device.type), torch.enable_grad():
        for _ in range(restarts):
            index = robust.nonzero().squeeze(1)
            if index.numel() == 0:
                break
            candidate, fooled = _pgd_run(
                forward, x[index], y[index], eps, norm, steps, step_size, random_start, generator
            )
            x_adv[index] = candidate
            robust[index] = ~fooled
    return x_adv


def fgsm(
    model: nn.Module, pixel_values: torch.Tensor, labels: torch.Tensor, *, eps: float, norm: Norm = "Linf"
) -> torch.Tensor:
    """Fast gradient (sign) method: one step of size eps from the clean image (Goodfellow et al.; L2: FGM)."""
    return pgd(model, pixel_values, labels, eps=eps, norm=norm, steps=1, step_size=eps, random_start=False)
