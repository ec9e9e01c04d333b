"""Teachers: converters peer-checked against RobustBench / torchvision / timm code, load_teacher's contract, errors,
and MixACM training end to end with teachers of other depth, width, stage count and label set."""

import argparse
import hashlib
import importlib.util
import logging
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from torch.nn import functional as F
from transformers import (
    AutoConfig,
    CLIPImageProcessor,
    ConvNextImageProcessor,
    ResNetConfig,
    ResNetForImageClassification,
    ResNetModel,
    TimmWrapperConfig,
    TimmWrapperForImageClassification,
    ViTConfig,
    ViTForImageClassification,
    ViTImageProcessor,
)
from transformers.modeling_outputs import ImageClassifierOutputWithNoAttention

from mixacm_hf import WideResNetForImageClassification
from mixacm_hf.losses import acm_loss
from mixacm_hf.robustness import as_classifier
from mixacm_hf.teachers import (
    CIFAR100_NORMALIZATION,
    PixelSpaceClassifier,
    check_teacher,
    convert_state_dict,
    file_sha256,
    load_teacher,
    save_converted_teacher,
)

REPO = Path(__file__).resolve().parents[1]
TOL = {"rtol": 1e-5, "atol": 1e-5}


def load_module_from_file(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def robustbench_archs():
    """RobustBench's WideResNet and DMWideResNet modules, loaded by file path (its package __init__ needs extras)."""
    spec = importlib.util.find_spec("robustbench")
    if spec is None:
        pytest.skip("robustbench is not installed (pip install --no-deps robustbench; it is in the dev extra)")
    folder = Path(spec.submodule_search_locations[0]) / "model_zoo" / "architectures"
    return (
        load_module_from_file("rb_wide_resnet", folder / "wide_resnet.py"),
        load_module_from_file("rb_dm_wide_resnet", folder / "dm_wide_resnet.py"),
    )


def randomize_batchnorm(model: nn.Module) -> nn.Module:
    """Non-trivial affine parameters and running statistics, so eval-mode BN is really compared."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_(0, 0.1)
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def record_outputs(modules: list[nn.Module]) -> list[torch.Tensor]:
    outputs = []
    for module in modules:
        module.register_forward_hook(lambda _m, _i, output: outputs.append(output.detach().clone()))
    return outputs


def assert_frozen(teacher: nn.Module) -> None:
    assert not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())


def assert_matches(teacher: nn.Module, reference: nn.Module, stages: list[nn.Module], x: torch.Tensor, **tol) -> None:
    """Logits and every stage output of `teacher` equal `reference`'s (stages hooked in order)."""
    expected_states = record_outputs(stages)
    with torch.no_grad():
        expected = reference(x)
        outputs = teacher(pixel_values=x, output_hidden_states=True)
    torch.testing.assert_close(outputs.logits, expected, **tol)
    assert isinstance(outputs.hidden_states, tuple) and len(outputs.hidden_states) == len(expected_states)
    for ours, theirs in zip(outputs.hidden_states, expected_states):
        torch.testing.assert_close(ours, theirs, **tol)


# ----------------------------------------------------------------------------------------------------------------------
# Peer checks against the source code of each format


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
        lambda sd: {"model_state_dict": sd, "epoch": 3},
        lambda sd: {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")},  # saved by torch < 0.4.1
    ],
    ids=["raw", "state_dict-module-prefix", "model_state_dict", "no-batch-counters"],
)
def test_standard_wrn_matches_robustbench(robustbench_archs, tmp_path, wrap):
    wide_resnet, _ = robustbench_archs
    torch.manual_seed(0)
    reference = randomize_batchnorm(wide_resnet.WideResNet(depth=16, num_classes=10, widen_factor=2, sub_block1=True))
    torch.save(wrap(reference.state_dict()), tmp_path / "trades.pt")
    teacher = load_teacher(tmp_path / "trades.pt", "standard-wrn-16-2")
    assert isinstance(teacher, WideResNetForImageClassification) and teacher.config.variant == "standard"
    assert_frozen(teacher)
    stages = [reference.conv1, reference.block1, reference.block2, reference.block3]
    assert_matches(teacher, reference, stages, torch.rand(4, 3, 32, 32), **TOL)


