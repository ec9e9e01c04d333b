"""MixACMTrainer: every method trains and logs exactly its loss terms; the teacher stays frozen; bad input errors."""

import logging

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from torch import nn

from mixacm_hf import MixACMTrainer, MixACMTrainingArguments, methods
from mixacm_hf.data import ExampleTransform, collate_image_batch
from mixacm_hf.robustness.attacks import gradient_ascent

EXPECTED_TERMS = {
    "mixacm": {"loss_mix", "loss_kld", "loss_acm"},
    "mixacm-no-mixup": {"loss_ce", "loss_kld", "loss_acm"},
    "acm-only": {"loss_ce", "loss_acm"},
    "kd": {"loss_ce", "loss_kld"},
    "natural": {"loss_ce"},
    "pgd-at": {"loss_adv"},
    "n-fgsm": {"loss_adv"},
    "trades": {"loss_ce", "loss_trades_kl"},
    "ard": {"loss_kld"},
    "rslad": {"loss_rslad_natural", "loss_rslad_adv"},
}


def random_image_dataset(n: int = 32, size: int = 32, num_classes: int = 10, mode: str = "RGB") -> datasets.Dataset:
    rng = np.random.default_rng(0)
    channels = 3 if mode == "RGB" else 1
    images = [
        Image.fromarray(rng.integers(0, 256, (size, size, channels), dtype=np.uint8).squeeze(), mode=mode)
        for _ in range(n)
    ]
    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(num_classes=num_classes)})
    dataset = datasets.Dataset.from_dict({"img": images, "label": [i % num_classes for i in range(n)]}, features)
    dataset.set_transform(ExampleTransform("img", "label", train=True))
    return dataset


def make_args(tmp_path, **overrides) -> MixACMTrainingArguments:
    settings = {
        "output_dir": str(tmp_path / "out"),
        "max_steps": 2,
        "per_device_train_batch_size": 8,
        "learning_rate": 0.01,
        "logging_steps": 1,
        "report_to": [],
        "use_cpu": True,
        "save_strategy": "no",
        "disable_tqdm": True,
        "pgd_steps": 2,
        **overrides,
    }
    return MixACMTrainingArguments(**settings)


def make_trainer(tmp_path, tiny_wrn, teacher=None, dataset=None, **overrides) -> MixACMTrainer:
    args = make_args(tmp_path, **overrides)
    if teacher is None and args.needs_teacher:
        teacher = tiny_wrn("wrn-16-1", seed=1)
    return MixACMTrainer(
        model=tiny_wrn("wrn-10-1").train(),
        teacher_model=teacher,
        args=args,
        train_dataset=dataset if dataset is not None else random_image_dataset(),
        data_collator=collate_image_batch,
    )


@pytest.mark.parametrize("method", list(EXPECTED_TERMS))
def test_every_method_trains_and_logs_exactly_its_terms(tmp_path, tiny_wrn, method):
    trainer = make_trainer(tmp_path, tiny_wrn, method=method)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    teacher_before = [p.detach().clone() for p in trainer.teacher_model.parameters()] if trainer.teacher_model else []
    trainer.train()
    step_logs = [log for log in trainer.state.log_history if "loss" in log]
    assert len(step_logs) == 2
    for log in step_logs:
        assert {key for key in log if key.startswith("loss_")} == EXPECTED_TERMS[method]
        assert all(np.isfinite(log[key]) for key in EXPECTED_TERMS[method])
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))
    if trainer.teacher_model is not None:
        assert not trainer.teacher_model.training
        assert all(not p.requires_grad for p in trainer.teacher_model.parameters())
        assert all(torch.equal(a, b) for a, b in zip(teacher_before, trainer.teacher_model.parameters()))


def test_logged_loss_is_the_weighted_sum_of_terms(tmp_path, tiny_wrn):
    trainer = make_trainer(tmp_path, tiny_wrn, method="mixacm", max_steps=1, learning_rate=0.0)
    trainer.train()
    log = next(log for log in trainer.state.log_history if "loss" in log)
    expected = 0.05 * log["loss_mix"] + 0.95 * log["loss_kld"] + 5000 * log["loss_acm"]
    assert log["loss"] == pytest.approx(expected, rel=1e-3)


