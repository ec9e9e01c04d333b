"""`MixACMTrainingArguments`: `TrainingArguments` plus the training method and its objective's hyperparameters.

Every value is checked in `__post_init__` (before any data or model is loaded): an invalid one raises `ValueError`
naming the flag and its valid range. Budgets are in pixel units of images in [0, 1] (eps = 8/255).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from transformers import TrainingArguments

from .losses import ARD_ALPHA, ARD_TEMPERATURE, CHANNEL_ALIGNMENTS, LAYER_MAPPINGS, RSLAD_ALPHA, TRADES_BETA
from .methods import METHODS, get_method
from .robustness.attacks import check_eps


@dataclass
class MixACMTrainingArguments(TrainingArguments):
    """`TrainingArguments` plus the MixACM objective (defaults: the paper's CIFAR settings)."""

    method: str = field(
        default="mixacm",
        metadata={
            "help": "Training method (mixacm_hf.methods): "
            + "; ".join(f"{name}: {entry.description.rstrip('.')}" for name, entry in METHODS.items())
        },
    )
    alpha_acm: float = field(default=5000.0, metadata={"help": "Weight (>= 0) of the activated-channel-map loss."})
    alpha_kld: float = field(
        default=0.95, metadata={"help": "Weight of the soft-label KL term; the (mixup) CE gets 1 - alpha_kld."}
    )
    temperature: float = field(default=10.0, metadata={"help": "Softmax temperature gamma of the KL term."})
    mixup_alpha: float = field(default=1.0, metadata={"help": "Mixup lambda ~ Beta(alpha, alpha); 0 disables mixup."})
    acm_teacher_layers: list[int] | None = field(
        default=None, metadata={"help": "Teacher hidden-state indices to match (default: all, see acm_layer_mapping)."}
    )
    acm_student_layers: list[int] | None = field(
        default=None, metadata={"help": "Student hidden-state indices, paired with acm_teacher_layers."}
    )
    acm_layer_mapping: str = field(
        default="index",
        metadata={
            "help": "Pairing when no indices are given: 'index' (counts must agree) or 'relative_depth'.",
            "choices": list(LAYER_MAPPINGS),
        },
    )
    acm_channel_align: str = field(
        default="adaptive_max_pool",
        metadata={
            "help": "Teacher->student channel alignment when counts differ: 'adaptive_max_pool' or 'affine' "
            "(a learned linear map per layer, trained with the student; saved in checkpoints, not in the model).",
            "choices": list(CHANNEL_ALIGNMENTS),
        },
    )
    cross_dataset: bool | None = field(
        default=None,
        metadata={
            "help": "Teacher trained on other classes (paper Table 5): drop the KL term. Default: automatic, with "
            "a warning, when the label counts differ; False makes a label mismatch an error."
        },
    )
    pgd_eps: float = field(default=8 / 255, metadata={"help": "Linf budget of adversarial training, in [0, 1] units."})
    pgd_step_size: float | None = field(
        default=None,
        metadata={"help": "Step size of the inner attack (default: the method's: 2/255; TRADES 0.007)."},
    )
    pgd_steps: int | None = field(
        default=None,
        metadata={
            "help": "Steps of the inner attack (default: the method's: PGD-AT 7 as in the paper's baseline; "
            "TRADES, ARD, RSLAD 10 as in theirs)."
        },
    )
    trades_beta: float = field(default=TRADES_BETA, metadata={"help": "TRADES: weight of KL(f(x) || f(x_adv))."})
    ard_alpha: float = field(default=ARD_ALPHA, metadata={"help": "ARD: weight of the adversarial KL (CE: 1 - it)."})
    ard_temperature: float = field(default=ARD_TEMPERATURE, metadata={"help": "ARD: softmax temperature."})
    rslad_alpha: float = field(default=RSLAD_ALPHA, metadata={"help": "RSLAD: weight of the adversarial KL term."})
    nfgsm_noise: float = field(
        default=2.0, metadata={"help": "N-FGSM: uniform noise in [-k eps, k eps] before the eps-sized FGSM step."}
    )
    channels_last: bool = field(default=False, metadata={"help": "Use channels_last memory format (faster on CPU)."})
    compile_teacher: bool = field(
        default=False,
        metadata={
            "help": "torch.compile the frozen teacher with inductor freezing (BN folded into convs, weights "
            "prepacked): its forward takes ~0.7x the eager time on CPU, after a one-off compile (~30 s; a C++ "
            "compiler is needed on CPU). The student stays eager."
        },
    )
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep raw columns: images are transformed on the fly."}
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Train into an output_dir that holds a finished model, replacing it (refused otherwise)."},
    )
    restore_callback_states_from_checkpoint: bool = field(
        default=True,
        metadata={"help": "Restore callback states when resuming, so train_seconds (TrainingClock) sums over runs."},
    )

    def __post_init__(self):
        super().__post_init__()
        defaults = {"pgd_steps": 7, "pgd_step_size": 2 / 255, **get_method(self.method).defaults}
        for name, value in defaults.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.max_steps == 0 or (self.max_steps < 0 and not self.num_train_epochs > 0):
            raise ValueError(
                f"--max_steps {self.max_steps} with --num_train_epochs {self.num_train_epochs} trains nothing: give "
                "--max_steps > 0, or --max_steps -1 (the default) with --num_train_epochs > 0."
            )
        check_eps(self.pgd_eps, "Linf", "--pgd_eps")
        check_eps(self.pgd_step_size, "Linf", "--pgd_step_size")
        method = get_method(self.method)
        for name in ("pgd_eps", "pgd_step_size"):  # a zero budget or step trains with no attack at all
            if method.adversarial and name in method.hyperparameters and getattr(self, name) == 0:
                raise ValueError(
                    f"--{name} 0 makes --method {self.method} train without adversarial examples: give it a budget > 0 "
                    "(e.g. --pgd_eps 8/255 --pgd_step_size 2/255), or use --method kd / natural for no attack."
                )
        if self.label_smoothing_factor != 0:  # `Trainer` smooths only in its own loss, which no method uses
            raise ValueError(
                f"--label_smoothing_factor {self.label_smoothing_factor} would be ignored: no method of mixacm-hf "
                "smooths its labels (each method's objective is its paper's). Remove it."
            )
        if self.cross_dataset and method.needs_teacher and not method.uses_acm:
            raise ValueError(
                f"--cross_dataset true drops the soft labels and keeps the activated channel maps, but --method "
                f"{self.method} has no ACM term: it learns from the teacher's soft labels only. Remove it, or use a "
                "method with ACM (e.g. mixacm) for a teacher trained on other classes."
            )
        for name, weighs in method.refuses_zero.items():
            if getattr(self, name) == 0:
                raise ValueError(f"--{name} 0 switches off --method {self.method}: it weighs {weighs}.")
        checks = (
            ("alpha_acm", self.alpha_acm >= 0, "a weight >= 0 (a negative one trains away from the teacher's maps)"),
            ("alpha_kld", 0 <= self.alpha_kld <= 1, "in [0, 1] (the CE gets 1 - alpha_kld)"),
            ("temperature", self.temperature > 0, "> 0"),
            ("mixup_alpha", self.mixup_alpha >= 0, "the Beta parameter, > 0, or 0 to turn mixup off"),
            ("nfgsm_noise", self.nfgsm_noise >= 0, ">= 0"),
            ("pgd_steps", self.pgd_steps >= 1, ">= 1"),
            ("trades_beta", self.trades_beta >= 0, ">= 0"),
            ("ard_alpha", 0 <= self.ard_alpha <= 1, "in [0, 1]"),
            ("ard_temperature", self.ard_temperature > 0, "> 0"),
            ("rslad_alpha", 0 <= self.rslad_alpha <= 1, "in [0, 1]"),
        )
        for name, ok, meaning in checks:
            if name in method.refuses_zero:  # 0 is refused above: say so in the range
                meaning = meaning.replace(">= 0", "> 0").replace("[0,", "(0,")
            value = getattr(self, name)
            if not (ok and math.isfinite(value)):
                finite = "" if math.isfinite(value) else "finite and "
                raise ValueError(f"--{name} {value} is invalid: it must be {finite}{meaning}.")

    @property
    def needs_teacher(self) -> bool:
        return get_method(self.method).needs_teacher
