"""RobustBench's model zoo by name (issue 34): `robustbench:<dataset>/<threat_model>/<name>` teachers and models built
by RobustBench's own code from random-weight checkpoints written in its model directory layout, checked against
RobustBench's own `load_model` and `clean_accuracy`; stage outputs by forward hooks; provenance in summaries, cards
and converted folders; misspelt names, refused entries and missing checkpoints stop before any work."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import datasets
import numpy as np
import pytest
import timm
import torch
from huggingface_hub import constants
from PIL import Image
from torch import nn

from mixacm_hf import run
from mixacm_hf.cli import parse_with_config
from mixacm_hf.robustness import evaluate_robustness
from mixacm_hf.robustness.inputs import load_examples, load_split
from mixacm_hf.run import run_mixacm
from mixacm_hf.run_args import argument_parser
from mixacm_hf.teachers import (
    HookedClassifier,
    default_stage_modules,
    file_sha256,
    load_teacher,
    resolve_zoo_entry,
    robustbench_module,
    zoo,
)
from mixacm_hf.teachers.zoo import IMAGE_SIZES, NUM_CLASSES
from mixacm_hf.teachers.zoo_folders import save_zoo_teacher

pytestmark = pytest.mark.usefixtures("single_thread")

# spec -> (how the random checkpoint is saved, the stage modules the probe must find): three families and an ImageNet
# entry behind RobustBench's normaliser
ENTRIES = {
    "robustbench:cifar10/Linf/Ding2020MMA": ("raw", ["block1", "block2", "relu"]),  # WRN-28-4, per-image normalising
    "robustbench:cifar10/Linf/Andriushchenko2020Understanding": ("last", ["layer1", "layer2", "layer3", "layer4"]),
    "robustbench:cifar10/Linf/Sehwag2021Proxy_R18": ("module", ["layer1", "layer2", "layer3", "layer4"]),
    "robustbench:cifar10/corruptions/Hendrycks2020AugMix_ResNeXt": ("raw", ["stage_1", "stage_2", "stage_3"]),
    "robustbench:imagenet/Linf/Salman2020Do_R18": (
        "inner",
        ["model.relu", "model.layer1", "model.layer2", "model.layer3", "model.layer4"],
    ),
    "robustbench:cifar10/corruptions/Hendrycks2020AugMix_WRN": ("raw", ["block1", "block2", "relu"]),  # WRN-40-2
    # timm's ConvNeXt-T with RobustBench's ConvStem, no normaliser (its checkpoint keys unprefixed): the zoo's smallest
    # timm-backed entry with its own checkpoint (28.6M parameters, a 115 MB file); its stages are timm's feature_info
    "robustbench:imagenet/Linf/Singh2023Revisiting_ConvNeXt-T-ConvStem": (
        "raw",
        ["stages.0", "stages.1", "stages.2", "stages.3"],
    ),
}
PREACT = "robustbench:cifar10/Linf/Andriushchenko2020Understanding"
WRN = "robustbench:cifar10/corruptions/Hendrycks2020AugMix_WRN"
CONVNEXT = "robustbench:imagenet/Linf/Singh2023Revisiting_ConvNeXt-T-ConvStem"


@pytest.fixture(scope="module")
def robustbench():
    try:
        return robustbench_module()
    except ImportError as error:
        pytest.skip(f"{error}")


def write_checkpoint(model_dir: Path, spec: str, layout: str, seed: int = 0) -> Path:
    """A random-weight checkpoint of `spec` in RobustBench's layout, saved as RobustBench's checkpoints are: a raw
    state dict, under `last`, DataParallel's under `state_dict`, or an ImageNet model's weights without its
    normaliser."""
    entry, found = resolve_zoo_entry(spec)
    torch.manual_seed(seed)
    model = found["model"]()
    state_dict = model.model.state_dict() if layout == "inner" else model.state_dict()
    if layout == "module":
        state_dict = {"state_dict": {f"module.{key}": value for key, value in state_dict.items()}}
    checkpoint = {"last": state_dict} if layout == "last" else state_dict
    path = entry.checkpoint(model_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def model_dir(robustbench, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("robustbench") / "models"
    for spec, (layout, _) in ENTRIES.items():
        write_checkpoint(root, spec, layout)
    return root


def reference(spec: str, model_dir: Path) -> nn.Module:
    """RobustBench's own `load_model` of the entry."""
    entry, _ = resolve_zoo_entry(spec)
    utils = robustbench_module("robustbench.utils")
    return utils.load_model(entry.name, model_dir=model_dir, dataset=entry.dataset, threat_model=entry.threat_model)


