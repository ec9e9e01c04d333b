"""The evaluator's contract on any model: input convention, dtypes, input formats, AutoAttack preconditions,
per-example records and `compare`, atomic report writes."""

import copy
import json
import multiprocessing
import re
import sys
from collections.abc import Callable
from pathlib import Path

import datasets
import numpy
import pytest
import torch
from torch import nn
from transformers import ConvNextImageProcessor, ResNetConfig, ResNetForImageClassification

from mixacm_hf.robustness import RobustnessReport, evaluate_robustness
from mixacm_hf.robustness.inputs import check_pixels
from mixacm_hf.teachers import load_teacher, save_converted_teacher

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from training.evaluate_robustness import main as evaluate_main  # noqa: E402

QUIET = {"progress": False, "device": "cpu", "seed": 0}


pytestmark = pytest.mark.usefixtures("single_thread")


def randomize_batchnorm(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics, so that a wrong input normalisation changes the predictions."""
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    return model.eval()


def folder_dataset(images: torch.Tensor, labels: torch.Tensor) -> datasets.Dataset:
    """A `datasets` split of uint8 PIL images, as a user's folder would give."""
    from PIL import Image

    pil = [Image.fromarray((x.permute(1, 2, 0) * 255).round().byte().numpy()) for x in images]
    return datasets.Dataset.from_dict({"img": pil, "label": labels.tolist()}).cast_column("img", datasets.Image())


def uint8_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """Random images on the uint8 grid (so that float and uint8 inputs are the same pixels), float in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), generator=generator).float() / 255


# ------------------------------------------------------------------------------------- one input contract


IMAGES = uint8_images(12, 32)


def spread_head(features: Callable[[torch.Tensor], torch.Tensor], head: nn.Linear, x: torch.Tensor) -> None:
    """Set a random head on the standardised features of `x`: a random network's features barely vary between
    images, so its predictions would be one class whatever the input normalisation."""
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        f = features(x).flatten(1)
        weight = torch.randn(head.out_features, f.shape[1], generator=generator) / (f.std(0) + 1e-6)
        head.weight.copy_(weight)
        head.bias.copy_(-weight @ f.mean(0))


def robustness_resnet50_folder(tmp_path: Path) -> Path:
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    reference = randomize_batchnorm(torchvision.models.resnet50(num_classes=10))
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    head, reference.fc = reference.fc, nn.Identity()
    spread_head(reference, head, (IMAGES - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1))
    reference.fc = head
    weights = {f"module.model.{key}": value for key, value in reference.state_dict().items()}
    weights["module.normalizer.new_mean"], weights["module.normalizer.new_std"] = mean.view(3, 1, 1), std.view(3, 1, 1)
    torch.save({"model": weights}, tmp_path / "imagenet_linf_4.pt")
    save_converted_teacher(tmp_path / "imagenet_linf_4.pt", "robustness-resnet50", tmp_path / "resnet50")
    return tmp_path / "resnet50"


def hf_resnet_folder(tmp_path: Path) -> Path:
    config = ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], layer_type="basic", num_labels=10
    )
    torch.manual_seed(0)
    model = randomize_batchnorm(ResNetForImageClassification(config))
    mean, std = torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1), torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    spread_head(lambda x: model.resnet(x).pooler_output, model.classifier[1], (IMAGES - mean) / std)
    model.save_pretrained(tmp_path / "hf-resnet")
    processor = ConvNextImageProcessor(image_mean=mean.flatten().tolist(), image_std=std.flatten().tolist())
    processor.save_pretrained(tmp_path / "hf-resnet")
    return tmp_path / "hf-resnet"


@pytest.mark.parametrize("make_folder", [robustness_resnet50_folder, hf_resnet_folder])
def test_normalising_folders_are_evaluated_at_their_true_accuracy(make_folder, tmp_path):
    folder = make_folder(tmp_path)
    x = IMAGES
    teacher = load_teacher(folder, image_size=32)
    with torch.no_grad():
        labels = teacher(pixel_values=x).logits.argmax(1)  # the properly normalised model's own predictions
        raw = ResNetForImageClassification.from_pretrained(folder).eval()(pixel_values=x).logits.argmax(1)
    assert (raw == labels).float().mean() < 1  # feeding raw pixels would give a plausible but wrong number

    report = evaluate_robustness(str(folder), (x, labels), ["clean"], **QUIET)
    assert report.clean_accuracy == 1.0
    assert report.model["input"].startswith("wrapped: resize ") and "; (pixels - " in report.model["input"]
    assert report.model["name"] == str(folder)

    data = tmp_path / "data"
    folder_dataset(x, labels).to_parquet(str(data / "test-00000-of-00001.parquet"))
    output = tmp_path / "report.json"
    cli = evaluate_main(
        [
            "--model",
            str(folder),
            "--dataset",
            str(data),
            "--attacks",
            "clean",
            "--device",
            "cpu",
            "--output",
            str(output),
        ]
    )
    assert cli.clean_accuracy == 1.0 and RobustnessReport.load(output).clean_accuracy == 1.0
    assert not output.with_name("report.json.partial").exists()  # progress folder removed once the report is written


def test_timm_model_is_wrapped_with_its_pretrained_cfg():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = randomize_batchnorm(timm.create_model("resnet10t", num_classes=10, pretrained=False))
    mean = torch.tensor(model.pretrained_cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(model.pretrained_cfg["std"]).view(1, 3, 1, 1)
    normalized = (IMAGES - mean) / std
    spread_head(lambda x: model.forward_head(model.forward_features(x), pre_logits=True), model.fc, normalized)
    with torch.no_grad():
        labels = model(normalized).argmax(1)
        assert (model(IMAGES).argmax(1) == labels).float().mean() < 1
    report = evaluate_robustness(model, (IMAGES, labels), ["clean"], **QUIET)
    assert report.clean_accuracy == 1.0 and report.model["input"].startswith("wrapped: (pixels - [0.485")


def test_model_with_unknown_input_convention_is_refused(tmp_path):
    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 8, 8, 8], depths=[1, 1, 1, 1], num_labels=10)
    model = ResNetForImageClassification(config).eval()
    x, y = uint8_images(4, 32), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="Cannot tell how .* normalises.*image_mean and image_std.*saved folder"):
        evaluate_robustness(model, (x, y), ["clean", "pgd-2"], **QUIET)
    model.save_pretrained(tmp_path / "bare")
    with pytest.raises(ValueError, match="Cannot tell how .* normalises"):
        evaluate_robustness(str(tmp_path / "bare"), (x, y), ["clean"], **QUIET)
    # with the statistics given explicitly it runs, and the report says what was applied
    report = evaluate_robustness(model, (x, y), ["clean"], image_mean=(0.5,) * 3, image_std=(0.25,) * 3, **QUIET)
    assert report.model["input"] == "wrapped: (pixels - [0.5, 0.5, 0.5]) / [0.25, 0.25, 0.25]"


# ------------------------------------------------------------------------------------- dtypes and input formats


def test_bf16_loaded_model_gives_the_numbers_of_its_fp32_load(tiny_wrn, tmp_path):
    model = tiny_wrn()
    with torch.no_grad():
        for parameter in model.parameters():  # weights representable in bf16: both loads hold the same values
            parameter.copy_(parameter.to(torch.bfloat16).float())
    model.save_pretrained(tmp_path / "wrn")
    from transformers import AutoModelForImageClassification

    fp32 = AutoModelForImageClassification.from_pretrained(tmp_path / "wrn")
    bf16 = AutoModelForImageClassification.from_pretrained(tmp_path / "wrn", torch_dtype=torch.bfloat16)
    x = uint8_images(8, 32)
    with torch.no_grad():
        y = fp32(x).logits.argmax(1)
    y[::3] = (y[::3] + 1) % 10  # some wrong labels, so that clean accuracy is not trivially 1
    attacks = ["clean", "fgsm", "pgd-3"]
    reports = [evaluate_robustness(m, (x, y), attacks, eps=2 / 255, **QUIET) for m in (fp32, bf16)]
    assert reports[0].per_example == reports[1].per_example
    assert reports[0].robust_accuracy == reports[1].robust_accuracy and reports[0].clean_accuracy < 1
    assert reports[1].model["loaded_dtype"] == "bfloat16" and reports[1].model["attack_dtype"] == "float32"
    assert all(p.dtype == torch.bfloat16 and p.requires_grad and p.grad is None for p in bf16.parameters())  # restored


def linear_classifier(num_classes: int, size: int = 4, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * size * size, num_classes)).eval()


def test_uint8_chw_and_hwc_inputs_give_the_numbers_of_float_inputs():
    model = linear_classifier(10)
    x = uint8_images(12, 4)
    y = torch.arange(12) % 10
    uint8 = (x * 255).round().byte()
    hwc = uint8.permute(0, 2, 3, 1)
    split = folder_dataset(x, y)  # PIL images; with_format gives uint8 (N, H, W, 3)
    inputs = {
        "float": (x, y), "uint8 CHW": (uint8, y), "uint8 HWC": (hwc, y), "numpy HWC": (hwc.numpy(), y.numpy()),
        "with_format torch": split.with_format("torch"), "with_format numpy": split.with_format("numpy"),
    }  # fmt: skip
    reports = {name: evaluate_robustness(model, data, ["clean", "pgd-2"], **QUIET) for name, data in inputs.items()}
    for name, report in reports.items():
        assert report.per_example == reports["float"].per_example, name


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (
            torch.rand(4, 3, 8, 8) * 255,
            r"pixel values \(float32, shape \(4, 3, 8, 8\)\) hold values in \[.*For 8-bit images divide by 255",
        ),
        (torch.randint(0, 256, (4, 3, 8, 8)), r"\(int64, shape \(4, 3, 8, 8\)\) hold values in"),
        (torch.rand(3, 8, 8), r"shape \(3, 8, 8\) \(float32\); expected a batch \(N, 3, H, W\)"),
        (torch.rand(4, 5, 8, 8), r"shape \(4, 5, 8, 8\)"),
        (
            torch.full((4, 1, 8, 8), 65535, dtype=torch.int32),
            r"\(int32, shape \(4, 1, 8, 8\)\) hold values in \[65535, 65535\].*16-bit images divide by 65535 "
            r"\(or pass PIL images / a dataset folder, which are converted by bit depth\)",
        ),
        (torch.randn(4, 3, 8, 8) * 2, r"hold values in \[-.*Undo the normalisation"),
    ],
)
def test_bad_images_are_rejected_before_any_attack(images, message, monkeypatch):
    from mixacm_hf.robustness.registry import AttackSpec

    monkeypatch.setattr(AttackSpec, "run", lambda *args: pytest.fail("an attack ran on bad input"))
    with pytest.raises(ValueError, match=message):
        evaluate_robustness(linear_classifier(10, 8), (images, torch.zeros(len(images), dtype=torch.long)), **QUIET)


def sixteen_bit_dataset(n: int = 4, size: int = 4) -> datasets.Dataset:
    """Grayscale 16-bit PIL images (mode I;16) with values up to 65535, as a 16-bit PNG folder gives."""
    import numpy as np
    from PIL import Image

    values = (np.arange(n * size * size).reshape(n, size, size) * 4099 % 65536).astype(np.uint16)
    values[0, 0, :2] = 65535, 0
    images = [Image.fromarray(v) for v in values]
    return datasets.Dataset.from_dict({"img": images, "label": [0] * n}).cast_column("img", datasets.Image())


@pytest.mark.parametrize("format_", ["torch", "numpy"])
def test_16_bit_arrays_are_refused_with_16_bit_advice(format_):
    from mixacm_hf.robustness.inputs import load_examples

    split = sixteen_bit_dataset()
    message = r"\(u?int\d+, shape \(4, 1, 4, 4\)\) hold values in \[0, 65535\].*16-bit images divide by 65535"
    with pytest.raises(ValueError, match=message):
        load_examples(split.with_format(format_), None)
    x, _ = load_examples(split, None)  # PIL images: converted by bit depth
    assert len(x) == 4 and (float(x.min()), float(x.max())) == (0.0, 1.0)


def test_grayscale_numpy_rows_get_their_channel_axis():
    from mixacm_hf.robustness.inputs import load_examples

    gray = folder_dataset(uint8_images(3, 4), torch.zeros(3, dtype=torch.long)).map(
        lambda row: {"img": row["img"].convert("L")}
    ).cast_column("img", datasets.Image())  # fmt: skip
    numpy, _ = load_examples(gray.with_format("numpy"), None)
    pil, _ = load_examples(gray, None)
    assert numpy.shape == (3, 1, 4, 4) and torch.equal(numpy.expand_as(pil), pil)


def test_labels_beyond_the_model_classes_are_refused_before_any_attack(monkeypatch):
    from mixacm_hf.robustness.registry import AttackSpec

    monkeypatch.setattr(AttackSpec, "run", lambda *args: pytest.fail("an attack ran"))
    x = uint8_images(10, 4)
    beyond = r"7 label\(s\) are outside \[0, 3\) \(position 3: 3, .*\): the model has 3 classes \(0..2\)"
    with pytest.raises(ValueError, match=beyond):
        evaluate_robustness(linear_classifier(3), (x, torch.arange(10)), ["clean", "pgd-2"], **QUIET)
    with pytest.raises(ValueError, match=r"5 label\(s\) are outside \[0, 3\) \(position 0: -1, .*the model has 3"):
        evaluate_robustness(linear_classifier(3), (x, torch.arange(10) % 2 - 1), ["clean"], **QUIET)


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"batch_size": 0}, r"batch_size=0: the batch size must be a positive integer"),
     ({"n_examples": 0}, r"n_examples=0 but the data has 4 examples: pass 1 <= n_examples <= 4")],
)  # fmt: skip
def test_empty_batches_and_no_examples_are_refused(settings, message):
    x, y = uint8_images(4, 4), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match=message):
        evaluate_robustness(linear_classifier(3), (x, y), ["clean"], **{**QUIET, **settings})


def test_check_pixels_scales_uint8_and_transposes_hwc():
    uint8 = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 1, 1, 3).expand(2, 4, 5, 3)
    pixels = check_pixels(uint8)
    assert pixels.shape == (2, 3, 4, 5) and pixels.dtype == torch.float32
    assert pixels[0, :, 0, 0].tolist() == pytest.approx([0.0, 0.2, 1.0])


# ------------------------------------------------------------------------------------- AutoAttack preconditions


@pytest.mark.parametrize(("num_classes", "dropped"), [(2, ["apgd-t"]), (3, ["apgd-t"])])
def test_autoattack_runs_on_two_and_three_class_models(num_classes, dropped):
    model = linear_classifier(num_classes)
    x = uint8_images(6, 4)
    with torch.no_grad():
        y = model(x).argmax(1)
    report = evaluate_robustness(model, (x, y), ["clean", "autoattack"], eps=1 / 255, **QUIET)
    settings = report.attacks["autoattack"]
    assert settings["version"] == "standard"
    assert settings["attacks"] == ["apgd-ce", "fab-t", "square"] and list(settings["dropped"]) == dropped
    assert f"the model has {num_classes}" in settings["dropped"]["apgd-t"]
    assert 0 <= report.robust_accuracy["autoattack"] <= report.clean_accuracy == 1.0


def test_impossible_autoattack_components_fail_before_any_attack(monkeypatch):
    from mixacm_hf.robustness.registry import AttackSpec

    monkeypatch.setattr(AttackSpec, "run", lambda *args: pytest.fail("an attack ran"))
    x, y = uint8_images(4, 4), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"apgd-dlr cannot run on a 2-class model.*Usable components: apgd-ce, fab"):
        evaluate_robustness(linear_classifier(2), (x, y), ["clean", "autoattack:apgd-ce+apgd-dlr"], **QUIET)


def test_pyautoattack_warnings_become_report_flags():
    model = nn.Sequential(linear_classifier(10), nn.Softmax(dim=1))  # outputs probabilities, not logits
    x = uint8_images(4, 4)
    with torch.no_grad():
        y = model(x).argmax(1)
    with pytest.warns(UserWarning, match="pyautoattack warning"):
        report = evaluate_robustness(model, (x, y), ["clean", "autoattack:apgd-ce"], eps=1 / 255, **QUIET)
    assert "autoattack:apgd-ce: pyautoattack warning" in report.flags
    check = next(c for c in report.sanity_checks if c["name"] == "autoattack:apgd-ce: pyautoattack warning")
    assert "probability distribution" in check["detail"]


# ------------------------------------------------------------------------------------- per-example records, compare


def brightness_problem(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes told apart by mean brightness (0.3 vs 0.7); pixels (0, 0) and (0, 1) of channel 0 are equal."""
    generator = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 2
    x = (0.3 + 0.4 * y.view(-1, 1, 1, 1).float() + 0.05 * torch.randn(n, 3, 4, 4, generator=generator)).clamp(0, 1)
    x[:, 0, 0, 1] = x[:, 0, 0, 0]
    return x, y


class BrightnessModel(nn.Module):
    """Logit difference 10 (mean - 0.5) (robust at 8/255) plus `spike` (x[0,0,0] - x[0,0,1]) (0 on clean images)."""

    def __init__(self, spike: float):
        super().__init__()
        self.spike = spike

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = 10 * (x.mean((1, 2, 3)) - 0.5) + self.spike * (x[:, 0, 0, 0] - x[:, 0, 0, 1])
        return torch.stack([-score, score], 1)


def test_per_example_records_round_trip_and_compare(tmp_path):
    x, y = brightness_problem()
    robust = evaluate_robustness(BrightnessModel(0.0), (x, y), ["clean", "pgd-5"], **QUIET)
    natural = evaluate_robustness(BrightnessModel(100.0), (x, y), ["clean", "pgd-5"], **QUIET)
    assert set(robust.per_example) == {"index", "clean", "pgd-5", "all"}
    assert robust.per_example["index"] == list(range(64)) and len(robust.per_example["all"]) == 64
    assert RobustnessReport.load(robust.save(tmp_path / "r.json")).per_example == robust.per_example
    assert sum(robust.per_example["pgd-5"]) / 64 == robust.robust_accuracy["pgd-5"]

    result = robust.compare(natural)
    assert result["n_common"] == 64 and result["accuracy"] == 1.0 and result["other_accuracy"] == 0.0
    assert result["difference"] == 1.0 and result["p_value"] < 0.01
    assert result["p_value"] == pytest.approx(2 * 0.5**64)  # exact McNemar: 64 discordant pairs, all one way

    # the same borderline model, two seeds: PGD's random start changes a few verdicts, not the accuracy beyond noise
    model = linear_classifier(10)
    x10 = uint8_images(200, 4)
    with torch.no_grad():
        y10 = model(x10).argmax(1)
    a, b = (
        evaluate_robustness(model, (x10, y10), ["clean", "pgd-1"], eps=3 / 255, **{**QUIET, "seed": s}) for s in (0, 1)
    )
    result = a.compare(b, "pgd-1")
    assert result["only_this_correct"] + result["only_other_correct"] > 0  # the seeds did change verdicts
    low, high = result["interval"]
    assert low <= result["difference"] <= high and low <= 0 <= high and result["p_value"] > 0.05


def test_compare_refuses_reports_without_records():
    x, y = brightness_problem(8)
    report = evaluate_robustness(BrightnessModel(0.0), (x, y), ["clean"], **QUIET)
    old = RobustnessReport.from_dict({**report.to_dict(), "per_example": None})
    with pytest.raises(ValueError, match=r"other report \(BrightnessModel\) has no per-example records"):
        report.compare(old)


def _altered(report: RobustnessReport, **changes) -> RobustnessReport:
    data = copy.deepcopy(report.to_dict())
    for key, value in changes.items():
        target, *path = key.split("__")
        holder = data[target]
        for part in path[:-1]:
            holder = holder[part]
        if path:
            holder[path[-1]] = value
        else:
            data[target] = value
    return RobustnessReport.from_dict(data)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"per_example__pgd-5": [False] * 32}, r"32 'pgd-5' flags for n_examples = 64"),  # flags shorter than index
        ({"per_example__index": [0] * 64}, "distinct integer split indices"),
        ({"per_example__index": [str(i) for i in range(64)]}, "distinct integer split indices"),
        ({"per_example__pgd-5": [None] * 64}, "flags must be true or false, got None"),
        ({"per_example__pgd-5": [0] * 64}, "flags must be true or false, got 0"),
        ({"per_example__pgd-5": [float("nan")] * 64}, "flags must be true or false, got nan"),
        ({"per_example__pgd-5": [True] * 64}, "flags give accuracy 1.0000, but it reports 0.0"),  # not its records
        ({"per_example": [1, 2]}, "per_example must be a dict with an 'index' list"),
        ({"per_example": {"pgd-5": [True] * 64}}, "per_example must be a dict with an 'index' list"),
        ({"attacks__pgd-5__steps": 50}, "'pgd-5' run with other settings"),
        ({"attacks": {"clean": {"type": "clean"}}}, "records no settings of 'pgd-5'"),
        ({"dataset": {}}, "records no dataset"),
        ({"dataset__split": None}, "records no split"),
        ({"dataset__identity__revision": "another"}, "dataset"),
        ({"dataset__revision": "bbb"}, "dataset"),  # a Hub dataset's revision
        ({"robust_accuracy__pgd-5": float("nan")}, "reports no finite 'pgd-5' accuracy"),
        ({"robust_accuracy__pgd-5": "0.0"}, "reports no finite 'pgd-5' accuracy"),
    ],
)
def test_compare_refuses_records_that_are_malformed_or_not_paired(changes, message):
    """A comparison is a number people act on: records that contradict their report, or reports that measured other
    things, are refused with what is wrong, never turned into a plausible difference."""
    x, y = brightness_problem()
    robust = evaluate_robustness(BrightnessModel(0.0), (x, y), ["clean", "pgd-5"], **QUIET)
    spiky = evaluate_robustness(BrightnessModel(100.0), (x, y), ["clean", "pgd-5"], **QUIET)
    assert robust.compare(_altered(spiky), "pgd-5")["difference"] == 1.0  # the unaltered reports pair
    with pytest.raises(ValueError, match=re.escape(message) if "(" not in message else message):
        robust.compare(_altered(spiky, **changes), "pgd-5")
    for copy_of_itself in (robust, _altered(robust, model__name="renamed")):  # a report against itself or a copy
        with pytest.raises(ValueError, match="measured the same model"):
            robust.compare(copy_of_itself, "pgd-5")


