"""The training job behind `training/run_mixacm.py`: `run_mixacm` (check, load, train, save, evaluate, card); its
arguments are in `run_args` (re-exported here)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, TrainerCallback, set_seed

from .data import class_names, collate_image_batch, decode_all, label_order, load_image_dataset, model_class_names
from .files import atomic_write_text, held_alone
from .hub import push_robust_model, write_model_card
from .provenance import code_commit, package_versions
from .resume import CodeHistory, RunSettings, resume_checkpoint
from .robustness import RobustnessReport, evaluate_robustness
from .robustness.batches import RankFailure, gather_from_ranks
from .robustness.metric import compute_accuracy_metrics
from .robustness.registry import parse_attack
from .robustness.transfer import check_teacher_as_source
from .run_args import (
    DataArguments,
    EvaluationArguments,
    ModelArguments,
    check_arguments,
    eps_sweep,
    fold_deprecated,
    run_settings,
)
from .students import apply_student_input, load_student, new_student, save_student_processor, student_input
from .teachers import is_zoo_spec, teacher_provenance
from .trainer import MixACMTrainer, MixACMTrainingArguments, TrainingClock

logger = logging.getLogger(__name__)
__all__ = [
    "EvaluationFailed", "evaluate_student", "format_summary", "kept_weights", "load_teacher_model",
    "recorded_hyperparameters", "retry_command", "run_mixacm", "teacher_name", "validation_record",
]  # fmt: skip


def load_teacher_model(model_args: ModelArguments) -> torch.nn.Module:
    from .teachers import load_teacher

    return load_teacher(
        model_args.teacher,
        architecture=model_args.teacher_architecture,
        image_mean=model_args.teacher_image_mean,
        image_std=model_args.teacher_image_std,
        trust_remote_code=model_args.trust_remote_code,
        stage_modules=model_args.acm_teacher_modules,
        robustbench_model_dir=model_args.robustbench_model_dir,
    )


class EvaluationFailed(RuntimeError):
    """The end-of-run evaluation failed; the trained model is saved, and the message says how to evaluate it."""


def evaluate_student(
    model: PreTrainedModel | str,
    dataset: Any,
    eval_args: EvaluationArguments,
    data_args: DataArguments,
    training_args: MixACMTrainingArguments,
    robustbench_model_dir: str | None = None,
) -> list[RobustnessReport]:
    """The end-of-run evaluation on the first `eval_n` evaluation images: the attacks but AutoAttack's with the eps
    sweep, then, when AutoAttack is among them, all of them at `eval_eps` only (a sweep of AutoAttack costs too much).
    `robustbench_model_dir`: where a transfer attack's RobustBench source (the zoo teacher) is read from.

    `model` is best the saved folder: it is then read back through the evaluator's input contract like any other
    classifier (its saved image processor says how pixels are fed), so the numbers are those of what users load."""
    attacks = [name.strip() for name in eval_args.eval_attacks.split(",") if name.strip()]
    sweep = eps_sweep(eval_args, data_args.image_size)
    common = {
        "eps": eval_args.eval_eps, "norm": eval_args.eval_norm, "n_examples": min(eval_args.eval_n, len(dataset)),
        "batch_size": eval_args.eval_batch_size, "seed": training_args.seed, "device": training_args.device,
        "split": data_args.eval_split, "dataset_name": data_args.dataset, "progress": not training_args.disable_tqdm,
        "robustbench_model_dir": robustbench_model_dir,
    }  # fmt: skip
    swept = [name for name in attacks if parse_attack(name).attack.role != "ensemble"]
    reports = [evaluate_robustness(model, dataset, swept, eps_sweep=sweep, **common)] if swept else []
    if len(swept) < len(attacks):
        reports.append(evaluate_robustness(model, dataset, attacks, **common))
    return reports


def teacher_name(spec: str, teacher: torch.nn.Module | None) -> str:
    """The teacher as a run records it: `spec` as given, a RobustBench entry as RobustBench spells it."""
    provenance = getattr(teacher, "provenance", None) or {}
    return provenance.get("spec", spec) if is_zoo_spec(spec) else spec


def retry_command(
    output_dir: str,
    data_args: DataArguments,
    eval_args: EvaluationArguments,
    seed: int,
    n_examples: int,
    robustbench_model_dir: str | None = None,
) -> str:
    """The `training/evaluate_robustness.py` command that redoes a run's end-of-run evaluation (its attacks, its first
    `n_examples` images, budget, sweep, batch size and seed; `robustbench_model_dir` for a zoo teacher) and writes
    the card."""
    attacks = ",".join(name.strip() for name in eval_args.eval_attacks.split(",") if name.strip()) or "clean"
    sweep = eps_sweep(eval_args, data_args.image_size)
    command = [
        "python", "training/evaluate_robustness.py", "--model", output_dir, "--dataset", data_args.dataset,
        "--split", data_args.eval_split, "--attacks", attacks, "--eps", f"{eval_args.eval_eps:.10g}",
        "--norm", eval_args.eval_norm, "--n_examples", str(n_examples), "--batch_size",
        str(eval_args.eval_batch_size), "--seed", str(seed), "--image_size", str(data_args.image_size),
        *(["--eps_sweep", ",".join(f"{eps:.10g}" for eps in sweep)] if sweep else []),
        *(["--robustbench_model_dir", robustbench_model_dir] if robustbench_model_dir else []),
        "--output", str(Path(output_dir) / "report.json"), "--update_card",
    ]  # fmt: skip
    return shlex.join(command)


def run_mixacm(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: MixACMTrainingArguments,
    eval_args: EvaluationArguments | None = None,
    callbacks: Sequence[TrainerCallback] = (),
) -> dict[str, Any]:
    """Train a student with `training_args.method`, evaluate its clean and robust accuracy, save it with its model
    card, push it with `--push_to_hub` (one commit; `HubPushError` when that fails) and return a summary. The run
    holds its --output_dir alone (`files.held_alone`: a second run into it is refused before any work)."""
    alone = held_alone(training_args.output_dir, "--output_dir") if training_args.process_index == 0 else None
    with alone or contextlib.nullcontext():
        return train_and_report(model_args, data_args, training_args, eval_args, callbacks)


def train_and_report(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: MixACMTrainingArguments,
    eval_args: EvaluationArguments | None,
    callbacks: Sequence[TrainerCallback],
) -> dict[str, Any]:
    """`run_mixacm`'s work, once its --output_dir is held."""
    eval_args = eval_args or EvaluationArguments()
    fold_deprecated(data_args, eval_args)
    check_arguments(model_args, data_args, training_args, eval_args, callbacks)
    code = {**code_commit(), "versions": package_versions()}  # the code that trains: read now, not at the end
    set_seed(training_args.seed)
    teacher = load_teacher_model(model_args) if training_args.needs_teacher else None
    if model_args.teacher and teacher is None:
        logger.warning(
            "--method %s learns from no teacher: --teacher %s is not used (pass --teacher '' to silence this).",
            training_args.method, model_args.teacher,
        )  # fmt: skip
    student_args = (data_args.image_size, model_args.dropout, model_args.trust_remote_code)
    # a pretrained student's classes come first: the data's labels are mapped to them by name
    student = None if new_student(model_args) else load_student(model_args.student, 0, None, *student_args)
    # its input convention, read as the evaluator reads the saved folder: an unknown one stops the run here
    convention_args = (model_args.student, data_args.image_size, student is not None, model_args.trust_remote_code)
    convention = None if student is None else student_input(student, *convention_args)
    student_names = model_class_names(student) if student is not None else None
    # a pretrained student's classes (placeholders included: its count checks labels without names, by position)
    student_classes = [student.config.id2label[i] for i in range(student.config.num_labels)] if student else None
    common = {
        "image_column": data_args.image_column, "label_column": data_args.label_column,
        "image_size": data_args.image_size, "name": data_args.dataset_config,
        "skip_bad_images": data_args.skip_bad_images, "label_names": student_names or student_classes,
    }  # fmt: skip
    held_out = {"validation_fraction": data_args.validation_fraction, "seed": training_args.seed}
    train_dataset = load_image_dataset(
        data_args.dataset, data_args.train_split, streaming=data_args.streaming, train=True,
        max_samples=data_args.max_train_samples, fraction=data_args.train_fraction,
        in_memory=data_args.in_memory_images, **held_out, **common,
    )  # fmt: skip
    validation_dataset = None
    if data_args.validation_split is not None or data_args.validation_fraction is not None:
        validation_dataset = load_image_dataset(
            data_args.dataset, data_args.validation_split or data_args.train_split, train=False, validation=True,
            **held_out, **common,
        )  # fmt: skip
        decode_all(validation_dataset)
    eval_dataset = load_image_dataset(
        data_args.dataset, data_args.eval_split, train=False, max_samples=eval_args.eval_n, **common
    )
    decode_all(eval_dataset)  # a bad test image stops the run now, not after training
    names = class_names(eval_dataset, data_args.label_column) or student_classes
    if names is None:
        raise ValueError(
            f"The label column of --dataset {data_args.dataset} is not a datasets.ClassLabel: the number of classes "
            "of a new student cannot be told from its integers. Store the column as a ClassLabel (with the class "
            "names), or pass a pretrained --student, whose classes the labels are then by position."
        )
    if student is None:
        student = load_student(
            model_args.student, len(names), dict(enumerate(names)), *student_args, model_args.student_from_config
        )
        convention = student_input(student, *convention_args)
    elif student_names is None:
        label_order(names, None, f"--dataset {data_args.dataset}", f"--student {model_args.student}")  # a warning
    if student.config.num_labels != len(names):
        raise ValueError(
            f"--student {model_args.student} predicts {student.config.num_labels} classes, the dataset has "
            f"{len(names)}: pass --student_from_config true (new weights, the dataset's classes) or another student."
        )
    apply_student_input(student, convention)  # training and the Trainer's evaluations: the evaluator's input
    attacks = [name for name in eval_args.eval_attacks.split(",") if name.strip()]
    check_teacher_as_source(attacks, teacher, student)  # refused now, not after training
    trainer = MixACMTrainer(
        model=student,
        teacher_model=teacher,
        # The Trainer's own push would commit every checkpoint: the finished folder is pushed once, below.
        args=replace(training_args, push_to_hub=False) if training_args.push_to_hub else training_args,
        train_dataset=train_dataset,
        eval_dataset=validation_dataset if validation_dataset is not None else eval_dataset,
        data_collator=collate_image_batch,
        compute_metrics=compute_accuracy_metrics,
        callbacks=[
            TrainingClock(),
            CodeHistory(),
            RunSettings(run_settings(data_args, training_args, model_args)),
            *callbacks,
        ],  # fmt: skip
    )
    train_result = trainer.train(resume_from_checkpoint=resume_checkpoint(training_args))
    clock = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, TrainingClock))
    train_seconds = clock.seconds
    history = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, CodeHistory))
    images_seen = trainer.state.global_step * trainer.get_total_train_batch_size(training_args)
    trainer.save_model()  # before any evaluation: a failing one must not lose the trained model
    summary = {
        "method": training_args.method,
        "student": model_args.student,
        "teacher": teacher_name(model_args.teacher, teacher) if training_args.needs_teacher else None,
        "teacher_source": teacher_provenance(teacher) if teacher is not None else None,
        "student_input": convention.description,
        "params": sum(p.numel() for p in student.parameters()),
        "epochs": train_result.metrics.get("epoch"),
        "steps": trainer.state.global_step,
        "n_train": None if data_args.streaming else len(train_dataset),
        "train_fraction": data_args.train_fraction or 1.0,
        "validation": validation_record(data_args, training_args.seed, validation_dataset),
        "weights": kept_weights(trainer.state, training_args),
        "train_seconds": round(train_seconds, 2),
        "images_per_second": round(images_seen / train_seconds, 2) if train_seconds else None,
        "backward_passes_per_image": trainer.method.backward_passes(trainer.params),
        "clean_accuracy": None,
        "n_eval": len(eval_dataset),
        "dataset": data_args.dataset,
        "device": str(training_args.device),
        "world_size": training_args.world_size,
        "output_dir": training_args.output_dir,
        "objective": trainer.objective(),
        "hyperparameters": recorded_hyperparameters(training_args, trainer),
        "command": shlex.join(sys.argv),
        "code": {**code, "history": history.parts},  # the code of each resumed part (CodeHistory)
    }
    summary_path = Path(training_args.output_dir, "train_summary.json")
    if trainer.is_world_process_zero():
        atomic_write_text(summary_path, json.dumps(summary, indent=2, default=str))
        save_student_processor(training_args.output_dir, convention)  # pipeline() feeds what training fed
    trainer.accelerator.wait_for_everyone()  # every process evaluates the folder that process 0 has just written
    # a transfer attack from the teacher (`transfer`) reads a zoo teacher from where this run did
    zoo_model_dir = model_args.robustbench_model_dir if is_zoo_spec(summary["teacher"]) else None
    try:
        # the saved folder's accuracy on the whole evaluation split, spread and gathered like the attacks (the
        # Trainer's own evaluation would score each process's share with that process's BatchNorm statistics)
        summary["clean_accuracy"] = evaluate_robustness(
            training_args.output_dir, eval_dataset, ["clean"], batch_size=eval_args.eval_batch_size,
            device=training_args.device, progress=False, dataset_name=data_args.dataset, split=data_args.eval_split,
        ).clean_accuracy  # fmt: skip
        if trainer.is_world_process_zero():
            atomic_write_text(summary_path, json.dumps(summary, indent=2, default=str))
        # spread over the processes as `evaluate_robustness` is under torchrun; every process gets the reports
        reports = evaluate_student(
            training_args.output_dir, eval_dataset, eval_args, data_args, training_args, zoo_model_dir
        )
        gather_from_ranks(None)  # a process that failed before any attack's gathering is heard of here
    except Exception as error:
        if not isinstance(error, RankFailure):  # not yet heard of by the others: tell them (no-op in one process)
            try:
                gather_from_ranks(None, error)
            except Exception as agreed:
                error = agreed
        n_examples = min(eval_args.eval_n, len(eval_dataset))
        retry = retry_command(
            training_args.output_dir, data_args, eval_args, training_args.seed, n_examples, zoo_model_dir
        )
        raise EvaluationFailed(
            f"The trained model is saved in {training_args.output_dir}, but its evaluation failed: {error}. Once its "
            f"cause is fixed, evaluate the saved model as this run would have and write its card with: {retry}"
        ) from error
    if trainer.is_world_process_zero():  # process 0 alone writes the card and pushes, once
        hub_id = training_args.hub_model_id or Path(training_args.output_dir).name
        hub_id = hub_id if training_args.push_to_hub else None
        write_model_card(
            training_args.output_dir, reports, summary, repo_id=hub_id, dataset_id=eval_args.card_dataset_id,
            license=eval_args.card_license,
        )  # fmt: skip
        summary["robustness"] = reports
        if hub_id:
            summary["hub_commit"] = push_robust_model(
                training_args.output_dir, hub_id, bool(training_args.hub_private_repo), training_args.hub_token
            )
    return summary


