"""Robustness evaluation: the input contract (`as_classifier`), the attack registry (FGSM, PGD, AutoAttack and its
plus/rand versions, transfer attacks, common corruptions (no L-norm budget) and any `register_attack` entry; Linf,
L2 and, for AutoAttack, L1), `evaluate_robustness` and its `RobustnessReport`."""

from ..statistics import mcnemar_exact_p, wilson_interval
from .attacks import LogitsModel, check_budget, check_eps, fgsm, logits_of, parse_eps, pgd
from .autoattack import AUTOATTACK_ATTACKS, STANDARD_ATTACKS, autoattack, usable_components
from .classifier import as_classifier, attack_layout
from .evaluate import evaluate_robustness
from .inputs import check_pixels
from .plots import plot_eps_sweep
from .registry import ATTACKS, Attack, AttackSpec, attack_title, parse_attack, register_attack
from .report import RobustnessReport

__all__ = [
    "ATTACKS",
    "AUTOATTACK_ATTACKS",
    "Attack",
    "STANDARD_ATTACKS",
    "AttackSpec",
    "LogitsModel",
    "RobustnessReport",
    "as_classifier",
    "attack_title",
    "attack_layout",
    "autoattack",
    "check_budget",
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
    "register_attack",
    "usable_components",
    "wilson_interval",
]
