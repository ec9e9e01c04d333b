"""AutoAttack (Croce & Hein, 2020) through the `pyautoattack` package, for HF classifiers and plain modules."""

from __future__ import annotations

import difflib
import logging
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from pyautoattack import AutoAttack
from torch import nn

from .attacks import LogitsModel, Norm, attack_mode, check_eps

AUTOATTACK_ATTACKS: tuple[str, ...] = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")
STANDARD_ATTACKS: tuple[str, ...] = ("apgd-ce", "apgd-t", "fab-t", "square")
# pyautoattack's versions and their components: "plus" adds restarts and the untargeted DLR and FAB; "rand" (for
# randomised defences) averages APGD's gradients over 20 draws (EOT) and skips the check for randomness
VERSIONS: dict[str, tuple[str, ...]] = {
    "standard": STANDARD_ATTACKS,
    "plus": ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"),
    "rand": ("apgd-ce", "apgd-dlr"),
}
AUTOATTACK_LOGGER = "auto-attack"  # the logger pyautoattack.AutoAttack reports its checks on


def check_autoattack_attacks(attacks: Sequence[str]) -> tuple[str, ...]:
    """Validate a custom list of AutoAttack components.

    Raises:
        ValueError: naming the unknown ones, the closest component or version for each, and the valid names.
    """
    unknown = [name for name in attacks if name not in AUTOATTACK_ATTACKS]
    if unknown or not attacks:
        names = {**{f"{name}": name for name in AUTOATTACK_ATTACKS}, **{v: f"autoattack:{v}" for v in VERSIONS}}
        names["standard"] = "autoattack (the standard version)"
        guesses = [names[close[0]] for name in unknown if (close := difflib.get_close_matches(name, names, 1, 0.6))]
        raise ValueError(
            f"Unknown AutoAttack component(s) {unknown or list(attacks)}"
            + (f" (did you mean {', '.join(dict.fromkeys(guesses))}?)" if guesses else "")
            + f"; choose components from {', '.join(AUTOATTACK_ATTACKS)}, or a version: autoattack (standard), "
            "autoattack:plus, autoattack:rand."
        )
    return tuple(attacks)


class _Collect(logging.Handler):
    def __init__(self, messages: list[str]):
        super().__init__(logging.WARNING)
        self.messages = messages

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def autoattack_warnings() -> Iterator[list[str]]:
    """Collect pyautoattack's own warnings (output looks like probabilities, randomised defence, zero gradients...),
    which it logs on the "auto-attack" logger (or warns when it has none), into the yielded list."""
    messages: list[str] = []
    logger = logging.getLogger(AUTOATTACK_LOGGER)
    handler = _Collect(messages)
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield messages
    finally:
        logger.removeHandler(handler)
    for warning in caught:
        if "pyautoattack" in warning.filename:
            messages.append(str(warning.message))
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


# AutoAttack's own rule (pyautoattack.checks.check_n_classes): the DLR loss needs 3 classes, its targeted form 4.
MIN_CLASSES: dict[str, int] = {"apgd-dlr": 3, "apgd-t": 4}


def usable_components(
    attacks: Sequence[str] | None, num_classes: int, version: str = "standard"
) -> tuple[tuple[str, ...] | None, dict[str, str]]:
    """The AutoAttack components that can run on a `num_classes`-way classifier, and the dropped ones with why.

    A version (`attacks` None) drops APGD-T (DLR-targeted, >= 4 classes) and APGD-DLR (>= 3) per AutoAttack's rule;
    FAB-T runs with num_classes - 1 target classes. Returns (None, {}) when the version runs unchanged.

    Raises:
        ValueError: an explicitly requested component cannot run; the message names the usable ones.
    """
    requested = VERSIONS[version] if attacks is None else check_autoattack_attacks(attacks)
    dropped = {
        name: f"needs >= {MIN_CLASSES[name]} classes (DLR loss), the model has {num_classes}"
        for name in requested
        if num_classes < MIN_CLASSES.get(name, 0)
    }
    kept = tuple(name for name in requested if name not in dropped)
    if attacks is not None and dropped:
        usable = [name for name in AUTOATTACK_ATTACKS if num_classes >= MIN_CLASSES.get(name, 0)]
        raise ValueError(
            f"AutoAttack component(s) {', '.join(dropped)} cannot run on a {num_classes}-class model: "
            f"{'; '.join(f'{k} {v}' for k, v in dropped.items())}. Usable components: {', '.join(usable)}."
        )
    return (None if attacks is None and not dropped else kept), dropped


def build_autoattack(
    forward: nn.Module,
    *,
    eps: float,
    norm: Norm,
    num_classes: int,
    attacks: Sequence[str] | None,
    seed: int,
    device: torch.device,
    version: str = "standard",
) -> AutoAttack:
    """A `pyautoattack.AutoAttack`: `version` ("standard", "plus", "rand") with its settings, running `attacks` when
    given (the version's components that the classes allow); version "standard" with `attacks` runs "custom".

    Targeted components use min(9, num_classes - 1) target classes, so models with fewer than 10 classes work.
    """
    custom = version == "standard" and attacks is not None
    adversary = AutoAttack(
        forward,
        attacks=list(check_autoattack_attacks(attacks)) if custom else None,
        device=device,
        eps=eps,
        norm=norm,
        seed=seed,
        version="custom" if custom else version,
    )
    if attacks is not None and not custom:
        adversary.attacks_to_run = list(check_autoattack_attacks(attacks))
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
    version: str = "standard",
) -> torch.Tensor:
    """Run AutoAttack ("standard": APGD-CE, APGD-T, FAB-T, Square; or the components in `attacks`; `version` "plus"
    or "rand" runs that version, `attacks` then naming the version's components to keep).

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
            forward,
            eps=eps,
            norm=norm,
            num_classes=num_classes,
            attacks=attacks,
            seed=seed,
            device=x.device,
            version=version,
        )
        x_adv, _ = adversary.run_standard_evaluation(x, y, batch_size=batch_size or len(x))
    return x_adv