def hooked_outputs(model: nn.Module, names: list[str], pixels: torch.Tensor) -> list[torch.Tensor]:
    """The outputs of `model`'s modules `names` on `pixels`, by forward hooks written here."""
    outputs, modules = {}, dict(model.named_modules())
    handles = [modules[n].register_forward_hook(lambda m, i, o, n=n: outputs.__setitem__(n, o)) for n in names]
    with torch.no_grad():
        model(pixels)
    for handle in handles:
        handle.remove()
    return [outputs[n] for n in names]


@pytest.mark.parametrize("spec", list(ENTRIES))
def test_zoo_entry_by_name_gives_robustbench_logits_and_hooked_stage_outputs(spec, model_dir):
    teacher = load_teacher(spec, robustbench_model_dir=model_dir)
    assert isinstance(teacher, HookedClassifier) and not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())
    assert list(teacher.stage_modules) == ENTRIES[spec][1]
    ref = reference(spec, model_dir)
    if spec == CONVNEXT:  # RobustBench's model is timm's: its stages are timm's feature_info modules
        assert type(ref).__module__ == "timm.models.convnext"
        assert [info["module"] for info in ref.feature_info] == ENTRIES[spec][1]
    size = teacher.config.image_size
    pixels = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        outputs = teacher(pixels, output_hidden_states=True)
        expected = ref(pixels)
    torch.testing.assert_close(outputs.logits, expected, rtol=0, atol=1e-5)
    assert outputs.logits.shape[1] == teacher.config.num_labels
    for state, hooked in zip(outputs.hidden_states, hooked_outputs(ref, ENTRIES[spec][1], pixels), strict=True):
        assert state.dim() == 4
        torch.testing.assert_close(state, hooked, rtol=0, atol=1e-5)
    assert teacher.provenance["sha256"] == file_sha256(resolve_zoo_entry(spec)[0].checkpoint(model_dir))


def test_stage_modules_are_chosen_by_name_and_misspelt_ones_are_named(model_dir):
    teacher = load_teacher(PREACT, robustbench_model_dir=model_dir, stage_modules=["conv1", "layer2", "layer4"])
    pixels = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        states = teacher(pixels, output_hidden_states=True).hidden_states
    for state, hooked in zip(states, hooked_outputs(teacher.model, ["conv1", "layer2", "layer4"], pixels), strict=True):
        torch.testing.assert_close(state, hooked, rtol=0, atol=0)
    with pytest.raises(ValueError, match="no module 'layer5'; closest names: layer4"):
        load_teacher(PREACT, robustbench_model_dir=model_dir, stage_modules=["layer1", "layer5"])


def test_stage_modules_hook_any_teacher(tiny_wrn, tmp_path):
    """On this project's WideResNet, hooks on its groups give the groups' own hidden states."""
    tiny_wrn().save_pretrained(tmp_path / "wrn")
    names = [f"wide_resnet.groups.{i}" for i in range(3)]
    teacher = load_teacher(tmp_path / "wrn", stage_modules=names)
    pixels = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        hooked = teacher(pixels, output_hidden_states=True)
        own = teacher.model(pixels, output_hidden_states=True)
    torch.testing.assert_close(hooked.logits, own.logits)
    for state, group in zip(hooked.hidden_states, own.hidden_states[1:], strict=True):
        torch.testing.assert_close(state, group, rtol=0, atol=0)


def test_default_stages_of_timm_models_and_token_models():
    assert default_stage_modules(timm.create_model("resnet18", num_classes=10), 32) == [
        "act1", "layer1", "layer2", "layer3", "layer4",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="no module with a \\(B, C, H, W\\) feature-map output"):
        default_stage_modules(nn.Sequential(nn.Flatten(1), nn.Linear(3 * 32 * 32, 10)), 32)
    tokens = nn.Sequential(nn.Conv2d(3, 8, 4, 4), nn.Flatten(2), nn.Linear(64, 10))  # (B, 8, 10) tokens out
    assert default_stage_modules(tokens, 32) == ["0"]  # the feature map before the tokens
    stages = nn.ModuleList([nn.Conv2d(3, 4, 3, 1, 1), nn.Conv2d(4, 4, 3, 2, 1)])

    class Net(nn.Module):  # stages in a ModuleList, which is never called itself
        def __init__(self):
            super().__init__()
            self.stages, self.head = stages, nn.Linear(4, 10)

        def forward(self, x):
            for stage in self.stages:
                x = stage(x)
            return self.head(x.mean((2, 3)))

    assert default_stage_modules(Net(), 32) == ["stages.0", "stages.1"]