@pytest.mark.parametrize("normalization", [None, CIFAR100_NORMALIZATION], ids=["cifar10-default", "cifar100"])
def test_dm_wrn_matches_robustbench(robustbench_archs, tmp_path, normalization):
    _, dm_wide_resnet = robustbench_archs
    torch.manual_seed(0)
    num_classes, stats = (10, {}) if normalization is None else (100, dict(zip(("mean", "std"), normalization)))
    reference = dm_wide_resnet.DMWideResNet(
        num_classes=num_classes, depth=16, width=2, activation_fn=dm_wide_resnet.Swish, **stats
    )
    randomize_batchnorm(reference)
    torch.save(reference.state_dict(), tmp_path / "dm.pt")
    mean, std = normalization or (None, None)
    teacher = load_teacher(tmp_path / "dm.pt", "dm-wrn-16-2", image_mean=mean, image_std=std)
    assert teacher.config.activation == "swish" and teacher.config.num_labels == num_classes
    assert_frozen(teacher)
    stages = [reference.init_conv, *reference.layer]
    assert_matches(teacher, reference, stages, torch.rand(4, 3, 32, 32), **TOL)


@pytest.mark.parametrize(
    "arch, build",
    [
        ("standard-wrn-34-10", lambda rb, dm: rb.WideResNet(depth=34, widen_factor=10, sub_block1=True)),
        ("standard-wrn-28-10", lambda rb, dm: rb.WideResNet(depth=28, widen_factor=10, num_classes=100)),
        ("dm-wrn-28-10", lambda rb, dm: dm.DMWideResNet(depth=28, width=10, activation_fn=dm.Swish)),
        ("dm-wrn-34-20", lambda rb, dm: dm.DMWideResNet(depth=34, width=20, activation_fn=dm.Swish)),
        ("dm-wrn-70-16", lambda rb, dm: dm.DMWideResNet(depth=70, width=16, activation_fn=dm.Swish)),
    ],
)
def test_paper_teacher_layouts_convert(robustbench_archs, arch, build):
    """Full-size layouts of the paper's teachers map key for key and shape for shape (on the meta device)."""
    with torch.device("meta"):
        source = build(*robustbench_archs)
        model, _ = convert_state_dict(source.state_dict(), arch)
    assert model.config.num_labels == (source.fc if arch.startswith("standard") else source.logits).out_features


