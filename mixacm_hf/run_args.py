"""The training script's arguments (`ModelArguments`, `DataArguments`, `EvaluationArguments`, with
`MixACMTrainingArguments`) and everything about them that is checked before any data or model is loaded:
`check_arguments`, the flags a method would ignore (`unused_flags`), the checkpoint to resume
(`resume_checkpoint`), the settings a resumed run must keep (`run_settings`, recorded in checkpoints by
`RunSettings`) and the finished-model guard (`finished_model`); the end-of-run evaluation's budgets (`eps_sweep`)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import HfArgumentParser, TrainerCallback
from transformers.trainer_callback import ExportableState
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .data.identity import dataset_identity
from .methods import flag_owners, get_method
from .robustness import parse_eps
from .robustness.attacks import check_eps, largest_eps
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
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N evaluation images."})
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
        default="clean,pgd-20", metadata={"help": "Comma-separated attacks (clean, fgsm, pgd-<steps>...); '' for none."}
    )
    eval_autoattack: bool = field(default=False, metadata={"help": "Also run AutoAttack (standard version)."})
    eval_n: int = field(default=1000, metadata={"help": "Attack the first N evaluation images."})
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
    return HfArgumentParser(
        (ModelArguments, DataArguments, training_arguments_class(), EvaluationArguments),
        allow_abbrev=False,
        usage="%(prog)s [--config FILE] [--flag value ...] (the flags: below)",
        description="Train a robust student with MixACM or a baseline (--method). --config FILE reads these "
        "arguments from a YAML/JSON file (e.g. training/configs/cifar10_cpu_wrn16-2.yaml); flags override it.",
    )


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


def check_arguments(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: MixACMTrainingArguments,
    eval_args: EvaluationArguments,
) -> None:
    """Everything that can be checked before any data or model is loaded; errors name the argument.

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
    if data_args.streaming and training_args.max_steps <= 0:
        raise ValueError("Streaming datasets have no length: pass --max_steps.")
    for flag in ("max_train_samples", "max_eval_samples"):
        value = getattr(data_args, flag)
        if value is not None and value < 1:
            raise ValueError(f"--{flag} {value}: give a positive number of images (or leave it out: all).")
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
    checks.append(("eval_eps", lambda: check_eps(eval_args.eval_eps, eval_args.eval_norm, pixels=pixels)))
    checks.append(("eval_eps_sweep", lambda: eps_sweep(eval_args, data_args.image_size)))
    for flag, check in checks:
        try:
            check()
        except ValueError as error:
            raise ValueError(f"--{flag}: {error}") from error
    checkpoint = resume_checkpoint(training_args)  # `last` without a checkpoint would start afresh
    if checkpoint is not None:
        check_resumed_settings(checkpoint, run_settings(data_args, training_args))
    if finished_model(training_args.output_dir) and not training_args.overwrite_output_dir:
        if checkpoint is None:
            raise ValueError(
                f"--output_dir {training_args.output_dir} already holds a finished model: pass another --output_dir, "
                "--resume_from_checkpoint to continue its run, or --overwrite_output_dir true to replace it."
            )
        if _nothing_left(Path(checkpoint), training_args):
            raise ValueError(
                f"--output_dir {training_args.output_dir} holds a finished model and its checkpoint {checkpoint} is "
                "the end of the run: there is nothing to resume (resuming would train past it, and a longer schedule "
                "is another run). Pass another --output_dir, or --overwrite_output_dir true."
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


# What a resumed run keeps from its checkpoint's run besides its objective (which the trainer checks): the learning
# rate and schedule, batches, processes, seed and training data. Name in the record -> how a difference is named.
RESUMED_SETTINGS = {
    **{name: f"--{name}" for name in (
        "learning_rate", "lr_scheduler_type", "lr_scheduler_kwargs", "warmup_steps", "num_train_epochs", "max_steps",
        "weight_decay", "optim", "per_device_train_batch_size", "gradient_accumulation_steps", "seed",
    )},
    "world_size": "the number of processes (world size)",
    "dataset": "--dataset", "dataset_files": "--dataset's files (fingerprint of their names and sizes)",
    **{name: f"--{name}" for name in ("dataset_config", "train_split", "max_train_samples", "train_fraction")},
}  # fmt: skip


def run_settings(data_args: DataArguments, training_args: MixACMTrainingArguments) -> dict[str, Any]:
    """This run's `RESUMED_SETTINGS` as JSON values; the one of num_train_epochs / max_steps that does not count is
    None (max_steps > 0 overrides epochs); the dataset as its identity (`dataset_identity`: a local copy by its
    name and files, wherever it is)."""
    values = training_args.to_dict()  # enums as their values (lr_scheduler_type: "cosine")
    settings = {name: values.get(name, getattr(data_args, name, None)) for name in RESUMED_SETTINGS}
    settings["num_train_epochs" if training_args.max_steps > 0 else "max_steps"] = None
    settings["world_size"] = training_args.world_size
    identity = dataset_identity(data_args.dataset)
    settings.update(dataset=identity["type"], dataset_files=identity["revision"])
    return json.loads(json.dumps(settings))


class RunSettings(TrainerCallback, ExportableState):
    """Records the run's settings (`run_settings`) in each checkpoint's trainer state, where `check_resumed_settings`
    reads them."""

    def __init__(self, settings: dict[str, Any]):
        self.settings = settings

    def state(self) -> dict[str, Any]:
        return {"args": {"settings": self.settings}, "attributes": {}}

    def on_train_begin(self, args, state, control, **kwargs) -> None:
        # the state of a checkpoint without a record has no entry, which `Trainer` needs to save the record
        state.stateful_callbacks.setdefault(type(self).__name__, self.state())


def check_resumed_settings(checkpoint: str | Path, settings: dict[str, Any]) -> None:
    """Refuse to resume `checkpoint` with other `settings` than its run's (a resumed run would be neither run);
    a checkpoint without a record (older versions) resumes with a warning. An unreadable one is left to `Trainer`.

    Raises:
        ValueError: naming each difference (the checkpoint's value, this run's) and what to do instead.
    """
    try:
        state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return
    recorded = (state.get("stateful_callbacks") or {}).get(RunSettings.__name__)
    if not isinstance(recorded, dict):
        logger.warning(
            "%s records no run settings (written by an older version): resuming without checking that its learning "
            "rate, schedule, batch size, processes, seed and training data are this run's.", checkpoint,
        )  # fmt: skip
        return
    before = recorded.get("args", {}).get("settings", {})
    changed = [name for name in RESUMED_SETTINGS if name in before and before[name] != settings[name]]
    if changed:
        raise ValueError(
            f"--resume_from_checkpoint {checkpoint} was trained with other settings than this run's: "
            + "; ".join(
                f"{RESUMED_SETTINGS[name]} {_shown(before[name])} there, {_shown(settings[name])} now"
                for name in changed
            )
            + ". A resumed run must continue the same run: rerun with the checkpoint's values, or start a new run "
            "in another --output_dir."
        )


def _shown(value: Any) -> Any:
    return "unset" if value is None else value


def resume_checkpoint(args: MixACMTrainingArguments) -> str | None:
    """`--resume_from_checkpoint last` picks the newest *complete* checkpoint in output_dir (None when there is none);
    half-written ones (a run killed while saving: no readable trainer_state.json, written last) are skipped with a
    warning. Any other value is returned as given."""
    if args.resume_from_checkpoint != "last":
        return args.resume_from_checkpoint
    folder = Path(args.output_dir)
    checkpoints = [p for p in folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*") if p.is_dir()] if folder.is_dir() else []
    checkpoints = [p for p in checkpoints if p.name.split("-")[-1].isdigit()]
    for checkpoint in sorted(checkpoints, key=lambda p: int(p.name.split("-")[-1]), reverse=True):
        if _complete_checkpoint(checkpoint):
            return str(checkpoint)
        logger.warning("Skipping %s: it is incomplete (killed while being written?).", checkpoint)
    return None


def _complete_checkpoint(checkpoint: Path) -> bool:
    try:
        json.loads((checkpoint / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return True


def _nothing_left(checkpoint: Path, args: MixACMTrainingArguments) -> bool:
    """Whether a checkpoint already reached the end this run asks for (`max_steps`, else `num_train_epochs`)."""
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    if args.max_steps > 0:
        return state["global_step"] >= args.max_steps
    return state.get("epoch", 0) >= args.num_train_epochs - 1e-9


def finished_model(output_dir: str | Path) -> bool:
    """Whether `output_dir` holds a finished model (what `run_mixacm` writes at the end)."""
    folder = Path(output_dir)
    return (folder / "train_summary.json").is_file() or (folder / "config.json").is_file()