def test_a_vit_whose_feature_maps_are_inside_its_patch_embedding_names_its_convolutions():
    """A ViT's only (B, C, H, W) maps are its patch embedding's, inside a token-shaped output, which the probe does not
    enter: the refusal names the model (a zoo teacher by its entry) and those convolutions, which can then be named as
    stages (it said the model had no (B, C, H, W) output at all before)."""
    torch.manual_seed(0)
    vit = timm.create_model(
        "vit_tiny_patch16_224", img_size=32, patch_size=8, embed_dim=8, depth=1, num_heads=1, num_classes=10
    )
    model = nn.Sequential(nn.Identity(), vit).eval()  # behind a normaliser, as RobustBench's ImageNet ViT entries
    spec = "robustbench:imagenet/Linf/Mo2022When_ViT-B"
    teacher = HookedClassifier(model, provenance={"spec": spec})
    pixels = torch.rand(2, 3, 32, 32)
    message = (
        f"^{spec}'s \\(B, C, H, W\\) feature maps on a 32x32 probe are all inside modules with token-shaped outputs "
        ".*\\(its convolutions with such maps: 1.patch_embed.proj\\): name the modules"
    )
    with pytest.raises(ValueError, match=message):
        teacher(pixels, output_hidden_states=True)
    with pytest.raises(ValueError, match="^Sequential's \\(B, C, H, W\\) feature maps"):
        default_stage_modules(model, 32)
    named = HookedClassifier(model, ["1.patch_embed.proj"])
    with torch.no_grad():
        [state] = named(pixels, output_hidden_states=True).hidden_states
    torch.testing.assert_close(state, hooked_outputs(model, ["1.patch_embed.proj"], pixels)[0], rtol=0, atol=0)
    assert state.shape == (2, 8, 4, 4)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("robustbench:cifar10/Linf/Gowal2020Uncovering_28_10_extr",
         "no 'robustbench:cifar10/Linf/Gowal2020Uncovering_28_10_extr' \\(closest: robustbench:cifar10/Linf/Gowal2020"
         "Uncovering_28_10_extra"),
        ("robustbench:cifar10/L2/Andriushchenko2020Understanding",
         "closest: .*robustbench:cifar10/Linf/Andriushchenko2020Understanding"),
        ("robustbench:Andriushchenko2020Understanding", "write robustbench:<dataset>/<threat_model>/<name>"),
        ("robustbench:cifar10/Linf/Chen2020Adversarial", "is an ensemble of 3 checkpoints"),
        ("robustbench:cifar10/Linf/Debenedetti2022Light_XCiT-S12", "built with timm's pretrained weights"),
        ("robustbench:imagenet/Linf/Standard_R50", "built with torchvision's pretrained weights"),
    ],
)  # fmt: skip
def test_unknown_and_unloadable_entries_are_refused_by_name(robustbench, spec, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        load_teacher(spec, robustbench_model_dir=tmp_path)


def test_a_missing_checkpoint_offline_names_the_expected_path_before_any_work(robustbench, tmp_path, monkeypatch):
    from training.evaluate_robustness import main as evaluate_main
    from training.run_mixacm import main as train_main

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    expected = str(tmp_path / "models" / "cifar10" / "Linf" / "Andriushchenko2020Understanding.pt")
    with pytest.raises(FileNotFoundError, match=f"not at '{expected}', where RobustBench expects it"):
        load_teacher(PREACT, robustbench_model_dir=tmp_path / "models")
    # the scripts refuse before loading data: the dataset does not exist, and no output folder is made
    common = ["--dataset", str(tmp_path / "no-dataset"), "--robustbench_model_dir", str(tmp_path / "models")]
    out = tmp_path / "out"
    for main, flags in (
        (train_main, ["--teacher", PREACT, "--output_dir", str(out), "--use_cpu", "true"]),
        (evaluate_main, ["--model", PREACT, "--output", str(out / "report.json")]),
    ):
        with pytest.raises(SystemExit) as exited:
            main([*flags, *common])
        assert str(exited.value.code).startswith(f"error: {PREACT}: its checkpoint is not at '{expected}'")
        assert "--robustbench_model_dir" in str(exited.value.code)
    assert not out.exists()
    with pytest.raises(SystemExit, match="closest: robustbench:cifar10/Linf/Andriushchenko2020Understanding"):
        train_main(["--teacher", PREACT[:-1], "--output_dir", str(out), "--use_cpu", "true", *common])
    assert not out.exists()


def test_the_scripts_refuse_settings_robustbench_gives_naming_their_own_flags(tmp_path):
    from training.evaluate_robustness import main as evaluate_main
    from training.run_mixacm import main as train_main

    dataset = ["--dataset", str(tmp_path / "no-dataset")]
    with pytest.raises(SystemExit, match="drop --image_mean/--image_std and --model_revision"):
        evaluate_main(["--model", PREACT, "--image_mean", "0", "0", "0", "--image_std", "1", "1", "1", *dataset])
    with pytest.raises(SystemExit, match="is built by RobustBench: drop --teacher_architecture"):
        train_main(["--teacher", PREACT, "--teacher_architecture", "standard-wrn-28-10", "--output_dir",
                    str(tmp_path / "out"), "--use_cpu", "true", *dataset])  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_a_zoo_checkpoint_that_is_no_torch_file_or_holds_other_values_is_refused_clearly(robustbench, tmp_path):
    path = resolve_zoo_entry(PREACT)[0].checkpoint(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"hello world" * 100)
    with pytest.raises(ValueError, match="the file is truncated or corrupt"):
        load_teacher(PREACT, robustbench_model_dir=tmp_path)
    torch.save({"conv1.weight": torch.zeros(1), "epoch": 3}, path)
    with pytest.raises(ValueError, match=r"entries \['epoch'\] are not tensors"):
        load_teacher(PREACT, robustbench_model_dir=tmp_path)


def test_an_absent_checkpoint_online_is_downloaded_by_robustbench(robustbench, tmp_path, monkeypatch, model_dir):
    calls = []

    def download(gdrive_id, path):  # RobustBench's downloader, without the network: copy the fixture's checkpoint
        calls.append((gdrive_id, Path(path)))
        Path(path).write_bytes(resolve_zoo_entry(PREACT)[0].checkpoint(model_dir).read_bytes())

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(robustbench_module("robustbench.utils"), "download_gdrive_new", download)
    teacher = load_teacher(PREACT, robustbench_model_dir=tmp_path / "models")
    entry, found = resolve_zoo_entry(PREACT)
    assert calls == [(found["gdrive_id"], entry.checkpoint(tmp_path / "models"))]
    assert teacher.provenance["gdrive_id"] == found["gdrive_id"]
    load_teacher(PREACT, robustbench_model_dir=tmp_path / "models")
    assert len(calls) == 1  # present now: not downloaded again


def test_a_failed_download_names_the_entry_and_the_path_and_leaves_no_partial_file(robustbench, tmp_path, monkeypatch):
    def download(gdrive_id, path):  # gdown without a network: part of the file, then requests' error
        Path(path).write_bytes(b"PK")
        raise ConnectionError("Failed to resolve 'drive.google.com'")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(robustbench_module("robustbench.utils"), "download_gdrive_new", download)
    path = resolve_zoo_entry(PREACT)[0].checkpoint(tmp_path)
    message = f"{PREACT}: downloading its checkpoint .* to '{path}' failed \\(ConnectionError: Failed to resolve"
    with pytest.raises(FileNotFoundError, match=message):
        load_teacher(PREACT, robustbench_model_dir=tmp_path)
    assert not path.exists()


def test_evaluate_robustness_by_name_matches_robustbench_clean_accuracy(model_dir, cifar10_path, tmp_path):
    from training.evaluate_robustness import main

    report = main([
        "--model", PREACT, "--robustbench_model_dir", str(model_dir), "--dataset", str(cifar10_path),
        "--n_examples", "16", "--batch_size", "8", "--attacks", "clean", "--eps_sweep", "", "--device", "cpu",
        "--output", str(tmp_path / "report.json"),
    ])  # fmt: skip
    x, y = load_examples(load_split(str(cifar10_path), "test", 32), 16)
    utils = robustbench_module("robustbench.utils")
    assert report.clean_accuracy == pytest.approx(utils.clean_accuracy(reference(PREACT, model_dir), x, y, 8))
    sha256 = file_sha256(resolve_zoo_entry(PREACT)[0].checkpoint(model_dir))
    assert report.model["name"] == PREACT and report.model["revision"] == sha256
    assert report.model["source"]["builder"].endswith("PreActResNet") and "RobustBench" in report.model["input"]


@pytest.fixture(scope="module")
def imagenet_like(tmp_path_factory) -> Path:
    """A few JPEGs of other sizes than 224 px in ILSVRC/imagenet-1k's schema and layout (`image`, `label` of 1000
    classes; `data/<split>-*.parquet`): data an ImageNet teacher is trained from at 224 px."""
    root = tmp_path_factory.mktemp("imagenet-like")
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=1000)})
    rng = np.random.default_rng(0)
    for split, sizes in (("train", [(300, 260), (260, 300), (240, 240), (320, 250)]), ("validation", [(280, 250)])):
        images = [Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).resize(size) for size in sizes]
        labels = [int(label) for label in rng.integers(0, 1000, len(sizes))]
        dataset = datasets.Dataset.from_dict({"image": images, "label": labels}, features)
        dataset.to_parquet(root / "data" / f"{split}-00000-of-00001.parquet")
    return root