def test_bf16_channels_last_and_gradient_accumulation(tmp_path, tiny_wrn):
    trainer = make_trainer(
        tmp_path, tiny_wrn, method="mixacm", bf16=True, channels_last=True, gradient_accumulation_steps=2,
        per_device_train_batch_size=4,
    )  # fmt: skip
    trainer.train()
    assert trainer.state.global_step == 2
    log = next(log for log in trainer.state.log_history if "loss" in log)
    assert set(EXPECTED_TERMS["mixacm"]) <= set(log) and np.isfinite(log["loss"])
    assert trainer.model.wide_resnet.stem.weight.is_contiguous(memory_format=torch.channels_last)


def test_compiled_teacher_gives_the_eager_teachers_signals(tmp_path, tiny_wrn):
    teacher = tiny_wrn("wrn-16-1", seed=1)
    compiled = make_trainer(tmp_path, tiny_wrn, teacher=teacher, method="mixacm", compile_teacher=True)
    eager = make_trainer(tmp_path, tiny_wrn, teacher=teacher, method="mixacm")
    assert compiled._teacher_forward is not compiled.teacher_model and eager._teacher_forward is eager.teacher_model
    pixel_values = torch.rand(8, 3, 32, 32)
    (logits, maps), (eager_logits, eager_maps) = (t.teacher_signals(pixel_values, True) for t in (compiled, eager))
    torch.testing.assert_close(logits, eager_logits, rtol=1e-4, atol=1e-4)  # BN folded into the convs: not bitwise
    assert len(maps) == len(eager_maps) == 4
    for a, b in zip(maps, eager_maps):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    compiled.train()
    assert compiled.state.global_step == 2 and all(not p.requires_grad for p in teacher.parameters())


def test_affine_alignment_trains_its_maps(tmp_path, tiny_wrn):
    trainer = make_trainer(tmp_path, tiny_wrn, method="acm-only", acm_channel_align="affine")
    assert [m.weight.shape for m in trainer.affine_maps] == [(16, 16), (16, 16), (32, 32), (64, 64)]
    before = trainer.affine_maps[1].weight.detach().clone()
    trainer.train()
    assert not torch.equal(before, trainer.affine_maps[1].weight)


def test_checkpoints_contain_only_the_student(tmp_path, tiny_wrn):
    trainer = make_trainer(tmp_path, tiny_wrn, method="mixacm", save_strategy="steps", save_steps=2)
    trainer.train()
    weights = load_file(tmp_path / "out" / "checkpoint-2" / "model.safetensors")
    student_keys = set(trainer.model.state_dict())
    assert set(weights) <= student_keys and "classifier.weight" in weights
    assert sum(v.numel() for v in weights.values()) == sum(v.numel() for v in trainer.model.state_dict().values())


def test_gradient_ascent_raises_the_loss_inside_the_ball(tiny_wrn):
    model = tiny_wrn()
    x, y = torch.rand(4, 3, 32, 32), torch.arange(4)
    eps = 8 / 255

    def loss(images):
        return nn.functional.cross_entropy(model(pixel_values=images).logits, y)

    pgd = gradient_ascent(loss, x, x, eps=eps, step_size=2 / 255, steps=3)
    assert (pgd - x).abs().max() <= eps + 1e-6 and pgd.min() >= 0 and pgd.max() <= 1
    with torch.no_grad():
        assert loss(pgd) > loss(x)
    unprojected = gradient_ascent(loss, x, (x + 2 * eps).clamp(0, 1), eps=eps, step_size=eps, steps=1, projected=False)
    assert 2 * eps < (unprojected - x).abs().max() <= 3 * eps + 1e-6 and unprojected.min() >= 0


@pytest.mark.parametrize("method", ["pgd-at", "n-fgsm", "trades", "ard", "rslad"])
def test_the_inner_attack_of_every_adversarial_method_stays_in_its_ball_and_in_pixel_range(
    tmp_path, tiny_wrn, monkeypatch, method
):
    seen = []

    def recording(loss_fn, x, start, **kwargs):
        adversarial = gradient_ascent(loss_fn, x, start, **kwargs)
        seen.append((x.detach().clone(), adversarial))
        return adversarial

    monkeypatch.setattr(methods.adversarial, "gradient_ascent", recording)
    trainer = make_trainer(tmp_path, tiny_wrn, method=method)
    trainer.train()
    args = trainer.args
    radius = (1 + args.nfgsm_noise) * args.pgd_eps if method == "n-fgsm" else args.pgd_eps
    assert len(seen) == args.max_steps
    for x, adversarial in seen:
        assert 0 < (adversarial - x).abs().max() <= radius + 1e-6
        assert adversarial.min() >= 0 and adversarial.max() <= 1


