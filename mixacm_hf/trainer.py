"""MixACM training: `MixACMTrainingArguments` and `MixACMTrainer`, one trainer for MixACM, its ablations and baselines.

Methods (DESIGN.md): `mixacm` (mixup CE + soft labels + ACM), `mixacm-no-mixup`, `acm-only`, `kd` (soft labels only,
the paper's RKD baseline), `natural` (plain CE, no teacher), `pgd-at` (Madry PGD adversarial training) and `n-fgsm`
(single-step adversarial training with noise, de Jorge et al. 2022).
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import datasets
import torch
import torch.nn.functional as F
from accelerate.data_loader import prepare_data_loader
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader
from transformers import PreTrainedModel, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import ExportableState

from .data import EndlessStream, epoch_setter, seeded_generator, split_stream
from .losses import (
    CHANNEL_ALIGNMENTS,
    LAYER_MAPPINGS,
    acm_loss,
    activated_channel_map,
    build_affine_maps,
    kd_loss,
    match_layers,
    mixup,
    mixup_cross_entropy,
)

logger = logging.getLogger(__name__)

METHODS = ("mixacm", "mixacm-no-mixup", "acm-only", "kd", "natural", "pgd-at", "n-fgsm")
USES_MIXUP = {"mixacm"}
USES_KLD = {"mixacm", "mixacm-no-mixup", "kd"}
USES_ACM = {"mixacm", "mixacm-no-mixup", "acm-only"}
ADVERSARIAL = {"pgd-at", "n-fgsm"}
AFFINE_MAPS_NAME = "acm_affine_maps.safetensors"  # the affine ACM maps in a checkpoint


def check_eps(eps: float, name: str = "eps") -> None:
    """Budgets live in [0, 1] pixel units: 8 almost surely meant 8/255."""
    if not 0 <= eps <= 1:
        raise ValueError(
            f"{name}={eps} is outside [0, 1]: budgets are in pixel units of images scaled to [0, 1]. "
            f"Did you mean {eps:g}/255 = {eps / 255:.5f}?"
        )


@dataclass
class MixACMTrainingArguments(TrainingArguments):
    """`TrainingArguments` plus the MixACM objective (defaults: the paper's CIFAR settings)."""

    method: str = field(
        default="mixacm",
        metadata={"help": f"Training method, one of {METHODS}.", "choices": list(METHODS)},
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
    pgd_step_size: float = field(default=2 / 255, metadata={"help": "PGD-AT step size."})
    pgd_steps: int = field(default=7, metadata={"help": "PGD-AT steps (PGD-7 as in the paper's baseline)."})
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
        if self.method not in METHODS:
            raise ValueError(f"Unknown method {self.method!r}; choose one of {METHODS}.")
        check_eps(self.pgd_eps, "pgd_eps")
        check_eps(self.pgd_step_size, "pgd_step_size")
        checks = (
            ("alpha_acm", self.alpha_acm >= 0, "a weight >= 0 (a negative one trains away from the teacher's maps)"),
            ("alpha_kld", 0 <= self.alpha_kld <= 1, "in [0, 1] (the CE gets 1 - alpha_kld)"),
            ("temperature", self.temperature > 0, "positive"),
            ("mixup_alpha", self.mixup_alpha >= 0, "the Beta parameter, > 0, or 0 to turn mixup off"),
            ("nfgsm_noise", self.nfgsm_noise >= 0, ">= 0"),
            ("pgd_steps", self.pgd_steps >= 1, ">= 1"),
        )
        for name, ok, meaning in checks:
            value = getattr(self, name)
            if not (ok and math.isfinite(value)):
                raise ValueError(f"--{name} {value} is invalid: it must be {meaning}.")

    @property
    def needs_teacher(self) -> bool:
        return self.method in USES_KLD | USES_ACM


def adversarial_examples(
    model: nn.Module,
    pixel_values: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    step_size: float,
    steps: int,
    init_scale: float = 1.0,
    project: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Linf adversarial training examples: uniform start in [-init_scale eps, init_scale eps], `steps` signed-gradient
    steps on the CE loss, projected onto the eps ball when `project` (PGD) and always clipped to [0, 1].

    PGD-AT: init_scale=1, project=True. N-FGSM: init_scale=2, steps=1, step_size=eps, project=False. The start is
    drawn from `generator` (a CPU generator; default: the global CPU RNG).
    """
    delta = torch.empty(pixel_values.shape, dtype=pixel_values.dtype)
    delta = delta.uniform_(-init_scale * eps, init_scale * eps, generator=generator).to(pixel_values.device)
    delta = (pixel_values + delta).clamp(0, 1) - pixel_values
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = F.cross_entropy(model(pixel_values=pixel_values + delta).logits.float(), labels)
        (grad,) = torch.autograd.grad(loss, delta)
        delta = delta.detach() + step_size * grad.sign()
        if project:
            delta = delta.clamp(-eps, eps)
        delta = (pixel_values + delta).clamp(0, 1) - pixel_values
    return (pixel_values + delta).detach()


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

    Logs each active loss term (`loss_mix` or `loss_ce`, `loss_kld`, `loss_acm`, `loss_adv`) beside `loss`.

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
        self.loss_is_scaled_for_ga = False  # our loss is a per-batch mean
        if args.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.teacher_model = self._prepare_teacher(teacher_model) if args.needs_teacher else None
        self._teacher_forward = (
            compile_frozen(self.teacher_model) if args.compile_teacher and self.teacher_model else self.teacher_model
        )
        self.use_kld = args.method in USES_KLD and args.alpha_kld > 0 and self._teacher_shares_labels()
        self.uses_mixup = args.method in USES_MIXUP and args.mixup_alpha > 0
        self.affine_maps = self._check_acm_layers() if args.method in USES_ACM else None
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
        args = self.args
        if args.method in ADVERSARIAL:
            terms = {"loss_adv": 1.0}
        else:
            terms = {"loss_mix" if self.uses_mixup else "loss_ce": 1 - args.alpha_kld if self.use_kld else 1.0}
            if self.use_kld:
                terms["loss_kld"] = args.alpha_kld
            if args.method in USES_ACM:
                terms["loss_acm"] = args.alpha_acm
        return {
            "method": args.method,
            "loss_terms": terms,
            "mixup_alpha": args.mixup_alpha if self.uses_mixup else None,
            "kld_dropped": args.method in USES_KLD and args.alpha_kld > 0 and not self.use_kld,
        }

    def _batch_generator(self) -> torch.Generator:
        """The generator of this training batch: seeded from (seed, global step, micro-batch, process rank)."""
        step, micro = self._batch_key
        micro = micro + 1 if step == self.state.global_step else 0
        self._batch_key = (self.state.global_step, micro)
        return seeded_generator(self.args.seed, self.state.global_step, micro, self.args.process_index)

    # -- checkpoints: the affine ACM maps train with the student and resume with it --------------------------------
    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        super()._save_optimizer_and_scheduler(output_dir)
        if self.affine_maps is not None and self.args.should_save:
            state = {key: value.detach().contiguous() for key, value in self.affine_maps.state_dict().items()}
            save_file(state, f"{output_dir}/{AFFINE_MAPS_NAME}")

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
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
        teacher_labels = _num_labels(self.teacher_model)
        student_labels = _num_labels(self.model)
        if teacher_labels is None or student_labels is None or teacher_labels == student_labels:
            return True
        message = (
            f"The teacher predicts {teacher_labels} classes and the student {student_labels}: soft labels (KLD) "
            "need the same classes."
        )
        if self.args.cross_dataset is False or self.args.method == "kd":
            raise ValueError(
                f"{message} Use a teacher trained on the student's classes, or, for cross-dataset transfer, a method "
                "with ACM (e.g. mixacm) and --cross_dataset true, which drops the KLD term."
            )
        logger.warning("%s Cross-dataset transfer: dropping the KLD term (mixup CE and ACM remain).", message)
        return False

    def _probe_hidden_states(self) -> tuple[list[int], list[int]]:
        """Channel counts of the teacher's and student's hidden states, from one zero image (checks the contract)."""
        student = self.accelerator.unwrap_model(self.model)
        size = getattr(getattr(student, "config", None), "image_size", 32)
        channels = getattr(getattr(student, "config", None), "num_channels", 3)
        probe = torch.zeros(1, channels, size, size, device=self.args.device)
        was_training = student.training
        student.eval()
        with torch.no_grad():
            teacher_states = _hidden_states(
                self.teacher_model(pixel_values=probe, output_hidden_states=True), "teacher"
            )
            student_states = _hidden_states(student(pixel_values=probe, output_hidden_states=True), "student")
        student.train(was_training)
        return [h.shape[1] for h in teacher_states], [h.shape[1] for h in student_states]

    def _check_acm_layers(self) -> nn.ModuleList | None:
        """Validate the hidden states and the layer pairing up front; build the affine maps if asked for."""
        teacher_channels, student_channels = self._probe_hidden_states()
        args = self.args
        pairs = match_layers(
            len(teacher_channels), len(student_channels), args.acm_teacher_layers, args.acm_student_layers,
            args.acm_layer_mapping,
        )  # fmt: skip
        if args.acm_channel_align != "affine":
            return None
        maps = build_affine_maps([teacher_channels[t] for t, _ in pairs], [student_channels[s] for _, s in pairs])
        return maps.to(args.device)

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
        weighted_terms, outputs = self._loss_terms_for(model, pixel_values, labels)
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

    def _loss_terms_for(
        self, model: nn.Module, pixel_values: torch.Tensor, labels: torch.Tensor
    ) -> tuple[dict[str, tuple[float, torch.Tensor]], Any]:
        """{term name: (weight, value)} for the configured method, and the student's outputs."""
        args = self.args
        if args.method in ADVERSARIAL:
            adversarial = self._adversarial_examples(model, pixel_values, labels)
            outputs = model(pixel_values=adversarial)
            return {"loss_adv": (1.0, F.cross_entropy(outputs.logits.float(), labels))}, outputs
        if self.uses_mixup:
            mixed = mixup(pixel_values, labels, args.mixup_alpha, self._batch_generator())
            pixel_values, labels_a, labels_b, lam = mixed
            ce_name = "loss_mix"
        else:
            labels_a, labels_b, lam, ce_name = labels, labels, 1.0, "loss_ce"
        uses_acm = args.method in USES_ACM
        teacher_logits, teacher_maps = self._teacher_signals(pixel_values, uses_acm)
        outputs = model(pixel_values=pixel_values, output_hidden_states=uses_acm)
        ce_weight = 1 - args.alpha_kld if self.use_kld else 1.0
        terms = {ce_name: (ce_weight, mixup_cross_entropy(outputs.logits, labels_a, labels_b, lam))}
        if self.use_kld:
            terms["loss_kld"] = (args.alpha_kld, kd_loss(outputs.logits, teacher_logits, args.temperature))
        if uses_acm:
            acm = acm_loss(
                teacher_maps,
                _hidden_states(outputs, "student"),
                align=args.acm_channel_align,
                teacher_layers=args.acm_teacher_layers,
                student_layers=args.acm_student_layers,
                layer_mapping=args.acm_layer_mapping,
                affine_maps=self.affine_maps,
            )
            terms["loss_acm"] = (args.alpha_acm, acm)
        return terms, outputs

    def _teacher_signals(
        self, pixel_values: torch.Tensor, uses_acm: bool
    ) -> tuple[torch.Tensor | None, list[torch.Tensor] | None]:
        """The teacher's logits and (for ACM) raw activated channel maps (B, C) per hidden state.

        Run before the student and reduced to channel maps at once, so its feature maps are freed before the
        student allocates its own (measurably faster on CPU than keeping both alive).
        """
        if self.teacher_model is None:
            return None, None
        with torch.no_grad(), self.accelerator.autocast():  # the student's mixed precision (loss terms stay fp32)
            outputs = self._teacher_forward(pixel_values=pixel_values, output_hidden_states=uses_acm)
            maps = None
            if uses_acm:
                maps = [activated_channel_map(h, normalize=False) for h in _hidden_states(outputs, "teacher")]
        return outputs.logits, maps

    def _adversarial_examples(self, model: nn.Module, pixel_values: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        args = self.args
        attacked = self.accelerator.unwrap_model(model)  # input gradients only: bypass DDP's gradient hooks
        generator = self._batch_generator()
        if args.method == "n-fgsm":
            return adversarial_examples(
                attacked, pixel_values, labels, args.pgd_eps, args.pgd_eps, 1, init_scale=args.nfgsm_noise,
                project=False, generator=generator,
            )  # fmt: skip
        return adversarial_examples(
            attacked, pixel_values, labels, args.pgd_eps, args.pgd_step_size, args.pgd_steps, generator=generator
        )

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


def _num_labels(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    return getattr(config, "num_labels", None) if config is not None else None


def _hidden_states(outputs: Any, who: str) -> tuple[torch.Tensor, ...]:
    hidden_states = getattr(outputs, "hidden_states", None)
    if not hidden_states:
        raise ValueError(
            f"The {who} returned no hidden_states with output_hidden_states=True, but ACM matching needs its stage "
            "outputs. Load teachers with mixacm_hf.teachers.load_teacher (it adapts timm/ResNet models), or use "
            "method='kd' / 'natural' which need no hidden states."
        )
    bad = [tuple(h.shape) for h in hidden_states if h.dim() != 4]
    if bad:
        raise ValueError(f"The {who}'s hidden_states must be (B, C, H, W) feature maps; got shapes {bad}.")
    return tuple(hidden_states)