# one entry of each family: its --acm_teacher_modules (None: found by the probe), the RobustBench model information
# given to it (None: none installed, as with RobustBench 1.1.1 from PyPI), and its data: CIFAR-10 at 32 px, or 224-px
# ImageNet-schema images for the ImageNet entry, whose student is a WRN-16-1 at 224 px
RUNS = {
    PREACT: (["conv1", "layer1", "layer2", "layer3"], {
        "name": "Understanding and Improving Fast Adversarial Training", "authors": "Maksym Andriushchenko, "
        "Nicolas Flammarion", "link": "https://arxiv.org/abs/2007.02617", "clean_acc": "79.84",
        "autoattack_acc": "43.93"}, "cifar10"),
    WRN: (["conv1", "block1", "block2", "relu"], None, "cifar10"),
    CONVNEXT: (None, None, "imagenet"),
}  # fmt: skip


@pytest.mark.parametrize("spec", list(RUNS))
def test_mixacm_run_from_a_zoo_teacher_names_the_entry(spec, model_dir, tmp_path, monkeypatch, request):
    modules, info, data = RUNS[spec]
    entry, _ = resolve_zoo_entry(spec)
    info_root = tmp_path / "model_info"
    if info is not None:
        (info_root / entry.dataset / entry.threat_model).mkdir(parents=True)
        (info_root / entry.dataset / entry.threat_model / f"{entry.name}.json").write_text(json.dumps(info))
    monkeypatch.setattr(zoo, "zoo_model_info", partial(zoo.zoo_model_info, root=info_root))
    out = tmp_path / "student"
    dataset = request.getfixturevalue("cifar10_path" if data == "cifar10" else "imagenet_like")
    sizes = ["--max_train_samples", "16", "--eval_n", "8", "--per_device_train_batch_size", "4"]
    if data == "imagenet":
        sizes = ["--image_size", "224", "--eval_split", "validation", "--max_train_samples", "4",
                 "--eval_n", "1", "--per_device_train_batch_size", "2"]  # fmt: skip
    argv = [
        "--teacher", spec, "--robustbench_model_dir", str(model_dir),
        *(["--acm_teacher_modules", *modules] if modules else []), "--student", "wrn-16-1", "--method", "mixacm",
        "--dataset", str(dataset), "--output_dir", str(out), "--max_steps", "2", *sizes, "--eval_attacks",
        "clean,fgsm", "--eval_eps_sweep", "", "--eval_batch_size", "8", "--use_cpu", "true", "--report_to", "none",
        "--save_strategy", "no", "--disable_tqdm", "true", "--bf16", "false",
    ]  # fmt: skip
    summary = run_mixacm(*parse_with_config(argument_parser(), argv))
    assert summary["steps"] == 2
    recorded = json.loads((out / "train_summary.json").read_text())
    sha256 = file_sha256(entry.checkpoint(model_dir))
    assert recorded["teacher"] == spec and recorded["n_train"] == int(sizes[sizes.index("--max_train_samples") + 1])
    source = recorded["teacher_source"]
    assert source["spec"] == spec and source["sha256"] == sha256 and source["model_info"] == info
    assert source["stage_modules"] == (modules or ENTRIES[spec][1])
    card = (out / "README.md").read_text()
    assert f"`{spec}`" in card and f"`{entry.dataset}/{entry.threat_model}/{entry.name}`" in card and sha256 in card
    if info is not None:
        assert "AutoAttack accuracy: 43.93%" in card and "https://arxiv.org/abs/2007.02617" in card
    else:
        assert "RobustBench model information not in the installed package" in card
        assert "AutoAttack accuracy" not in card and "found at that path" not in card  # no path: an entry
        unknown = "Its own robust accuracy is not known here (RobustBench's model information on the entry is not in"
        assert f"{unknown} the installed package)." in " ".join(card.split())
    config = json.loads((out / "config.json").read_text())
    assert len(config["id2label"]) == NUM_CLASSES[entry.dataset] and config["image_size"] == IMAGE_SIZES[entry.dataset]