def validation_record(data_args: DataArguments, seed: int, dataset: Any | None) -> dict[str, Any] | None:
    """The validation data of a run as its summary records it (split, held-out fraction and seed, images), or None."""
    if dataset is None:
        return None
    fraction = data_args.validation_fraction
    split = data_args.validation_split or data_args.train_split
    return {"split": split, "held_out_fraction": fraction, "seed": seed if fraction else None, "n": len(dataset)}


def kept_weights(state: Any, args: MixACMTrainingArguments) -> dict[str, Any]:
    """Which weights a run saved: with `--load_best_model_at_end` the checkpoint of the best
    `--metric_for_best_model` on the validation data, else the last step's."""
    best = state.best_model_checkpoint if args.load_best_model_at_end else None
    if best is None:
        return {"checkpoint": None, "step": state.global_step, "metric": None, "value": None}
    return {
        "checkpoint": Path(best).name, "step": int(Path(best).name.rsplit("-", 1)[-1]),
        "metric": args.metric_for_best_model, "greater_is_better": args.greater_is_better, "value": state.best_metric,
    }  # fmt: skip


# the optimisation settings every run records beside its method's params
OPTIMISATION = (
    "learning_rate", "lr_scheduler_type", "weight_decay", "num_train_epochs", "max_steps",
    "per_device_train_batch_size", "gradient_accumulation_steps", "seed", "bf16",
)  # fmt: skip