def robustness_checkpoint(model: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> dict:
    """A `robustness`-library checkpoint: model, attacker copy and normaliser buffers under `module.`."""
    weights = {}
    for key, value in model.state_dict().items():
        weights[f"module.model.{key}"] = value
        weights[f"module.attacker.model.{key}"] = value
    for prefix in ("module.normalizer", "module.attacker.normalize"):
        weights[f"{prefix}.new_mean"], weights[f"{prefix}.new_std"] = mean.view(3, 1, 1), std.view(3, 1, 1)
    return {"model": weights, "epoch": 90}


def test_robustness_resnet50_matches_torchvision(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    reference = randomize_batchnorm(torchvision.models.resnet50(num_classes=1000))
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    torch.save(robustness_checkpoint(reference, mean, std), tmp_path / "imagenet_linf_4.pt")
    teacher = load_teacher(tmp_path / "imagenet_linf_4.pt", "robustness-resnet50", image_size=32)
    assert isinstance(teacher, PixelSpaceClassifier) and isinstance(teacher.model, ResNetForImageClassification)
    assert_frozen(teacher)
    x = torch.rand(2, 3, 224, 224)  # the processor's view (resize 256, crop 224): passed as it is
    normalized_reference = nn.Sequential(Normalize(mean, std), reference)
    stages = [reference.maxpool, reference.layer1, reference.layer2, reference.layer3, reference.layer4]
    assert_matches(teacher, normalized_reference, stages, x, rtol=1e-4, atol=1e-4)

    # The converted folder keeps the normaliser in its image processor and loads back to the same function (up to
    # float reordering: the reloaded ResNet-50 may take other convolution kernels, e.g. with one thread).
    save_converted_teacher(tmp_path / "imagenet_linf_4.pt", "robustness-resnet50", tmp_path / "hf")
    assert (tmp_path / "hf" / "model.safetensors").is_file() and (
        tmp_path / "hf" / "preprocessor_config.json"
    ).is_file()
    reloaded = load_teacher(tmp_path / "hf", image_size=32)
    with torch.no_grad():
        torch.testing.assert_close(
            reloaded(pixel_values=x).logits, teacher(pixel_values=x).logits, rtol=1e-4, atol=1e-4
        )


class Normalize(nn.Module):
    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.mean, self.std = mean.view(1, 3, 1, 1), std.view(1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def test_timm_teacher_yields_stage_maps_for_acm(tmp_path, tiny_wrn):
    """A timm model, by name + local weights and as a TimmWrapper folder, gives per-stage maps that ACM consumes."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    reference = randomize_batchnorm(timm.create_model("test_resnet", pretrained=False, num_classes=10))
    save_file(reference.state_dict(), tmp_path / "test_resnet.safetensors")
    by_name = load_teacher(tmp_path / "test_resnet.safetensors", "timm:test_resnet", image_size=32)
    assert isinstance(by_name, PixelSpaceClassifier) and isinstance(by_name.model, TimmWrapperForImageClassification)
    assert_frozen(by_name)

    folder = tmp_path / "timm-folder"
    wrapper = TimmWrapperForImageClassification(
        TimmWrapperConfig(architecture="test_resnet", num_labels=10, pretrained_cfg=dict(reference.pretrained_cfg))
    )
    wrapper.timm_model.load_state_dict(reference.state_dict())
    wrapper.save_pretrained(folder)
    from_folder = load_teacher(folder, image_size=32)

    mean = torch.tensor(reference.pretrained_cfg["mean"])
    std = torch.tensor(reference.pretrained_cfg["std"])
    x = torch.rand(4, 3, 32, 32)
    for teacher in (by_name, from_folder):
        with torch.no_grad():
            outputs = teacher(pixel_values=x, output_hidden_states=True)
            expected = reference(Normalize(mean, std)(x))
        torch.testing.assert_close(outputs.logits, expected, **TOL)
        states = outputs.hidden_states
        assert isinstance(states, tuple) and len(states) == 5 and all(h.dim() == 4 for h in states)
        assert [h.shape[1] for h in states] == [f["num_chs"] for f in reference.feature_info]
        student_states = tiny_wrn("wrn-10-1")(pixel_values=x, output_hidden_states=True).hidden_states
        for kwargs in ({"layer_mapping": "relative_depth"}, {"teacher_layers": [1, 2, 3], "student_layers": [1, 2, 3]}):
            loss = acm_loss(states, student_states, **kwargs)
            assert torch.isfinite(loss) and loss > 0


def tiny_hf_resnet(num_labels: int = 10) -> ResNetForImageClassification:
    config = ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], layer_type="basic", num_labels=num_labels
    )
    torch.manual_seed(0)
    return randomize_batchnorm(ResNetForImageClassification(config))


def test_hf_resnet_folder_normalises_from_its_processor(tmp_path):
    model = tiny_hf_resnet()
    model.save_pretrained(tmp_path / "bare")
    with pytest.raises(ValueError, match="image_mean and image_std"):
        load_teacher(tmp_path / "bare")
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    explicit = load_teacher(tmp_path / "bare", image_mean=mean, image_std=std)

    model.save_pretrained(tmp_path / "with-processor")
    processor = ConvNextImageProcessor(size={"shortest_edge": 32}, image_mean=list(mean), image_std=list(std))
    processor.save_pretrained(tmp_path / "with-processor")  # resize 36, crop 32: 32-px inputs pass as they are
    from_processor = load_teacher(tmp_path / "with-processor")

    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(pixel_values=Normalize(torch.tensor(mean), torch.tensor(std))(x)).logits
        for teacher in (explicit, from_processor):
            assert_frozen(teacher)
            outputs = teacher(pixel_values=x, output_hidden_states=True)
            torch.testing.assert_close(outputs.logits, expected, rtol=0, atol=0)
            assert len(outputs.hidden_states) == 5  # stem + 4 stages


def test_a_folder_without_trained_classifier_weights_is_refused_not_filled_at_random(tmp_path):
    """A backbone saved without its head (or a head of another shape): transformers only warns and initialises the
    missing weights at random (and raises a RuntimeError for weights of other shapes), so a teacher or an evaluated
    model would give random predictions and plausible numbers. Both the teacher loader and the evaluation's loader
    refuse them with a ValueError naming the folder."""
    backbone = tiny_hf_resnet()
    ResNetModel(backbone.config).save_pretrained(tmp_path / "backbone")
    ConvNextImageProcessor().save_pretrained(tmp_path / "backbone")
    five = tiny_hf_resnet(num_labels=5)
    five.save_pretrained(tmp_path / "five-classes")
    config = five.config.to_dict() | {"num_labels": 10, "id2label": {i: str(i) for i in range(10)}}
    (tmp_path / "five-classes" / "config.json").write_text(__import__("json").dumps(config))  # a head of 5 rows
    for folder, message in (
        ("backbone", r"The teacher '{}' lacks trained weights for 2 parameter\(s\) .*classifier\.1\..*not a trained"),
        ("five-classes", r"Cannot load the teacher '{}': its weights do not fit its config.json"),
    ):
        spec = str(tmp_path / folder)
        message = message.format(re.escape(spec))
        with pytest.raises(ValueError, match=message):
            load_teacher(spec, image_mean=(0.5,) * 3, image_std=(0.5,) * 3)
        with pytest.raises(ValueError, match=re.sub("(?i)the teacher", lambda m: m[0][:4] + "model", message)):
            as_classifier(spec)
    whole = tiny_hf_resnet()
    state = {key: value for key, value in whole.state_dict().items() if not key.endswith("num_batches_tracked")}
    whole.save_pretrained(tmp_path / "whole", state_dict=state)  # BatchNorm's step counters change no prediction
    load_teacher(tmp_path / "whole", image_mean=(0.5,) * 3, image_std=(0.5,) * 3)  # every weight trained: loads


def test_a_missing_local_folder_that_looks_like_a_hub_id_says_there_is_no_such_folder(tmp_path, monkeypatch):
    """`model_cards/teacher-21ep` (a typo of a local folder) is also a valid Hub id: the error must not only talk of
    the Hub."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OSError, match=r"There is no folder 'cards/teacher-21ep' here \(check the path for a typo\)"):
        load_teacher("cards/teacher-21ep")


def test_convert_teacher_script_writes_hf_folder_with_card(robustbench_archs, tmp_path):
    wide_resnet, _ = robustbench_archs
    torch.manual_seed(0)
    reference = randomize_batchnorm(wide_resnet.WideResNet(depth=10, num_classes=10, widen_factor=1))
    torch.save({"state_dict": reference.state_dict()}, tmp_path / "madry.pth")
    script = load_module_from_file("convert_teacher", REPO / "training" / "convert_teacher.py")
    output = tmp_path / "madry-wrn-10-1"
    script.main(
        [str(tmp_path / "madry.pth"), "--arch", "standard-wrn-10-1", "--output", str(output)]
        + ["--source", "https://example.org/madry.pth", "--reported_robustness", "PGD-20 47.0% (eps 8/255)"]
    )
    assert {"config.json", "model.safetensors", "README.md"} <= {p.name for p in output.iterdir()}
    card = (output / "README.md").read_text()
    assert "PGD-20 47.0% (eps 8/255)" in card and "https://example.org/madry.pth" in card
    sha256 = hashlib.sha256((tmp_path / "madry.pth").read_bytes()).hexdigest()
    assert re.search(r"\| Source checkpoint \| `madry.pth` \(sha256 `([0-9a-f]{64})`\) \|", card)[1] == sha256
    assert file_sha256(tmp_path / "madry.pth") == sha256
    assert AutoConfig.from_pretrained(output).converted_from == {
        "file": "madry.pth", "sha256": sha256, "architecture": "standard-wrn-10-1",
        "source": "https://example.org/madry.pth",
    }  # fmt: skip
    teacher = load_teacher(output)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(teacher(pixel_values=x).logits, reference(x), **TOL)


# ----------------------------------------------------------------------------------------------------------------------
# Errors


@pytest.fixture
def wrn_checkpoint(robustbench_archs, tmp_path) -> Path:
    wide_resnet, _ = robustbench_archs
    torch.manual_seed(0)
    path = tmp_path / "wrn-16-2.pt"
    torch.save(wide_resnet.WideResNet(depth=16, widen_factor=2).state_dict(), path)
    return path


def test_pickled_objects_are_refused(wrn_checkpoint, tmp_path):
    state_dict = torch.load(wrn_checkpoint, weights_only=True)
    torch.save({"state_dict": state_dict, "args": argparse.Namespace(lr=0.1)}, tmp_path / "with-args.pt")
    with pytest.raises(ValueError, match=r"weights_only=True.*re-save"):
        load_teacher(tmp_path / "with-args.pt", "standard-wrn-16-2")
    torch.save({**state_dict, "epoch": 3}, tmp_path / "mixed.pt")
    with pytest.raises(ValueError, match=r"\['epoch'\] are not tensors"):
        load_teacher(tmp_path / "mixed.pt", "standard-wrn-16-2")


@pytest.mark.parametrize(
    "content", [b"hello world" * 100, bytes(range(256)) * 20, b"", b'{"a": 1}', b"PK\x03\x04" + bytes(300)]
)
def test_a_file_that_is_no_torch_checkpoint_is_called_unreadable(content, tmp_path):
    """Text, random or empty bytes and a broken zip are "truncated or corrupt", not a traceback (KeyError from
    torch's pickle reader) nor a safe-loading refusal of objects that could run code."""
    (tmp_path / "weights.pt").write_bytes(content)
    with pytest.raises(ValueError, match=r"Cannot read the weights in .*weights\.pt.*the file is truncated or corrupt"):
        load_teacher(tmp_path / "weights.pt", "standard-wrn-16-2")


def test_unknown_architecture_lists_supported_ones(wrn_checkpoint):
    with pytest.raises(ValueError, match=r"Unknown teacher architecture 'wrn-16-2'.*standard-wrn-D-K.*dm-wrn-D-K"):
        load_teacher(wrn_checkpoint, "wrn-16-2")
    with pytest.raises(ValueError, match=r"is a file, not a model folder: if it is a checkpoint.*robustness-resnet50"):
        load_teacher(wrn_checkpoint)


def test_conversion_errors_name_the_key(wrn_checkpoint):
    with pytest.raises(ValueError, match=r"Shape mismatch for checkpoint key 'block1\.layer\.0\.conv1\.weight'"):
        load_teacher(wrn_checkpoint, "standard-wrn-16-4")
    with pytest.raises(ValueError, match=r"\['block1\.layer\.1\.bn1\.weight'.*no place in 'standard-wrn-10-2'"):
        load_teacher(wrn_checkpoint, "standard-wrn-10-2")
    with pytest.raises(ValueError, match=r"lacks \['wide_resnet\.groups\.0\.layers\.2\.norm1\.weight'"):
        load_teacher(wrn_checkpoint, "standard-wrn-22-2")
    with pytest.raises(ValueError, match=r"key 'conv1\.weight' is not part of the 'dm-wrn-16-2' layout"):
        load_teacher(wrn_checkpoint, "dm-wrn-16-2")


class LogitsOnly(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 10)

    def forward(self, pixel_values, output_hidden_states=None):
        return ImageClassifierOutputWithNoAttention(logits=self.linear(pixel_values.mean(dim=(2, 3))))


def test_teacher_without_feature_maps_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="teacher 'logits-only' returned no hidden_states"):
        check_teacher(LogitsOnly(), 32, "logits-only")
    config = ViTConfig(
        image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16
    )
    ViTForImageClassification(config).save_pretrained(tmp_path / "vit")
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path / "vit")
    with pytest.raises(ValueError, match=r"hidden state 0 is \(1, 17, 16\), not a \(B, C, H, W\)"):
        load_teacher(tmp_path / "vit")


# ----------------------------------------------------------------------------------------------------------------------
# MixACM end to end with foreign teachers


def random_images(num_labels: int = 10, count: int = 24) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    return [
        {"pixel_values": torch.rand(3, 32, 32, generator=generator), "labels": i % num_labels} for i in range(count)
    ]


def train_three_steps(student: nn.Module, teacher: nn.Module, output_dir: Path, **kwargs) -> list[dict]:
    """Three MixACM steps on random 32x32 images; checks the student learns and the teacher stays untouched."""
    from mixacm_hf import MixACMTrainer, MixACMTrainingArguments
    from mixacm_hf.data import collate_image_batch

    args = MixACMTrainingArguments(
        output_dir=str(output_dir), per_device_train_batch_size=8, max_steps=3, learning_rate=0.05, logging_steps=1,
        save_strategy="no", use_cpu=True, report_to=[], seed=0, **kwargs,
    )  # fmt: skip
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student_before = {k: v.clone() for k, v in student.state_dict().items()}
    trainer = MixACMTrainer(
        model=student,
        teacher_model=teacher,
        args=args,
        train_dataset=random_images(),
        data_collator=collate_image_batch,
    )
    trainer.train()
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in teacher_before.items())
    assert any(not torch.equal(v, student.state_dict()[k]) for k, v in student_before.items())
    logs = [entry for entry in trainer.state.log_history if "loss_acm" in entry]
    assert len(logs) == 3 and all(torch.isfinite(torch.tensor(entry["loss"])) for entry in logs)
    return logs