def test_convert_teacher_writes_a_folder_for_a_zoo_wideresnet_and_refuses_others(model_dir, tmp_path, capsys):
    from training.convert_teacher import main

    spec = "robustbench:cifar10/corruptions/Hendrycks2020AugMix_WRN"
    main([spec, "--output", str(tmp_path / "wrn"), "--robustbench_model_dir", str(model_dir)])
    folder_teacher = load_teacher(tmp_path / "wrn")
    converted = folder_teacher.config.converted_from
    assert converted["architecture"] == "standard-wrn-40-2" and converted["source"] == spec
    assert converted["sha256"] == file_sha256(resolve_zoo_entry(spec)[0].checkpoint(model_dir))
    assert converted["robustbench"]["builder"].endswith("Hendrycks2020AugMixWRNNet")
    pixels = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(folder_teacher(pixels).logits, reference(spec, model_dir)(pixels), atol=1e-5, rtol=0)
    card = (tmp_path / "wrn" / "README.md").read_text()
    assert spec in card and converted["sha256"] in card
    for refused, message in (
        ("robustbench:cifar10/Linf/Ding2020MMA", "does not give RobustBench's logits .*Use it by its name"),
        ("robustbench:cifar10/Linf/Sehwag2021Proxy_R18", "has no Hugging Face counterpart here.*Use it by its name"),
    ):
        with pytest.raises(ValueError, match=message):
            save_zoo_teacher(refused, tmp_path / "refused", model_dir)
        assert not (tmp_path / "refused").exists()
    with pytest.raises(SystemExit):
        main([spec, "--arch", "standard-wrn-40-2", "--output", str(tmp_path / "refused")])
    assert "pass only --output (and --robustbench_model_dir)" in capsys.readouterr().err