@pytest.mark.parametrize(
    ("method", "modes"),
    [
        # the reference codes: TRADES computes f(x) and attacks in eval mode, RSLAD attacks in eval mode, ARD attacks
        # in training mode; the outer loss runs in training mode on x and x_adv
        ("trades", ["eval"] * (1 + 2) + ["train"] * 2),
        ("rslad", ["eval"] * 2 + ["train"] * 2),
        ("ard", ["train"] * 2 + ["train"] * 2),  # x_adv, then x (weight 0 at alpha = 1: BatchNorm statistics)
    ],
)
def test_each_baseline_runs_its_forwards_in_the_reference_codes_modes(tmp_path, tiny_wrn, method, modes):
    trainer = make_trainer(tmp_path, tiny_wrn, method=method, max_steps=1)  # pgd_steps=2
    seen = []
    trainer.model.register_forward_pre_hook(lambda module, args: seen.append("train" if module.training else "eval"))
    trainer.train()
    assert seen == modes


@pytest.mark.parametrize("method", ["ard", "rslad"])
def test_distillation_baselines_need_a_teacher_and_trades_does_not(tmp_path, tiny_wrn, method):
    with pytest.raises(ValueError, match="learns from a teacher"):
        MixACMTrainer(model=tiny_wrn(), teacher_model=None, args=make_args(tmp_path, method=method))
    trades = MixACMTrainer(model=tiny_wrn(), teacher_model=None, args=make_args(tmp_path, method="trades"))
    assert trades.teacher_model is None and trades.args.pgd_step_size == 0.007


# -- bad input ---------------------------------------------------------------------------------------------------------
def test_eps_given_in_pixel_levels_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="Did you mean 8/255"):
        make_args(tmp_path, method="pgd-at", pgd_eps=8)
    # 1 is the whole pixel range (every image reaches every other), most likely 1/255 meant
    with pytest.raises(ValueError, match="--pgd_step_size=1 spans the whole .* Did you mean 1/255"):
        make_args(tmp_path, method="trades", pgd_step_size=1)
    assert make_args(tmp_path, method="trades", pgd_eps=0.99).pgd_eps == 0.99


def test_runs_that_would_train_nothing_are_refused(tmp_path):
    with pytest.raises(ValueError, match="--max_steps 0 .* trains nothing"):
        make_args(tmp_path, max_steps=0)
    with pytest.raises(ValueError, match="--max_steps -1 with --num_train_epochs 0.0 trains nothing"):
        make_args(tmp_path, max_steps=-1, num_train_epochs=0.0)


def test_unknown_method_lists_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="mixacm-no-mixup"):
        make_args(tmp_path, method="free-at")


def test_teacher_needed(tmp_path, tiny_wrn):
    with pytest.raises(ValueError, match="pass `teacher_model`"):
        MixACMTrainer(model=tiny_wrn(), args=make_args(tmp_path, method="mixacm"))


def test_label_mismatch_with_kld(tmp_path, tiny_wrn, caplog):
    teacher = tiny_wrn("wrn-10-1", num_labels=100)
    with pytest.raises(ValueError, match="100 classes and the student 10"):
        make_trainer(tmp_path, tiny_wrn, teacher=teacher, method="mixacm", cross_dataset=False)
    with pytest.raises(ValueError, match="100 classes and the student 10"):
        make_trainer(tmp_path, tiny_wrn, teacher=teacher, method="kd")
    with caplog.at_level(logging.WARNING):
        trainer = make_trainer(tmp_path, tiny_wrn, teacher=teacher, method="mixacm")
    assert "dropping the KLD term" in caplog.text and trainer.objective()["kld_dropped"]
    trainer.train()
    log = next(log for log in trainer.state.log_history if "loss" in log)
    assert {k for k in log if k.startswith("loss_")} == {"loss_mix", "loss_acm"}
    assert log["loss"] == pytest.approx(log["loss_mix"] + 5000 * log["loss_acm"], rel=1e-3)


@pytest.mark.parametrize("method", ["kd", "ard", "rslad"])
def test_soft_label_methods_refuse_a_teacher_of_other_classes_whatever_the_mixacm_flags(tmp_path, tiny_wrn, method):
    """ARD and RSLAD weigh their KL terms with their own alphas: MixACM's alpha_kld = 0 must not skip the check (it
    used to, and the run failed in its first step), and --cross_dataset true cannot drop their only signal (refused
    with the arguments, before the teacher is looked at)."""
    teacher = tiny_wrn("wrn-10-1", num_labels=100)
    for overrides, message in (
        ({"alpha_kld": 0.0}, f"100 classes and the student 10.*--method {method} .*cannot drop"),
        ({"cross_dataset": True}, f"--cross_dataset true drops the soft labels .* --method {method} has no ACM term"),
    ):
        if method == "kd" and overrides == {"alpha_kld": 0.0}:
            continue  # kd with alpha_kld 0 is plain CE and needs no soft labels
        with pytest.raises(ValueError, match=message):
            make_trainer(tmp_path, tiny_wrn, teacher=teacher, method=method, **overrides)