def test_mixacm_trains_wrn_student_from_deeper_wider_wrn_teacher(tmp_path, tiny_wrn):
    tiny_wrn("wrn-28-2", seed=1).save_pretrained(tmp_path / "teacher")
    teacher = load_teacher(tmp_path / "teacher")
    assert teacher.config.hidden_sizes != [16, 16, 32, 64]
    logs = train_three_steps(tiny_wrn("wrn-16-1").train(), teacher, tmp_path / "run")
    assert all({"loss_mix", "loss_kld", "loss_acm"} <= set(entry) for entry in logs)


@pytest.mark.parametrize(
    "teacher_kind, pairing",
    [
        ("hf-resnet", {"acm_teacher_layers": [0, 2, 3, 4], "acm_student_layers": [0, 1, 2, 3]}),
        ("hf-resnet", {"acm_layer_mapping": "relative_depth"}),
        ("timm", {"acm_layer_mapping": "relative_depth"}),
    ],
)
def test_mixacm_trains_wrn_student_from_teacher_with_other_stage_count(tmp_path, tiny_wrn, teacher_kind, pairing):
    if teacher_kind == "hf-resnet":
        tiny_hf_resnet().save_pretrained(tmp_path / "teacher")
        ConvNextImageProcessor().save_pretrained(tmp_path / "teacher")
        teacher = load_teacher(tmp_path / "teacher")
    else:
        timm = pytest.importorskip("timm")
        torch.manual_seed(0)
        save_file(timm.create_model("test_resnet", num_classes=10).state_dict(), tmp_path / "weights.safetensors")
        teacher = load_teacher(tmp_path / "weights.safetensors", "timm:test_resnet", image_size=32)
    with torch.no_grad():
        num_states = len(teacher(pixel_values=torch.rand(1, 3, 32, 32), output_hidden_states=True).hidden_states)
    assert num_states == 5  # stem + 4 stages, against the student's stem + 3 groups
    logs = train_three_steps(tiny_wrn("wrn-16-1").train(), teacher, tmp_path / "run", **pairing)
    assert all(entry["loss_acm"] > 0 for entry in logs)


