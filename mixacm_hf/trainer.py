"""`MixACMTrainer`: one `Trainer` for MixACM, its ablations and baselines, with a frozen teacher.

Each `--method` is an entry of the registry in `mixacm_hf.methods` (docs/design.md, section 7.1): the trainer asks it
for the batch's weighted loss terms and logs each term. The arguments are `MixACMTrainingArguments`
(`mixacm_hf.training_args`, re-exported here).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import datasets
import torch
from accelerate.data_loader import prepare_data_loader
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader
from transformers import PreTrainedModel, Trainer, TrainerCallback
from transformers.trainer_callback import ExportableState

from .data import (
    EndlessStream,
    check_dataset_classes,
    epoch_setter,
    example_size,
    model_class_names,
    model_num_labels,
    seeded_generator,
    split_stream,
)
from .files import atomic_write_text
from .losses import activated_channel_map, build_affine_maps, hidden_states_of, match_layers, probe_outputs
from .methods import TrainingBatch, get_method, recorded_params
from .training_args import MixACMTrainingArguments

__all__ = ["MixACMTrainer", "MixACMTrainingArguments", "TrainingClock", "compile_frozen"]

logger = logging.getLogger(__name__)

AFFINE_MAPS_NAME = "acm_affine_maps.safetensors"  # the affine ACM maps in a checkpoint
OBJECTIVE_NAME = "mixacm_objective.json"  # a checkpoint's method, loss weights and method params


def compile_frozen(model: nn.Module) -> Callable[..., Any]:
    """`torch.compile` for a frozen model run under `no_grad`: inductor's freezing treats the weights as constants
    (folds BatchNorm into the preceding convs, prepacks conv weights). One static graph per input shape."""
    from torch._inductor import config as inductor_config

    compiled = torch.compile(model, dynamic=False)

    def forward(**inputs: Any) -> Any:
        with inductor_config.patch(freezing=True):  # read when a graph is (re)compiled, i.e. inside the call
            return compiled(**inputs)

    return forward


class MixACMTrainer(Trainer):
    """`Trainer` whose `compute_loss` implements every `method`, with a frozen teacher that is never wrapped or saved.

    The method's params come from the arguments (`MixACMTrainingArguments.method_params`), its objective from the
    method (`Method.objective`: from the params and the teacher); for each training batch the method's `terms` get
    data (`TrainingBatch`: images, labels, the batch's seeded generator, the teacher's signals), not the trainer.
    Logs each active loss term (`loss_mix` or `loss_ce`, `loss_kld`, `loss_acm`, `loss_adv`...) beside `loss`.

    Exact resume: the randomness of each training batch (mixup lambda and permutation, adversarial random starts) is
    drawn from `seeded_generator(seed, global step, micro-batch, process rank)`, and the augmentations of a map-style
    dataset from `load_image_dataset` from (seed, epoch, rows); the affine ACM maps are saved in checkpoints
    (`AFFINE_MAPS_NAME`) and restored with the optimizer. A run resumed from any checkpoint then trains on the same
    numbers as one never stopped (streams, whose positions are not saved, are not covered).
    """

    def __init__(
        self,
        model: PreTrainedModel | nn.Module | None = None,
        teacher_model: PreTrainedModel | nn.Module | str | None = None,
        args: MixACMTrainingArguments | None = None,
        **kwargs: Any,
    ):
        if args is None or not isinstance(args, MixACMTrainingArguments):
            raise TypeError("MixACMTrainer needs `args` of type MixACMTrainingArguments.")
        if args.needs_teacher and teacher_model is None:
            raise ValueError(f"method={args.method!r} learns from a teacher: pass `teacher_model` (a path or model).")
        super().__init__(model=model, args=args, **kwargs)
        check_dataset_classes(self.train_dataset, self.model, "train_dataset")
        check_dataset_classes(self.eval_dataset, self.model, "eval_dataset")
        self.loss_is_scaled_for_ga = False  # our loss is a per-batch mean
        if args.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.teacher_model = self._prepare_teacher(teacher_model) if args.needs_teacher else None
        self._teacher_forward = (
            compile_frozen(self.teacher_model) if args.compile_teacher and self.teacher_model else self.teacher_model
        )
        self.method, self.params = get_method(args.method), args.method_params()
        self.run_objective = self.method.objective(self.params, self._teacher_shares_labels)
        self.affine_maps = self._check_acm_layers() if self.method.uses_acm else None
        self._loss_terms: dict[str, list[torch.Tensor]] = defaultdict(list)
        self._batch_key = (-1, -1)  # (global step, micro-batch) of the last training batch
        set_epoch = epoch_setter(self.train_dataset)
        if set_epoch is not None:
            self.add_callback(_DatasetEpoch(set_epoch))
        if self.affine_maps is not None:
            self.add_callback(_ZeroGradients(self.affine_maps))

    def objective(self) -> dict[str, Any]:
        """What this trainer optimises, as it runs (not the arguments' defaults): {"method", "loss_terms": {name:
        weight}, "mixup_alpha" (None: no mixup), "kld_dropped" (True: a teacher with other classes)}."""
        run = self.run_objective
        return {
            "method": self.method.name,
            "loss_terms": dict(run.loss_terms),
            "mixup_alpha": run.mixup_alpha,
            "kld_dropped": run.kld_dropped,
        }

    def hyperparameters(self) -> dict[str, Any]:
        """The method's params as this run records them (`methods.recorded_params`: None where they have no effect,
        e.g. mixup_alpha with mixup off)."""
        return recorded_params(self.params, self.run_objective)

    def batch_generator(self) -> torch.Generator:
        """The generator of this training batch: seeded from (seed, global step, micro-batch, process rank)."""
        step, micro = self._batch_key
        micro = micro + 1 if step == self.state.global_step else 0
        self._batch_key = (self.state.global_step, micro)
        return seeded_generator(self.args.seed, self.state.global_step, micro, self.args.process_index)

    # -- checkpoints: the affine ACM maps train with the student and resume with it --------------------------------
    def _objective_record(self) -> dict[str, Any]:
        """What this run optimises, as a checkpoint records it (JSON values)."""
        record = {"method": self.method.name, "loss_terms": self.run_objective.loss_terms,
                  "hyperparameters": asdict(self.params)}  # fmt: skip
        return json.loads(json.dumps(record))

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        super()._save_optimizer_and_scheduler(output_dir)
        if self.args.should_save:
            atomic_write_text(Path(output_dir) / OBJECTIVE_NAME, json.dumps(self._objective_record(), indent=2))
        if self.affine_maps is not None and self.args.should_save:
            state = {key: value.detach().contiguous() for key, value in self.affine_maps.state_dict().items()}
            save_file(state, f"{output_dir}/{AFFINE_MAPS_NAME}")

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        recorded = Path(checkpoint or "") / OBJECTIVE_NAME  # checkpoints of older versions have none
        if checkpoint is not None and recorded.is_file():
            before, now = json.loads(recorded.read_text()), self._objective_record()
            changed = [key for key in now if before.get(key) != now[key]]
            if changed:
                raise ValueError(
                    f"--resume_from_checkpoint {checkpoint}: that run optimised "
                    + "; ".join(f"{key} {before.get(key)}" for key in changed)
                    + ", this one "
                    + "; ".join(f"{key} {now[key]}" for key in changed)
                    + ". A resumed run must continue the same objective (its card would misname what trained it): "
                    "resume with the checkpoint's settings, or train into a new --output_dir."
                )
        if checkpoint is not None and self.affine_maps is not None:
            path = f"{checkpoint}/{AFFINE_MAPS_NAME}"
            try:
                state = load_file(path, device=str(self.args.device))
            except FileNotFoundError as error:
                raise FileNotFoundError(
                    f"{path} is missing: the checkpoint has no affine ACM maps (written by an older version, or not a "
                    "run with --acm_channel_align affine). Resume from a checkpoint of this run's settings."
                ) from error
            self.affine_maps.load_state_dict(state)
        super()._load_optimizer_and_scheduler(checkpoint)

    # -- teacher ---------------------------------------------------------------------------------------------------
    def _prepare_teacher(self, teacher: PreTrainedModel | nn.Module | str) -> nn.Module:
        if isinstance(teacher, str):
            from .teachers import load_teacher

            teacher = load_teacher(teacher)
        teacher = teacher.to(self.args.device)
        if self.args.channels_last:
            teacher = teacher.to(memory_format=torch.channels_last)
        teacher.eval()
        teacher.requires_grad_(False)
        return teacher

    def _teacher_shares_labels(self) -> bool:
        teacher_labels = model_num_labels(self.teacher_model)
        student_labels = model_num_labels(self.model)
        teacher_names, student_names = model_class_names(self.teacher_model, True), model_class_names(self.model, True)
        if teacher_labels is not None and student_labels is not None and teacher_labels != student_labels:
            message = (
                f"The teacher predicts {teacher_labels} classes and the student {student_labels}: soft labels (KLD) "
                "need the same classes."
            )
        elif teacher_names and student_names and teacher_names != student_names:
            index = next(i for i, pair in enumerate(zip(teacher_names, student_names)) if pair[0] != pair[1])
            message = (
                f"The teacher's class {index} is {teacher_names[index]!r} and the student's {student_names[index]!r} "
                f"(teacher: {teacher_names}; student: {student_names}): soft labels (KLD) need the same classes in "
                "the same order."
            )
        else:
            return True
        if not self.method.uses_acm:
            raise ValueError(
                f"{message} --method {self.args.method} learns from the soft labels, so it cannot drop them: use a "
                "teacher trained on the student's classes, or, for cross-dataset transfer, a method with ACM (e.g. "
                "mixacm) and --cross_dataset true."
            )
        if self.args.cross_dataset is False:
            raise ValueError(
                f"{message} Use a teacher trained on the student's classes, or, for cross-dataset transfer, pass "
                "--cross_dataset true, which drops the KLD term."
            )
        logger.warning("%s Cross-dataset transfer: dropping the KLD term (mixup CE and ACM remain).", message)
        return False

    def _probe_channels(self) -> tuple[list[int], list[int]]:
        """Channel counts of the teacher's and student's hidden states, from one zero image of the training images'
        size (the student config's `image_size` for a stream; checks the contract)."""
        student = self.accelerator.unwrap_model(self.model)
        config_size = getattr(getattr(student, "config", None), "image_size", 32)
        height, width = example_size(self.train_dataset) or (config_size, config_size)
        channels = getattr(getattr(student, "config", None), "num_channels", 3)
        probe = torch.zeros(1, channels, height, width, device=self.args.device)
        _, teacher_states = probe_outputs(self.teacher_model, probe, "teacher")
        _, student_states = probe_outputs(student, probe, "student")
        return [h.shape[1] for h in teacher_states], [h.shape[1] for h in student_states]

    def _check_acm_layers(self) -> nn.ModuleList | None:
        """Validate the hidden states and the layer pairing up front; build the affine maps if asked for."""
        teacher_channels, student_channels = self._probe_channels()
        params = self.params
        pairs = match_layers(
            len(teacher_channels), len(student_channels), params.acm_teacher_layers, params.acm_student_layers,
            params.acm_layer_mapping,
        )  # fmt: skip
        if params.acm_channel_align != "affine":
            return None
        maps = build_affine_maps([teacher_channels[t] for t, _ in pairs], [student_channels[s] for _, s in pairs])
        return maps.to(self.args.device)

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        optimizer = super().create_optimizer(model)
        if self.affine_maps is not None:
            optimizer.add_param_group({"params": list(self.affine_maps.parameters()), "weight_decay": 0.0})
        return optimizer

    def get_train_dataloader(self) -> DataLoader:
        """A `datasets` stream is read by every process from its own part (`split_stream`), pass after pass
        (`EndlessStream`) until `max_steps`, through a loader of the process's own.

        For iterable datasets accelerate would by default read each batch on process 0 only and scatter it, so the other
        processes' parts of a split stream would never be seen (with `dispatch_batches=False` it would split the stream
        again). Map-style datasets take the usual `Trainer` path (a sampler sharded across processes).
        """
        if not isinstance(self.train_dataset, datasets.IterableDataset):
            return super().get_train_dataloader()
        args = self.args
        loader = DataLoader(
            EndlessStream(split_stream(self.train_dataset, args.process_index, args.world_size)),
            batch_size=self._train_batch_size,
            collate_fn=self.data_collator,
            drop_last=args.dataloader_drop_last,
            num_workers=args.dataloader_num_workers,
            pin_memory=args.dataloader_pin_memory,
            persistent_workers=args.dataloader_persistent_workers,
            prefetch_factor=args.dataloader_prefetch_factor,
        )
        return prepare_data_loader(
            loader, args.device, num_processes=1, process_index=0, put_on_device=True, dispatch_batches=False
        )

    def training_step(
        self, model: nn.Module, inputs: dict[str, torch.Tensor], num_items_in_batch: torch.Tensor | int | None = None
    ) -> torch.Tensor:
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.affine_maps is not None and self.accelerator.num_processes > 1:
            # The affine maps live outside the DDP-wrapped student: average their gradients by hand.
            for param in self.affine_maps.parameters():
                if param.grad is not None:
                    torch.distributed.all_reduce(param.grad)
                    param.grad /= self.accelerator.num_processes
        return loss

    # -- loss --------------------------------------------------------------------------------------------------------
    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        pixel_values, labels = inputs["pixel_values"], inputs["labels"]
        if self.args.channels_last:
            pixel_values = pixel_values.contiguous(memory_format=torch.channels_last)
        if not model.training:  # evaluation: plain cross-entropy on clean images
            outputs = model(pixel_values=pixel_values, labels=labels)
            return (outputs.loss, outputs) if return_outputs else outputs.loss
        batch = TrainingBatch(
            pixel_values, labels, self.batch_generator(), self.run_objective,
            self.teacher_signals if self.teacher_model is not None else None, self.accelerator.unwrap_model(model),
            self.affine_maps,
        )  # fmt: skip
        weighted_terms, outputs = self.method.terms(model, batch, self.params)
        ran = {name: weight for name, (weight, _) in weighted_terms.items()}
        if ran != self.run_objective.loss_terms:
            raise RuntimeError(
                f"Method {self.method.name!r} computed the terms {ran} but its objective declares "
                f"{self.run_objective.loss_terms}: fix its `objective` or `terms` in mixacm_hf.methods."
            )
        loss = sum(weight * term for weight, term in weighted_terms.values())
        if not torch.isfinite(loss):
            bad = [name for name, (_, term) in weighted_terms.items() if not torch.isfinite(term)]
            raise FloatingPointError(
                f"Non-finite training loss at step {self.state.global_step}: term(s) {bad or list(weighted_terms)}. "
                "Lower the learning rate or the loss weights (alpha_acm), or check the inputs are finite in [0, 1]."
            )
        for name, (_, term) in weighted_terms.items():
            self._loss_terms[name].append(term.detach())
        return (loss, outputs) if return_outputs else loss

    def teacher_signals(
        self, pixel_values: torch.Tensor, uses_acm: bool
    ) -> tuple[torch.Tensor | None, list[torch.Tensor] | None]:
        """The teacher's logits and (for ACM) raw activated channel maps (B, C) per hidden state (`TeacherSignals`).

        Run before the student and reduced to channel maps at once, so its feature maps are freed before the
        student allocates its own (measurably faster on CPU than keeping both alive).
        """
        if self.teacher_model is None:
            return None, None
        with torch.no_grad(), self.accelerator.autocast():  # the student's mixed precision (loss terms stay fp32)
            outputs = self._teacher_forward(pixel_values=pixel_values, output_hidden_states=uses_acm)
            maps = None
            if uses_acm:
                maps = [activated_channel_map(h, normalize=False) for h in hidden_states_of(outputs, "teacher")]
        return outputs.logits, maps

    # -- logging -----------------------------------------------------------------------------------------------------
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._loss_terms:
            names = sorted(self._loss_terms)
            means = torch.stack([torch.stack(self._loss_terms[name]).float().mean() for name in names])
            means = self.accelerator.reduce(means, reduction="mean")
            logs.update({name: round(float(value), 6) for name, value in zip(names, means.tolist())})
            self._loss_terms.clear()
        super().log(logs, start_time)


class _DatasetEpoch(TrainerCallback):
    """Tells the training data the epoch that begins (its augmentations are seeded with it; `epoch_setter`)."""

    def __init__(self, set_epoch: Callable[[int], None]):
        self.set_epoch = set_epoch

    def on_epoch_begin(self, args, state, control, **kwargs) -> None:
        self.set_epoch(math.floor(state.epoch + 1e-6))  # a resumed run's state.epoch: e.g. 1.5 in epoch 1


class _ZeroGradients(TrainerCallback):
    """Clears the gradients of modules outside the model after each optimizer step: the `Trainer` zeroes only the
    model's (`model.zero_grad()`), so the affine ACM maps' gradients would otherwise add up over all steps."""

    def __init__(self, module: nn.Module):
        self.module = module

    def on_step_end(self, args, state, control, **kwargs) -> None:
        self.module.zero_grad(set_to_none=True)


class TrainingClock(TrainerCallback, ExportableState):
    """Training wall time summed over resumed runs (saved in checkpoints; restored by `resume_from_checkpoint`)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started: float | None = None

    @property
    def total_seconds(self) -> float:
        running = time.perf_counter() - self._started if self._started is not None else 0.0
        return self.seconds + running

    def on_train_begin(self, args, state, control, **kwargs) -> None:
        self._started = time.perf_counter()

    def on_train_end(self, args, state, control, **kwargs) -> None:
        self.seconds, self._started = self.total_seconds, None

    def state(self) -> dict[str, Any]:
        return {"args": {}, "attributes": {"seconds": self.total_seconds}}