def test_paired_statistics_refuse_bad_arguments_and_stay_in_range(tmp_path):
    from mixacm_hf.statistics import mcnemar_exact_p, newcombe_paired_interval, paired_difference

    with pytest.raises(ValueError, match="non-empty"):
        paired_difference([], [])
    with pytest.raises(ValueError, match="True or False"):
        paired_difference([1, 0], [True, False])
    with pytest.raises(ValueError, match="True or False"):  # a tensor of 0/1 from another tool
        paired_difference(torch.tensor([1, 0]), torch.tensor([1, 1]))
    assert paired_difference(numpy.array([True, False]), numpy.array([False, False]))["difference"] == 0.5
    for z in (-1.96, float("nan"), 0, 0.95, True):  # 0.95: a confidence level passed as z
        with pytest.raises(ValueError, match="z must be"):
            paired_difference([True], [False], z=z)
    with pytest.raises(ValueError, match=">= 0"):
        mcnemar_exact_p(-1, 3)
    assert mcnemar_exact_p(numpy.int64(10), numpy.int64(0)) == pytest.approx(2 * 0.5**10)  # from (a & ~b).sum()
    assert mcnemar_exact_p(15000, 15000) == 1.0 and mcnemar_exact_p(20000, 10000) < 1e-300  # fast at 30k pairs
    # a published example (Bentur et al. 2009, 1/1/7/12 pairs; Fagerland et al.'s contingencytables, Newcombe's
    # square-and-add interval): [-0.507, -0.026]
    assert newcombe_paired_interval(1, 1, 7, 12) == pytest.approx([-0.5069, -0.0256], abs=1e-4)
    # no discordant pair: a narrow interval around 0, not the point [0, 0]; all discordant one way: within [-1, 1]
    for counts in ((300, 0, 0, 700), (50, 0, 0, 50)):
        low, high = newcombe_paired_interval(*counts)
        assert low < 0 < high < 0.03 and low == pytest.approx(-high)
    for counts in ((0.3, 0.1, 0.05, 0.55), (-1, 2, 3, 4), (0, 0, 0, 0), (True, 1, 1, 1)):
        with pytest.raises(ValueError, match="four counts of pairs"):
            newcombe_paired_interval(*counts)
    assert paired_difference([True] * 3, [False] * 3)["interval"][1] <= 1.0
    # a model folder's robustness.json holds a list of reports: RobustnessReport.load says how to read it
    (tmp_path / "robustness.json").write_text("[{}, {}]")
    with pytest.raises(ValueError, match="holds 2 reports.*load_reports"):
        RobustnessReport.load(tmp_path / "robustness.json")


def save_many(report: RobustnessReport, path: Path, times: int) -> None:
    for _ in range(times):
        report.save(path)


def test_concurrent_saves_always_leave_valid_json(tmp_path):
    x, y = brightness_problem(8)
    report = evaluate_robustness(BrightnessModel(0.0), (x, y), ["clean"], **QUIET)
    path = tmp_path / "report.json"
    report.save(path)
    context = multiprocessing.get_context("fork")  # the test process's imports: starts in milliseconds
    writers = [context.Process(target=save_many, args=(report, path, 50)) for _ in range(2)]
    for writer in writers:
        writer.start()
    reads = 0
    while any(w.is_alive() for w in writers):
        assert RobustnessReport.from_json(path.read_text()).per_example == report.per_example
        reads += 1
    for writer in writers:
        writer.join()
    assert [w.exitcode for w in writers] == [0, 0] and reads > 0
    assert json.loads(path.read_text())["clean_accuracy"] == report.clean_accuracy
    assert not list(tmp_path.glob(".report.json.*.tmp"))  # no temporary file left behind