def test_cross_dataset_teacher_drops_kld_with_warning(tmp_path, tiny_wrn, caplog):
    tiny_wrn("wrn-16-2", num_labels=100, seed=1).save_pretrained(tmp_path / "cifar100-teacher")
    teacher = load_teacher(tmp_path / "cifar100-teacher")
    with caplog.at_level(logging.WARNING):
        logs = train_three_steps(tiny_wrn("wrn-16-1").train(), teacher, tmp_path / "run", alpha_acm=1.0)
    assert "dropping the KLD term" in caplog.text
    for entry in logs:
        assert "loss_kld" not in entry and {"loss_mix", "loss_acm"} <= set(entry)
        assert entry["loss"] == pytest.approx(entry["loss_mix"] + entry["loss_acm"], abs=1e-3)  # mixup CE weight 1


# Processors of every kind of step: resize up and down (height/width, shortest edge, ConvNeXt's crop_pct), center
# crop, a rescale factor other than 1/255 with normalisation to [-1, 1] (ViT-style), and bicubic/nearest resampling.
PROCESSORS = {
    "vit-224-up": lambda: ViTImageProcessor(size={"height": 224, "width": 224}),
    "vit-16-down-nearest": lambda: ViTImageProcessor(size={"height": 16, "width": 16}, resample=0),
    "convnext-crop-pct": lambda: ConvNextImageProcessor(size={"shortest_edge": 64}, crop_pct=0.875),
    "clip-shortest-edge-and-crop": lambda: CLIPImageProcessor(
        size={"shortest_edge": 48}, crop_size={"height": 40, "width": 40}
    ),
    "rescale-2-over-255": lambda: ViTImageProcessor(
        size={"height": 32, "width": 32}, rescale_factor=2 / 255, image_mean=[1, 1, 1], image_std=[1, 1, 1]
    ),
}