def test_channels_last_timm_stages_are_given_as_nchw_feature_maps():
    """A Swin (timm's `output_fmt` "NHWC") gives its feature_info stages, as (B, C, H, W) maps: its channels-last
    outputs permuted, not read with H as the channel axis."""
    torch.manual_seed(0)
    swin = timm.create_model(
        "swin_tiny_patch4_window7_224", img_size=32, patch_size=2, window_size=2, embed_dim=8, depths=(1, 1, 1, 1),
        num_heads=(1, 1, 1, 1), num_classes=10,
    ).eval()  # fmt: skip
    model = nn.Sequential(nn.Identity(), swin).eval()  # behind a normaliser, as RobustBench's ImageNet entries
    names = ["1.layers.0", "1.layers.1", "1.layers.2", "1.layers.3"]
    assert default_stage_modules(model, 32) == names
    teacher = HookedClassifier(model)
    pixels = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        states = teacher(pixels, output_hidden_states=True).hidden_states
    for state, hooked, channels in zip(states, hooked_outputs(model, names, pixels), (8, 16, 32, 64), strict=True):
        assert state.shape == (2, channels, *hooked.shape[1:3])
        torch.testing.assert_close(state, hooked.permute(0, 3, 1, 2), rtol=0, atol=0)


@pytest.mark.parametrize(
    "spec, preprocessing",
    [
        ("robustbench:imagenet/Linf/Singh2023Revisiting_ConvNeXt-T-ConvStem", "BicubicRes256Crop224"),
        ("robustbench:imagenet/Linf/Mo2022When_ViT-B", "Res224"),
        ("robustbench:imagenet/Linf/Wong2020Fast", "Crop288"),
    ],
)
def test_an_entry_robustbench_preprocesses_otherwise_is_not_evaluated_on_other_inputs(
    robustbench, spec, preprocessing, tmp_path, monkeypatch
):
    """The evaluator's ImageNet pipeline (short side to 256, bilinear; crop 224) is RobustBench's `Res256Crop224`:
    entries RobustBench evaluates on other inputs are refused, naming their preprocessing, before their checkpoint is
    even looked for (there is none here); so are other image sizes than the one giving RobustBench's inputs."""
    from training.evaluate_robustness import main

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ValueError, match=f"preprocessed as '{preprocessing}'"):
        evaluate_robustness(spec, str(tmp_path / "imagenet"), ["clean"], robustbench_model_dir=tmp_path)
    with pytest.raises(SystemExit, match=f"preprocessed as '{preprocessing}'"):
        main(["--model", spec, "--dataset", str(tmp_path / "imagenet"), "--robustbench_model_dir", str(tmp_path)])
    zoo.check_zoo_preprocessing("robustbench:imagenet/Linf/Salman2020Do_R18")  # Res256Crop224: the evaluator's own
    zoo.check_zoo_preprocessing(PREACT, 32)
    for same, size in (("robustbench:imagenet/Linf/Salman2020Do_R18", 288), (PREACT, 64)):
        with pytest.raises(ValueError, match=f"at image size {size}"):
            zoo.check_zoo_preprocessing(same, size)