def recorded_hyperparameters(args: MixACMTrainingArguments, trainer: MixACMTrainer) -> dict[str, Any]:
    """The run's method, its params as they ran (`MixACMTrainer.hyperparameters`: None where without effect, e.g.
    mixup_alpha with mixup off) and the `OPTIMISATION` settings; the unused one of epochs/max_steps is None."""
    values = args.to_dict()  # enums as their values (lr_scheduler_type: "cosine")
    recorded = {"method": args.method, **trainer.hyperparameters(), **{key: values[key] for key in OPTIMISATION}}
    recorded["num_train_epochs" if values["max_steps"] > 0 else "max_steps"] = None  # max_steps > 0 overrides epochs
    return recorded


def format_summary(summary: dict[str, Any]) -> str:
    """A few human-readable lines."""
    accuracy = summary["clean_accuracy"]
    lines = [
        f"method {summary['method']}: student {summary['student']} ({summary['params'] / 1e6:.2f}M params)"
        + (f", teacher {summary['teacher']}" if summary["teacher"] else ""),
        f"trained {summary['steps']} steps ({summary['epochs']} epochs) in {summary['train_seconds']:.1f} s "
        f"on {summary['device']} x{summary['world_size']}",
        f"clean accuracy {accuracy:.4f} on {summary['n_eval']} images" if accuracy is not None else "no eval accuracy",
        *(report.summary() for report in summary.get("robustness", [])),
        f"saved to {os.path.abspath(summary['output_dir'])} with its model card",
        *([f"pushed to the Hub: {summary['hub_commit']}"] if "hub_commit" in summary else []),
    ]
    return "\n".join(lines)