def test_a_teacher_with_the_classes_in_another_order_is_refused_like_other_classes(tmp_path, tiny_wrn, caplog):
    """Ten classes each, but the teacher's class 0 is the student's class 9: its soft labels would teach a permuted
    answer. Transformers' placeholder names (LABEL_0, ...) say nothing and are not compared."""
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

    def model(order, seed):
        return tiny_wrn("wrn-10-1", seed=seed, id2label=dict(enumerate(order)), label2id={n: i for i, n in
                                                                                        enumerate(order)})  # fmt: skip

    def trainer(teacher, **overrides):
        return MixACMTrainer(model=model(names, 0).train(), teacher_model=teacher,
                             args=make_args(tmp_path, **overrides), train_dataset=random_image_dataset(),
                             data_collator=collate_image_batch)  # fmt: skip

    reversed_teacher = model(names[::-1], 1)
    for method in ("ard", "rslad", "kd"):
        with pytest.raises(ValueError, match=r"teacher's class 0 is 'truck' and the student's 'airplane'"):
            trainer(reversed_teacher, method=method)
    with caplog.at_level(logging.WARNING):
        assert trainer(reversed_teacher, method="mixacm", cross_dataset=True).objective()["kld_dropped"]
    assert "same order" in caplog.text and "dropping the KLD term" in caplog.text
    cased = model([name.upper() for name in names], 1)  # the same classes, other spelling
    for teacher in (cased, tiny_wrn("wrn-10-1", seed=1)):
        assert "loss_kld" in trainer(teacher, method="ard").objective()["loss_terms"]


class LogitsOnly(nn.Module):
    """A teacher that ignores output_hidden_states."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values, output_hidden_states=False):
        return self.model(pixel_values=pixel_values)


def test_teacher_without_hidden_states(tmp_path, tiny_wrn):
    with pytest.raises(ValueError, match="teacher returned no hidden_states"):
        make_trainer(tmp_path, tiny_wrn, teacher=LogitsOnly(tiny_wrn()), method="mixacm")
    make_trainer(tmp_path, tiny_wrn, teacher=LogitsOnly(tiny_wrn()), method="kd").train()  # KD needs none


class ExtraStage(nn.Module):
    """A teacher with five hidden states (like ResNet-50's stem + 4 stages)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.config = model.config

    def forward(self, pixel_values, output_hidden_states=False):
        out = self.model(pixel_values=pixel_values, output_hidden_states=output_hidden_states)
        if output_hidden_states:
            out.hidden_states = (*out.hidden_states, out.hidden_states[-1] * 2)
        return out


def test_layer_count_mismatch_needs_mapping(tmp_path, tiny_wrn):
    teacher = ExtraStage(tiny_wrn("wrn-16-1"))
    with pytest.raises(ValueError, match="acm_teacher_layers"):
        make_trainer(tmp_path, tiny_wrn, teacher=teacher, method="mixacm")
    make_trainer(
        tmp_path, tiny_wrn, teacher=teacher, method="mixacm", acm_teacher_layers=[1, 2, 3, 4],
        acm_student_layers=[0, 1, 2, 3],
    ).train()  # fmt: skip
    make_trainer(tmp_path, tiny_wrn, teacher=teacher, method="mixacm", acm_layer_mapping="relative_depth").train()


def test_non_finite_loss_stops_and_names_the_term(tmp_path, tiny_wrn):
    class InfiniteLogits(nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model, self.config = model, model.config

        def forward(self, pixel_values, output_hidden_states=False):
            out = self.model(pixel_values=pixel_values, output_hidden_states=output_hidden_states)
            out.logits = out.logits * float("nan")
            return out

    trainer = make_trainer(tmp_path, tiny_wrn, teacher=InfiniteLogits(tiny_wrn("wrn-16-1")), method="mixacm")
    with pytest.raises(FloatingPointError, match="loss_kld"):
        trainer.train()


def test_grayscale_images_are_converted(tmp_path, tiny_wrn):
    dataset = random_image_dataset(mode="L")
    assert dataset[0]["pixel_values"].shape == (3, 32, 32)
    make_trainer(tmp_path, tiny_wrn, dataset=dataset, method="natural").train()