def test_a_zoo_teacher_is_recorded_as_robustbench_spells_it_and_read_again_for_the_transfer_attack(
    model_dir, cifar10_path, tmp_path
):
    """The entry, typed in another case, is recorded as RobustBench spells it (summary, card, reports, converted
    folders); the end-of-run transfer attack from the teacher reads it from the run's --robustbench_model_dir, as
    does the retry command printed when the evaluation fails."""
    typed = "robustbench:CIFAR10/linf/Andriushchenko2020Understanding"
    out = tmp_path / "student"
    argv = [
        "--teacher", typed, "--robustbench_model_dir", str(model_dir), "--student", "wrn-16-1", "--method", "mixacm",
        "--acm_teacher_modules", "conv1", "layer1", "layer2", "layer3", "--dataset", str(cifar10_path),
        "--output_dir", str(out), "--max_steps", "1", "--max_train_samples", "8",
        "--per_device_train_batch_size", "4", "--eval_attacks", "clean,pgd-20,transfer", "--eval_eps_sweep", "",
        "--eval_n", "4", "--eval_batch_size", "4", "--use_cpu", "true", "--report_to", "none", "--save_strategy",
        "no", "--disable_tqdm", "true", "--bf16", "false",
    ]  # fmt: skip
    model_args, data_args, training_args, eval_args = parse_with_config(argument_parser(), argv)
    summary = run_mixacm(model_args, data_args, training_args, eval_args)
    assert summary["teacher"] == PREACT
    assert json.loads((out / "train_summary.json").read_text())["teacher"] == PREACT
    [report] = summary["robustness"]
    assert report.attacks["transfer"]["source"] == PREACT
    card = (out / "README.md").read_text()
    assert f"teacher: {PREACT}" in card and typed not in card
    retry = run.retry_command(str(out), data_args, eval_args, 0, 4, str(model_dir))
    assert f"--robustbench_model_dir {model_dir}" in retry
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    evaluated = evaluate_robustness(typed, (x, y), ["clean"], robustbench_model_dir=model_dir, progress=False)
    assert evaluated.model["name"] == PREACT
    spec = "robustbench:cifar10/corruptions/Hendrycks2020AugMix_WRN"
    typed = spec.replace("cifar10/corruptions", "Cifar10/Corruptions")
    converted = save_zoo_teacher(typed, tmp_path / "wrn", model_dir)
    assert converted.config.converted_from["source"] == spec and spec in (tmp_path / "wrn" / "README.md").read_text()
