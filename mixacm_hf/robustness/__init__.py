"""Robustness evaluation: the input contract (`as_classifier`), FGSM, PGD, AutoAttack, `evaluate_robustness` and its
`RobustnessReport`."""

from .attacks import LogitsModel, check_eps, fgsm, logits_of, parse_eps, pgd
from .autoattack import AUTOATTACK_ATTACKS, STANDARD_ATTACKS, autoattack, usable_components
from .classifier import as_classifier, attack_layout
from .evaluate import AttackSpec, check_pixels, evaluate_robustness, parse_attack
from .plots import plot_eps_sweep
from .report import RobustnessReport, mcnemar_exact_p, wilson_interval

__all__ = [
    "AUTOATTACK_ATTACKS",
    "STANDARD_ATTACKS",
    "AttackSpec",
    "LogitsModel",
    "RobustnessReport",
    "as_classifier",
    "attack_layout",
    "autoattack",
    "check_eps",
    "check_pixels",
    "evaluate_robustness",
    "fgsm",
    "logits_of",
    "mcnemar_exact_p",
    "parse_attack",
    "parse_eps",
    "pgd",
    "plot_eps_sweep",
    "usable_components",
    "wilson_interval",
]
