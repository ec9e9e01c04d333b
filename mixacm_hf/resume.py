"""What a resumed run must keep: the settings recorded in its checkpoints (`RESUMED_SETTINGS`, by `RunSettings`) and
compared on resume (`check_resumed_settings`), the code that trained each part of it (`CodeHistory`), the checkpoint to
resume (`resume_checkpoint`) and the finished-model guard (`finished_model`, `nothing_left`)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .provenance import code_commit

logger = logging.getLogger(__name__)

# What a resumed run keeps from its checkpoint's run besides its objective (which the trainer checks): the learning
# rate and schedule, the optimiser and its settings, precision, gradient clipping, batches, processes, seed, the
# models (the teacher by its files' contents) and training data. Name in the record -> how a difference is named.
RESUMED_SETTINGS = {
    **{name: f"--{name}" for name in (
        "method", "learning_rate", "lr_scheduler_type", "lr_scheduler_kwargs", "warmup_steps", "num_train_epochs",
        "max_steps", "weight_decay", "optim", "optim_args", "adam_beta1", "adam_beta2", "adam_epsilon", "max_grad_norm",
        "bf16", "fp16", "per_device_train_batch_size", "gradient_accumulation_steps", "seed", "student_from_config",
    )},
    **{name: f"--{name} (its weight and config files' sha256, or its name)" for name in ("student", "teacher")},
    **{name: f"--{name}" for name in (
        "teacher_architecture", "teacher_image_mean", "teacher_image_std", "acm_teacher_modules",
    )},
    "world_size": "the number of processes (world size)",
    "dataset": "--dataset", "dataset_files": "--dataset's files (fingerprint of their names and sizes)",
    **{name: f"--{name}" for name in (
        "dataset_config", "train_split", "max_train_samples", "train_fraction", "validation_split",
        "validation_fraction",
    )},
}  # fmt: skip


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


UNRECORDED = {"from_step": 0, "commit": None, "dirty": None}  # the part before a checkpoint that records its code


class CodeHistory(TrainerCallback, ExportableState):
    """The code that trained each part of a run resumed across checkouts: `parts`, one {"from_step", "commit",
    "dirty"} (`provenance.code_commit`) per run whose commit or dirty flag differs from the part before (two dirty
    parts of one commit count as one; saved in checkpoints, restored on resume). A checkpoint written before this
    record (or whose record is not restored) starts its history with the steps before it as unrecorded (`UNRECORDED`,
    from step 0)."""

    def __init__(self) -> None:
        self.parts: list[dict[str, Any]] = []

    def on_train_begin(self, args, state, control, **kwargs) -> None:
        code = dict(code_commit())
        if not self.parts and state.global_step > 0:  # resumed from a checkpoint without the record
            self.parts.append(dict(UNRECORDED))
        if not self.parts or {key: self.parts[-1].get(key) for key in code} != code:
            self.parts.append({"from_step": state.global_step, **code})
        # a checkpoint without a record has no entry, which `Trainer` needs to save the record
        state.stateful_callbacks.setdefault(type(self).__name__, self.state())

    def state(self) -> dict[str, Any]:
        return {"args": {}, "attributes": {"parts": self.parts}}


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


def resume_checkpoint(args: Any) -> str | None:
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


def nothing_left(checkpoint: Path, args: Any) -> bool:
    """Whether a checkpoint already reached the end this run asks for (`max_steps`, else `num_train_epochs`)."""
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    if args.max_steps > 0:
        return state["global_step"] >= args.max_steps
    return state.get("epoch", 0) >= args.num_train_epochs - 1e-9


def finished_model(output_dir: str | Path) -> bool:
    """Whether `output_dir` holds a finished model (what `run_mixacm` writes at the end)."""
    folder = Path(output_dir)
    return (folder / "train_summary.json").is_file() or (folder / "config.json").is_file()
