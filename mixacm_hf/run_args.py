"""The training script's arguments (`ModelArguments`, `DataArguments`, `EvaluationArguments`, with
`MixACMTrainingArguments`) and everything about them that is checked before any data or model is loaded:
`check_arguments` (a resumed run against its checkpoint's settings, `run_settings`, see `resume`; checkpoint
selection only on a validation split, `selects_checkpoint`), the flags a method would ignore (`unused_flags`); the
end-of-run evaluation's budgets (`eps_sweep`)."""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import EarlyStoppingCallback, HfArgumentParser, TrainerCallback

from .cli import without_hyphenated_aliases
from .data.identity import dataset_identity
from .methods import flag_owners, get_method
from .provenance import model_identity
from .resume import RESUMED_SETTINGS, check_resumed_settings, finished_model, nothing_left, resume_checkpoint
from .robustness import parse_eps
from .robustness.attacks import check_budget, check_eps, check_sweep_scale, largest_eps
from .robustness.registry import check_attack_norms, parse_attack
from .robustness.transfer import check_white_box_partner
from .teachers import DEFAULT_MODEL_DIR, check_zoo_checkpoint, is_zoo_spec
from .training_args import MixACMTrainingArguments, training_arguments_class

logger = logging.getLogger(__name__)


@dataclass
class ModelArguments:
    student: str = field(
        default="wrn-16-2",
        metadata={"help": "Student: a preset name ('wrn-16-2', any 'wrn-D-K', 'dm-wrn-D-K') or a model folder/Hub id."},
    )
    student_from_config: bool = field(
        default=False,
        metadata={
            "help": "Build a folder/Hub-id student from its config with new random weights (e.g. microsoft/resnet-50 "
            "for the paper's ImageNet runs) instead of loading its weights."
        },
    )
    teacher: str | None = field(
        default=None,
        metadata={
            "help": "Teacher: model folder, Hub id, checkpoint file (see --teacher_architecture) or RobustBench zoo "
            "entry robustbench:<dataset>/<threat_model>/<name> (e.g. robustbench:cifar10/Linf/Carmon2019Unlabeled)."
        },
    )
    teacher_architecture: str | None = field(
        default=None, metadata={"help": "Architecture of a foreign teacher checkpoint, e.g. 'standard-wrn-34-10'."}
    )
    teacher_image_mean: list[float] | None = field(
        default=None, metadata={"help": "Mean a foreign teacher normalises with (default: its own)."}
    )
    teacher_image_std: list[float] | None = field(default=None, metadata={"help": "Std, with teacher_image_mean."})
    acm_teacher_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "Teacher modules whose outputs are its hidden states (forward hooks), e.g. layer1 layer2 layer3. "
            "Default: the teacher's own hidden states; for a RobustBench entry the last module at each resolution."
        },
    )
    robustbench_model_dir: str = field(
        default=DEFAULT_MODEL_DIR,
        metadata={"help": "RobustBench's model folder, for --teacher robustbench:... (default ./models)"},
    )
    dropout: float = field(default=0.0, metadata={"help": "Dropout of a preset student."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow code from model folders/Hub repos."})


@dataclass
class DataArguments:
    dataset: str = field(
        default="uoft-cs/cifar10", metadata={"help": "Dataset folder or Hub id (e.g. ../shared/datasets/cifar10)."}
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Dataset configuration name."})
    train_split: str = field(default="train")
    eval_split: str = field(default="test")
    image_column: str | None = field(default=None, metadata={"help": "Image column (default: img|image)."})
    label_column: str | None = field(
        default=None, metadata={"help": "Label column (default: label|labels|fine_label)."}
    )
    image_size: int = field(default=32, metadata={"help": "Input resolution; > 32 selects ImageNet-style transforms."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training images."})
    train_fraction: float | None = field(
        default=None,
        metadata={"help": "Train on a class-balanced prefix of the training split: the first fraction of each class."},
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Deprecated: use --eval_n, the one cap on evaluation images."}
    )
    validation_split: str | None = field(
        default=None,
        metadata={
            "help": "Split the Trainer evaluates and selects checkpoints on (--load_best_model_at_end, "
            "--metric_for_best_model), other than --eval_split, whose results the card reports."
        },
    )
    validation_fraction: float | None = field(
        default=None,
        metadata={
            "help": "Hold out this fraction of --train_split (class-balanced, drawn with --seed) as the validation "
            "split, left out of training; instead of --validation_split."
        },
    )
    streaming: bool = field(default=False, metadata={"help": "Stream the training data (needs max_steps)."})
    skip_bad_images: bool = field(
        default=False,
        metadata={
            "help": "Leave out rows whose image cannot be decoded (warning with their count; map-style splits are "
            "decoded once at load to find them) instead of stopping with an error naming the split and row."
        },
    )
    in_memory_images: bool = field(
        default=False,
        metadata={
            "help": "Decode the training images once into memory and crop/flip whole batches as tensors: for "
            "CIFAR-sized map-style datasets on a small CPU, where per-image PIL transforms in a dataloader worker "
            "compete with training for the cores (use with dataloader_num_workers 0)."
        },
    )


@dataclass
class EvaluationArguments:
    """The robustness evaluation that ends a run; its results go into the model card."""

    eval_attacks: str = field(
        default="clean,pgd-20",
        metadata={
            "help": "Comma-separated attacks (clean, fgsm, pgd-<steps>, autoattack, ...: the names "
            "training/evaluate_robustness.py --help lists); AutoAttack runs at --eval_eps only, in a report of its "
            "own with the other attacks; '' for none."
        },
    )
    eval_autoattack: bool | None = field(default=None, metadata={"help": "Deprecated: see --eval_attacks."})
    eval_n: int = field(
        default=1000, metadata={"help": "Evaluate (clean accuracy and attacks) the first N images of --eval_split."}
    )
    eval_batch_size: int = field(default=128, metadata={"help": "Batch size of the attacks."})
    eval_eps: float = field(default=8 / 255, metadata={"help": "Attack budget in pixel units (8/255)."})
    eval_norm: str = field(default="Linf", metadata={"help": "Threat model.", "choices": ["Linf", "L2", "L1"]})
    eval_eps_sweep: str | None = field(
        default=None,
        metadata={
            "help": "Comma-separated budgets of the card's robustness-vs-eps plot (not run for AutoAttack); '' for "
            "none. Default: 0, eps/4, eps/2, eps, 2 eps of --eval_eps (Linf 8/255: 0,2/255,4/255,8/255,16/255)."
        },
    )
    card_dataset_id: str | None = field(
        default=None, metadata={"help": "Hub dataset id for the card, e.g. uoft-cs/cifar10 when --dataset is a copy."}
    )
    card_license: str = field(default="apache-2.0", metadata={"help": "License in the model card."})


def argument_parser() -> HfArgumentParser:
    """The parser of `training/run_mixacm.py`: the flags of every registered method's params among the training
    arguments (`training_arguments_class`). No abbreviated flags (`--temp` for `--temperature`): each flag is checked
    by its full name (`unused_flags`), as in `evaluate_robustness.py`."""
    parser = HfArgumentParser(
        (ModelArguments, DataArguments, training_arguments_class(), EvaluationArguments),
        allow_abbrev=False,
        usage="%(prog)s [--config FILE] [--flag value ...] (the flags: below)",
        description="Train a robust student with MixACM or a baseline (--method). --config FILE reads these "
        "arguments from a YAML/JSON file (e.g. training/configs/cifar10_cpu_wrn16-2.yaml); flags override it.",
    )
    return without_hyphenated_aliases(parser)


# flags that only configure the teacher (a `--config` file's teacher only warns: one file serves every method)
TEACHER_FLAGS = (
    "teacher", "teacher_architecture", "teacher_image_mean", "teacher_image_std", "acm_teacher_modules",
    "robustbench_model_dir", "compile_teacher", "cross_dataset",
)  # fmt: skip


def unused_flags(method: str, flags: Iterable[str]) -> list[str]:
    """Why `method` would ignore some of `flags` (field names, e.g. from `cli.explicit_flags`): another method's
    hyperparameter (a field of its params, not of this method's: e.g. `temperature` for ARD, whose temperature is
    `ard_temperature`), or a teacher setting for a method without a teacher. One sentence per kind, naming the flags;
    [] when it uses them all. The training script refuses them on its command line and warns of them in a config.

    Raises:
        ValueError: `method` is not registered.
    """
    entry, flags, owners = get_method(method), set(flags), flag_owners()
    reasons = []
    foreign = sorted(name for name in flags & set(owners) if name not in entry.flags)
    if foreign:
        takes = ", ".join(f"--{name}" for name in entry.flags) or "none"
        reasons.append(
            f"--method {method} does not use "
            + "; ".join(f"--{name} (a hyperparameter of {', '.join(owners[name])})" for name in foreign)
            + f": remove it, or choose the method it belongs to. --method {method} takes: {takes}."
        )
    unused = [name for name in TEACHER_FLAGS if name in flags] if not entry.needs_teacher else []
    if unused:
        reasons.append(
            f"--method {method} learns from no teacher: {', '.join(f'--{name}' for name in unused)} would be "
            "ignored. Remove it, or choose a method with a teacher (e.g. mixacm, kd, ard, rslad)."
        )
    return reasons


def fold_deprecated(data_args: DataArguments, eval_args: EvaluationArguments) -> None:
    """Apply the deprecated flags as their new spellings, with a `FutureWarning` naming each: `--max_eval_samples N`
    (ValueError below 1) caps `--eval_n`, `--eval_autoattack true` adds autoattack to `--eval_attacks` (false: none)."""
    if data_args.max_eval_samples is not None:
        if data_args.max_eval_samples < 1:
            raise ValueError(f"--max_eval_samples {data_args.max_eval_samples}: give a positive number of images "
                             "(or leave it out: all), with --eval_n, its new name.")  # fmt: skip
        warnings.warn("--max_eval_samples is deprecated: use --eval_n (the one cap on evaluation images).",
                      FutureWarning, stacklevel=3)  # fmt: skip
        eval_args.eval_n = min(eval_args.eval_n, data_args.max_eval_samples)
        data_args.max_eval_samples = None
    if eval_args.eval_autoattack:
        attacks = [name.strip() for name in eval_args.eval_attacks.split(",") if name.strip()]
        warnings.warn(f"--eval_autoattack is deprecated: use --eval_attacks {','.join([*attacks, 'autoattack'])}.",
                      FutureWarning, stacklevel=3)  # fmt: skip
        eval_args.eval_attacks = ",".join(dict.fromkeys([*attacks, "autoattack"]))
    elif eval_args.eval_autoattack is False:
        warnings.warn("--eval_autoattack is deprecated: leave it out (see --eval_attacks)", FutureWarning, stacklevel=3)
    eval_args.eval_autoattack = None


def check_arguments(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: MixACMTrainingArguments,
    eval_args: EvaluationArguments,
    callbacks: Sequence[TrainerCallback | type[TrainerCallback]] = (),
) -> None:
    """Everything that can be checked before any data or model is loaded; errors name the argument (`callbacks`: the
    run's own, which may select checkpoints).

    (`MixACMTrainingArguments` checks its own fields when built; the data and the teacher are checked as they load.)

    Raises:
        ValueError: an invalid argument, or an `output_dir` holding a finished model while neither resuming nor
            `--overwrite_output_dir true`.
    """
    if training_args.needs_teacher and not model_args.teacher:
        raise ValueError(f"--method {training_args.method} learns from a teacher: pass --teacher PATH_OR_HUB_ID.")
    if training_args.needs_teacher and is_zoo_spec(model_args.teacher):
        names = ("teacher_architecture", "teacher_image_mean", "teacher_image_std")
        given = [f"--{name}" for name in names if getattr(model_args, name) is not None]
        if given:
            raise ValueError(f"--teacher {model_args.teacher} is built by RobustBench: drop {' and '.join(given)}.")
        check_zoo_checkpoint(model_args.teacher, model_args.robustbench_model_dir)
    fraction = data_args.train_fraction
    if fraction is not None and (data_args.streaming or not 0 < fraction <= 1):
        raise ValueError(f"--train_fraction {fraction}: give a number in (0, 1] (not with --streaming).")
    check_validation(data_args, training_args, callbacks)
    if data_args.streaming and training_args.max_steps <= 0:
        raise ValueError("Streaming datasets have no length: pass --max_steps.")
    if data_args.max_train_samples is not None and data_args.max_train_samples < 1:
        raise ValueError(f"--max_train_samples {data_args.max_train_samples}: give a positive number of images (or "
                         "leave it out: all).")  # fmt: skip
    for flag in ("eval_n", "eval_batch_size"):
        if getattr(eval_args, flag) < 1:
            raise ValueError(f"--{flag} {getattr(eval_args, flag)}: must be >= 1.")
    for flag in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
        if getattr(training_args, flag) < 1:
            raise ValueError(f"--{flag} {getattr(training_args, flag)}: must be >= 1.")
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and training_args.world_size == 1:  # e.g. torchrun on a machine without GPUs, no --use_cpu
        raise ValueError(
            f"Launched as {launched} processes, but each would train alone (and write the same --output_dir): on a "
            "machine without GPUs pass --use_cpu true, so that the processes train together (gloo)."
        )
    attacks = [name for name in eval_args.eval_attacks.split(",") if name.strip()]
    pixels = 3 * data_args.image_size**2
    checks = [("eval_attacks", lambda: check_eval_attacks(attacks, eval_args.eval_norm, training_args.needs_teacher))]
    checks.append(("eval_eps", lambda: check_budget(eval_args.eval_eps, eval_args.eval_norm, pixels=pixels)))
    checks.append(("eval_eps_sweep", lambda: eps_sweep(eval_args, data_args.image_size)))
    for flag, check in checks:
        try:
            check()
        except ValueError as error:
            raise ValueError(f"--{flag}: {error}") from error
    sweep = eps_sweep(eval_args, data_args.image_size)
    check_sweep_scale(sweep, eval_args.eval_eps, eval_args.eval_norm, "--eval_eps_sweep", "--eval_eps")
    checkpoint = resume_checkpoint(training_args)  # `last` without a checkpoint would start afresh
    if checkpoint is not None:
        check_resumed_settings(checkpoint, run_settings(data_args, training_args, model_args))
    if finished_model(training_args.output_dir) and not training_args.overwrite_output_dir:
        if checkpoint is None:
            raise ValueError(
                f"--output_dir {training_args.output_dir} already holds a finished model: pass another --output_dir, "
                "--resume_from_checkpoint to continue its run, or --overwrite_output_dir true to replace it."
            )
        if nothing_left(Path(checkpoint), training_args):
            raise ValueError(
                f"--output_dir {training_args.output_dir} holds a finished model and its checkpoint {checkpoint} is "
                "the end of the run: there is nothing to resume (resuming would train past it, and a longer schedule "
                "is another run). Pass another --output_dir, or --overwrite_output_dir true."
            )


def selects_checkpoint(
    training_args: MixACMTrainingArguments, callbacks: Sequence[TrainerCallback | type[TrainerCallback]] = ()
) -> list[str]:
    """What in a run selects a checkpoint or stops early on a metric of the Trainer's evaluation data: the flags (and
    `EarlyStoppingCallback`s among `callbacks`), as errors name them; [] when nothing does."""
    chosen = ["--load_best_model_at_end"] if training_args.load_best_model_at_end else []
    if training_args.metric_for_best_model is not None:
        chosen.append(f"--metric_for_best_model {training_args.metric_for_best_model}")
    if training_args.save_strategy == "best":
        chosen.append("--save_strategy best")
    early = [c for c in callbacks if isinstance(c, EarlyStoppingCallback) or c is EarlyStoppingCallback]
    return chosen + ["an EarlyStoppingCallback"] * bool(early)


def check_validation(
    data_args: DataArguments,
    training_args: MixACMTrainingArguments,
    callbacks: Sequence[TrainerCallback | type[TrainerCallback]] = (),
) -> None:
    """A checkpoint is selected (`selects_checkpoint`) only on a validation split other than the reported one:
    `--validation_split` (neither --eval_split nor --train_split) or `--validation_fraction` (in (0, 1), map-style).

    Raises:
        ValueError: naming the flags and the fix.
    """
    split, fraction = data_args.validation_split, data_args.validation_fraction
    if split is not None and fraction is not None:
        raise ValueError("Pass --validation_split or --validation_fraction, not both.")
    if split is not None and split in (data_args.eval_split, data_args.train_split):
        which = "the reported --eval_split" if split == data_args.eval_split else "--train_split, trained on"
        raise ValueError(
            f"--validation_split {split} is {which}: give another split, or --validation_fraction F to hold out "
            "part of --train_split."
        )
    if fraction is not None and (data_args.streaming or not 0 < fraction < 1):
        raise ValueError(f"--validation_fraction {fraction}: give a number in (0, 1) (not with --streaming).")
    chosen = selects_checkpoint(training_args, callbacks)
    if chosen and split is None and fraction is None:
        raise ValueError(
            f"{', '.join(chosen)} would select a checkpoint on the --eval_split {data_args.eval_split!r}, whose "
            "results the card reports (a model chosen on its test data): pass --validation_split NAME (another "
            "split) or --validation_fraction F (held out of --train_split), or drop "
            f"{'it' if len(chosen) == 1 else 'them'}."
        )


def check_eval_attacks(attacks: list[str], norm: str, has_teacher: bool) -> None:
    """Check the end-of-run attacks before training: known names, implemented for `norm`, a transfer attack with its
    white-box PGD and, for `transfer` without a source, a method with a teacher (its default source).

    Raises:
        ValueError: naming the attack and the fix.
    """
    specs = [parse_attack(name) for name in attacks]
    check_attack_norms(specs, norm)
    check_white_box_partner(specs)
    if not has_teacher and any(spec.attack.role == "transfer" and spec.source is None for spec in specs):
        raise ValueError(
            "transfer attacks from the teacher, and this method has none: name the source (transfer:<model>)."
        )


def eps_sweep(eval_args: EvaluationArguments, image_size: int) -> list[float] | None:
    """The budgets of the end-of-run sweep: `--eval_eps_sweep` as given ('' for none), else 0, eps/4, eps/2, eps and
    2 eps of `--eval_eps` in its `--eval_norm`, without those beyond the norm's range (`largest_eps`).

    Raises:
        ValueError: a given budget that is unreadable or outside the norm's range (`check_eps`).
    """
    norm, pixels = eval_args.eval_norm, 3 * image_size**2
    if eval_args.eval_eps_sweep is not None:
        given = [eps for eps in eval_args.eval_eps_sweep.split(",") if eps.strip()]
        return [check_eps(parse_eps(eps), norm, pixels=pixels) for eps in given] or None
    eps = eval_args.eval_eps
    return sorted({budget for budget in (0.0, eps / 4, eps / 2, eps, 2 * eps) if budget < largest_eps(norm, pixels)})


def run_settings(
    data_args: DataArguments, training_args: MixACMTrainingArguments, model_args: ModelArguments | None = None
) -> dict[str, Any]:
    """This run's `RESUMED_SETTINGS` as JSON values; the one of num_train_epochs / max_steps that does not count is
    None (max_steps > 0 overrides epochs); the dataset as its identity (`dataset_identity`: a local copy by its
    name and files, wherever it is); the student and teacher (`model_args`; none for a method without a teacher) by
    `model_identity` (a local model by its files' contents)."""
    values = training_args.to_dict()  # enums as their values (lr_scheduler_type: "cosine")
    models = vars(model_args) if model_args is not None else {}
    if not training_args.needs_teacher:
        models = {key: value for key, value in models.items() if key not in TEACHER_FLAGS}
    models = {key: model_identity(value) if key in ("student", "teacher") else value for key, value in models.items()}
    settings = {name: values.get(name, models.get(name, getattr(data_args, name, None))) for name in RESUMED_SETTINGS}
    settings["num_train_epochs" if training_args.max_steps > 0 else "max_steps"] = None
    settings["world_size"] = training_args.world_size
    identity = dataset_identity(data_args.dataset)
    settings.update(dataset=identity["type"], dataset_files=identity["revision"])
    return json.loads(json.dumps(settings))
