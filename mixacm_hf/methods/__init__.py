"""Training methods as a registry: one `Method` entry per method, read by the trainer, the training arguments, the
run script, the model card and the benchmarks (docs/design.md, section 7.1, "Add a training method").

A method is its facts (needs a teacher? mixup? adversarial examples? backward passes per image?), its
hyperparameters (a `MethodParams` dataclass: fields, defaults, range checks, `--help`; its fields are the method's
command-line flags and what its card and checkpoints record), one function that decides the run's objective from the
params and the teacher, and one that computes the weighted loss terms of a batch from the data the trainer gives it
(`TrainingBatch`). Adding a method is one module: its params class, its functions and a `register_method(Method(...))`
call; nothing else changes.

It imports only `losses` and `robustness.attacks` (never the trainer, run script or hub), so they all may import it.
"""

# the modules' entries register themselves on import, in this order (the order of `--help` and of the tables)
from .distillation import ACMOnlyParams, ACMParams, KDParams, KLDParams, MixACMNoMixupParams, MixACMParams

# isort: split
from .adversarial import ARDParams, EpsParams, NFGSMParams, PGDParams, RSLADParams, TRADESParams

# isort: split
from .registry import (
    METHODS,
    Method,
    MethodParams,
    Objective,
    ObjectiveFunction,
    TeacherSignals,
    TermsFunction,
    TrainingBatch,
    attack_and_train,
    documented_fields,
    flag_owners,
    get_method,
    method_flag_fields,
    one_pass,
    recorded_params,
    register_method,
    relevant_hyperparameters,
)

__all__ = [
    "ACMOnlyParams", "ACMParams", "ARDParams", "EpsParams", "KDParams", "KLDParams", "METHODS", "Method",
    "MethodParams", "MixACMNoMixupParams", "MixACMParams", "NFGSMParams", "Objective", "ObjectiveFunction",
    "PGDParams", "RSLADParams", "TRADESParams", "TeacherSignals", "TermsFunction", "TrainingBatch",
    "attack_and_train", "documented_fields", "flag_owners", "get_method", "method_flag_fields", "one_pass",
    "recorded_params", "register_method", "relevant_hyperparameters",
]  # fmt: skip
