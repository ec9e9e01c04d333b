"""Robustness evaluation: FGSM, PGD, AutoAttack, `evaluate_robustness` and its `RobustnessReport`."""

from .attacks import LogitsModel, check_eps, fgsm, logits_of, parse_eps, pgd
from .autoattack import AUTOATTACK_ATTACKS, STANDARD_ATTACKS, autoattack
from .evaluate import AttackSpec, evaluate_robustness, parse_attack
from .plots import plot_eps_sweep
from .report import RobustnessReport, wilson_interval

__all__ = [
    "AUTOATTACK_ATTACKS",
    "STANDARD_ATTACKS",
    "AttackSpec",
    "LogitsModel",
    "RobustnessReport",
    "autoattack",
    "check_eps",
    "evaluate_robustness",
    "fgsm",
    "logits_of",
    "parse_attack",
    "parse_eps",
    "pgd",
    "plot_eps_sweep",
    "wilson_interval",
]