@pytest.mark.parametrize("name", list(PROCESSORS))
def test_a_wrapped_model_sees_what_its_processor_gives_it(tmp_path, name):
    """The wrapper applies each pixel-wise step of the saved image processor: on [0, 1] pixels the model receives what
    `processor(images)` gives it (up to the processor's rounding to 8 bits after resizing), from non-square 8-bit
    images; the report's input description names the steps."""
    model = tiny_hf_resnet()
    model.save_pretrained(tmp_path / "model")
    processor = PROCESSORS[name]()
    processor.save_pretrained(tmp_path / "model")
    wrapped = load_teacher(tmp_path / "model", image_size=64)
    coarse = torch.randint(0, 256, (2, 3, 6, 7), generator=torch.Generator().manual_seed(0)).float()
    images = F.interpolate(coarse, size=(30, 36), mode="bilinear").round().to(torch.uint8)  # smooth, like photos
    seen = []
    wrapped.model.register_forward_pre_hook(
        lambda _m, _a, kwargs: seen.append(kwargs["pixel_values"]), with_kwargs=True
    )
    with torch.no_grad():
        wrapped(pixel_values=images.float() / 255)
    expected = processor(list(images), return_tensors="pt")["pixel_values"]
    step = 255 * processor.rescale_factor / min(processor.image_std) / 255  # one 8-bit step, in the model's units
    # the processor rounds to 8 bits after resizing; torch's 8-bit bicubic uses PIL's kernel (a = -0.5), its float
    # one a = -0.75: a few steps apart at edges
    steps = 1.01 if processor.resample != 3 else 4
    assert seen[0].shape == expected.shape
    assert (seen[0] - expected).abs().max() <= steps * step
    assert (seen[0] - expected).abs().mean() <= 0.5 * step
    assert wrapped.describe().startswith("wrapped: ")


