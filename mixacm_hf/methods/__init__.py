"""Training methods as a registry: one `Method` entry per method, read by the trainer, the run script, the model card
and the benchmarks (docs/design.md, "Adding a method").

A method is its facts (needs a teacher? which loss terms? mixup? adversarial examples? backward passes per image?
which hyperparameters belong in its card?) plus one function that computes its weighted loss terms for a batch.
Adding a method is one `register_method(Method(...))` call and its loss function; nothing else changes.

It imports only `losses` and `robustness.attacks` (never the trainer, run script or hub), so they all may import it.
"""

# the modules' entries register themselves on import, in this order (the order of `--help` and of the tables)
from . import distillation  # noqa: F401

# isort: split
from . import adversarial  # noqa: F401

# isort: split
from .registry import (
    ACM_HYPERPARAMETERS,
    KLD_HYPERPARAMETERS,
    METHODS,
    PGD_HYPERPARAMETERS,
    Method,
    MixACMTrainer,
    TermsFunction,
    attack_and_train,
    check_method_flags,
    get_method,
    ignored_flags,
    one_pass,
    register_method,
    relevant_hyperparameters,
)

__all__ = [
    "ACM_HYPERPARAMETERS", "KLD_HYPERPARAMETERS", "METHODS", "PGD_HYPERPARAMETERS", "Method", "MixACMTrainer",
    "TermsFunction", "attack_and_train", "check_method_flags", "get_method", "ignored_flags", "one_pass",
    "register_method", "relevant_hyperparameters",
]  # fmt: skip
