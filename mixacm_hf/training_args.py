"""`MixACMTrainingArguments`: `TrainingArguments` plus the training method and its hyperparameters' flags.

The flags of the methods' hyperparameters are the fields of their params classes (`mixacm_hf.methods`), made here
into fields whose None means "the method's default"; `__post_init__` builds the method's params from them (their
checks run: an invalid value raises `ValueError` naming the flag and its valid range, before any data or model is
loaded) and sets the method's own flags to the values it trains with. Other methods' flags are ignored here (the
training script refuses them on its command line). Budgets are in pixel units of images in [0, 1] (eps = 8/255).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any

from transformers import TrainingArguments

from .methods import METHODS, MethodParams, get_method, method_flag_fields

# the flags of the methods registered with the package (a method registered later: `training_arguments_class`)
MethodFlags = make_dataclass("MethodFlags", method_flag_fields(), namespace={"__module__": __name__})


@dataclass
class MixACMTrainingArguments(MethodFlags, TrainingArguments):
    """`TrainingArguments` plus the training method, its hyperparameters' flags (`MethodFlags`, from the methods'
    params classes) and the teacher's settings."""

    method: str = field(
        default="mixacm",
        metadata={
            "help": "Training method (mixacm_hf.methods): "
            + "; ".join(f"{name}: {entry.description.rstrip('.')}" for name, entry in METHODS.items())
        },
    )
    cross_dataset: bool | None = field(
        default=None,
        metadata={
            "help": "Teacher trained on other classes (paper Table 5): drop the KL term. Default: automatic, with "
            "a warning, when the label counts differ; False makes a label mismatch an error."
        },
    )
    channels_last: bool = field(default=False, metadata={"help": "Run convolutions in channels_last memory format."})
    compile_teacher: bool = field(
        default=False,
        metadata={
            "help": "torch.compile the frozen teacher with inductor freezing (BN folded into convs, weights "
            "prepacked), after a one-off compile (a C++ compiler is needed on CPU; its cost and gain: "
            "benchmarks/method_cost.py). The student stays eager."
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
        method = get_method(self.method)
        for name, value in vars(self.method_params()).items():  # the method's flags: the values it trains with
            setattr(self, name, value)
        if self.max_steps == 0 or (self.max_steps < 0 and not self.num_train_epochs > 0):
            raise ValueError(
                f"--max_steps {self.max_steps} with --num_train_epochs {self.num_train_epochs} trains nothing: give "
                "--max_steps > 0, or --max_steps -1 (the default) with --num_train_epochs > 0."
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

    def method_params(self) -> MethodParams:
        """The method's params from its flags (`Method.params_from`).

        Raises:
            ValueError: an unknown method, or a value out of its range (naming the flag).
        """
        return get_method(self.method).params_from(self)

    @property
    def needs_teacher(self) -> bool:
        return get_method(self.method).needs_teacher


def training_arguments_class() -> type[MixACMTrainingArguments]:
    """`MixACMTrainingArguments`, or, when methods registered after it was defined (a plugin module, a test) have
    flags it lacks, a subclass with those flags too: the class the training script parses (`run_args`)."""
    extra = method_flag_fields(exclude={item.name for item in fields(MixACMTrainingArguments)})
    if not extra:
        return MixACMTrainingArguments
    namespace = {"__module__": __name__, "__reduce__": _reduce}
    return make_dataclass(
        MixACMTrainingArguments.__name__, extra, bases=(MixACMTrainingArguments,), namespace=namespace
    )


def _reduce(args: MixACMTrainingArguments) -> tuple[Any, ...]:
    """Pickles (the `Trainer` saves its arguments) an instance of a class of `training_arguments_class`, which no
    module holds, as one of the class it gives where it is loaded."""
    return _restore, (vars(args).copy(),)


def _restore(state: dict[str, Any]) -> MixACMTrainingArguments:
    args = object.__new__(training_arguments_class())
    vars(args).update(state)
    return args