def test_a_processor_step_that_cannot_be_applied_is_refused_by_name(tmp_path):
    """Padding, a Lanczos resize or a longest-edge size rule cannot be reproduced inside the model: refused, naming
    the step, before anything is evaluated."""
    model = tiny_hf_resnet()
    model.save_pretrained(tmp_path / "model")
    for processor, named in [
        (ViTImageProcessor(size={"height": 32, "width": 32}, resample=1), "resample=1"),
        (ViTImageProcessor(size={"longest_edge": 32}), "size={'longest_edge': 32}"),
        (ViTImageProcessor(do_pad=True), "do_pad"),
    ]:
        processor.save_pretrained(tmp_path / "model")
        with pytest.raises(ValueError, match=re.escape(named)):
            load_teacher(tmp_path / "model")


# Processors whose code does more than their settings say: LeViT resizes the short side to 256/224 x size before its
# crop, EfficientNet's include_top divides by the std twice, PP-LCNet flips RGB to BGR, Perceiver crops before it
# resizes; Pix2Struct standardises each image by its own statistics.
MISLEADING_PROCESSORS = {
    "LevitImageProcessor": "differ by",
    "EfficientNetImageProcessor": "differ by",
    "PPLCNetImageProcessor": "differ by",
    "PerceiverImageProcessor": "center-crops 256x256 from",
    "Pix2StructImageProcessor": "do_normalize without image_mean and image_std",
}


@pytest.mark.parametrize("name", list(MISLEADING_PROCESSORS))
def test_a_processor_that_does_more_than_its_settings_say_is_refused(tmp_path, name):
    """The steps read from a processor's settings are checked against the processor itself on a probe image: one
    whose own code does something else is refused at load, naming its class, not applied as its settings read."""
    transformers = pytest.importorskip("transformers")
    model = tiny_hf_resnet()
    model.save_pretrained(tmp_path / "model")
    getattr(transformers, name)().save_pretrained(tmp_path / "model")
    with pytest.raises(ValueError, match=f"{name}.*{MISLEADING_PROCESSORS[name]}"):
        load_teacher(tmp_path / "model")
    with pytest.raises(ValueError, match=name):
        as_classifier(str(tmp_path / "model"))


def test_a_timm_conversion_needs_its_image_size_and_its_pipeline_feeds_what_the_evaluator_does(tmp_path, capsys):
    """timm's own settings for a model are ImageNet's resize and crop (test_resnet: 160 px); the checkpoint's image
    size is asked for, and the saved processor (built from the config) then feeds images of that size, normalised
    only: `pipeline` on the folder gives the evaluator's logits."""
    timm = pytest.importorskip("timm")
    from PIL import Image
    from transformers import pipeline

    torch.manual_seed(0)
    reference = randomize_batchnorm(timm.create_model("test_resnet", pretrained=False, num_classes=10)).eval()
    save_file(reference.state_dict(), tmp_path / "r.safetensors")
    script = load_module_from_file("convert_teacher", REPO / "training" / "convert_teacher.py")
    with pytest.raises(SystemExit) as exited:
        script.main([str(tmp_path / "r.safetensors"), "--arch", "timm:test_resnet", "--output", str(tmp_path / "no")])
    assert exited.value.code == 2 and "--arch timm:test_resnet: give --image_size" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()
    output = tmp_path / "timm-32"
    script.main([str(tmp_path / "r.safetensors"), "--arch", "timm:test_resnet", "--output", str(output),
                 "--image_size", "32"])  # fmt: skip
    pixels = torch.randint(0, 256, (3, 32, 32, 3), dtype=torch.uint8)
    images = [Image.fromarray(image.numpy()) for image in pixels]
    classify = pipeline("image-classification", model=str(output), top_k=10)
    probabilities = [{row["label"]: row["score"] for row in rows} for rows in classify(images)]
    classifier, info = as_classifier(str(output))
    with torch.no_grad():
        expected = classifier(pixels.permute(0, 3, 1, 2).float() / 255).logits.softmax(-1)
    labels = AutoConfig.from_pretrained(output).id2label
    got = torch.tensor([[row[labels[k]] for k in range(10)] for row in probabilities])
    torch.testing.assert_close(got, expected, atol=2e-3, rtol=0)  # uint8 rounding of the processor's rescale only
    assert "resize" not in info["input"]
