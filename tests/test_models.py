"""WideResNet models: shapes, parameter counts, save/load (local classes and trust_remote_code), pipeline."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from PIL import Image
from transformers import AutoModel, AutoModelForImageClassification, pipeline

from mixacm_hf import WideResNetConfig, WideResNetForImageClassification, WideResNetModel


@pytest.mark.parametrize(
    "name, widths, params",
    [("wrn-16-2", [16, 32, 64, 128], 691_674), ("wrn-28-10", [16, 160, 320, 640], 36_479_194)],
)
def test_hidden_states_and_parameter_counts(name, widths, params):
    model = WideResNetForImageClassification(WideResNetConfig.from_name(name, num_labels=10)).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 32, 32), output_hidden_states=True)
    assert out.logits.shape == (2, 10)
    assert [tuple(h.shape) for h in out.hidden_states] == [
        (2, widths[0], 32, 32),
        (2, widths[1], 32, 32),
        (2, widths[2], 16, 16),
        (2, widths[3], 8, 8),
    ]
    assert sum(p.numel() for p in model.parameters()) == params


def test_wrn_34_10_parameter_count():
    with torch.device("meta"):
        model = WideResNetForImageClassification(WideResNetConfig.from_name("wrn-34-10", num_labels=10))
    assert abs(sum(p.numel() for p in model.parameters()) / 1e6 - 46.2) < 0.05


def test_config_names_and_validation():
    config = WideResNetConfig.from_name("dm-wrn-28-10", num_labels=100)
    assert (config.depth, config.widen_factor, config.variant, config.activation) == (28, 10, "dm", "swish")
    assert config.num_labels == 100
    with pytest.raises(ValueError, match="6n \\+ 4"):
        WideResNetConfig(depth=20)
    with pytest.raises(ValueError, match="wrn-DEPTH-WIDTH"):
        WideResNetConfig.from_name("resnet-50")


def test_normalisation_inside_and_loss(tiny_wrn):
    model = tiny_wrn()
    x = torch.rand(4, 3, 32, 32)
    labels = torch.tensor([0, 1, 2, 3])
    out = model(x, labels=labels)
    assert torch.allclose(out.loss, torch.nn.functional.cross_entropy(out.logits, labels))
    normalised = model.wide_resnet.normalization(x)
    mean = torch.tensor(model.config.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(model.config.image_std).view(1, 3, 1, 1)
    assert torch.allclose(normalised, (x - mean) / std)


def test_wrong_image_size_is_a_clear_error(tiny_wrn):
    with pytest.raises(ValueError, match="Resize the images to 32x32"):
        tiny_wrn()(torch.rand(1, 3, 64, 64))


def test_save_load_identical_logits_and_automodel_backbone(tmp_path, tiny_wrn):
    model = tiny_wrn("wrn-16-1")
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and (tmp_path / "preprocessor_config.json").exists()
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModel"] == "modeling_wide_resnet.WideResNetModel"
    x = torch.rand(3, 3, 32, 32)
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(loaded(x).logits, model(x).logits)
        backbone = AutoModel.from_pretrained(tmp_path).eval()
        assert isinstance(backbone, WideResNetModel)
        out = backbone(x, output_hidden_states=True)
        assert torch.equal(out.pooler_output, model.wide_resnet(x).pooler_output)
        assert len(out.hidden_states) == 4


REMOTE_CODE_SCRIPT = textwrap.dedent(
    """
    import sys, json, importlib.abc
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "mixacm_hf" or name.startswith("mixacm_hf."):
                raise ImportError("mixacm_hf is blocked in this process")
    sys.meta_path.insert(0, Block())
    import torch
    from transformers import AutoModel, AutoModelForImageClassification, pipeline
    from PIL import Image
    folder = sys.argv[1]
    x = torch.load(sys.argv[2])
    model = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True).eval()
    backbone = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    classify = pipeline("image-classification", model=folder, trust_remote_code=True)
    with torch.no_grad():
        logits = model(x).logits
        pooled = backbone(x).pooler_output
    result = classify(Image.new("RGB", (32, 32), (200, 30, 30)))
    assert "mixacm_hf" not in sys.modules
    print(json.dumps({"logits": logits.tolist(), "pooled": pooled.tolist(), "backbone": type(backbone).__name__,
                      "top": result[0]["label"]}))
    """
)


def load_without_package(folder, x: torch.Tensor, tmp_path) -> dict:
    """REMOTE_CODE_SCRIPT's results for `folder` on inputs `x`, from a process that cannot import mixacm_hf."""
    torch.save(x, tmp_path / "x.pt")
    script = tmp_path / "load.py"
    script.write_text(REMOTE_CODE_SCRIPT)
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    done = subprocess.run(
        [sys.executable, str(script), str(folder), str(tmp_path / "x.pt")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_trust_remote_code_without_package(tmp_path, tiny_wrn):
    model = tiny_wrn("wrn-10-1")
    model.config.id2label = {i: f"class_{i}" for i in range(10)}
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    x = torch.rand(2, 3, 32, 32)
    result = load_without_package(folder, x, tmp_path)
    with torch.no_grad():
        assert torch.allclose(torch.tensor(result["logits"]), model(x).logits, atol=1e-6)
        assert torch.allclose(torch.tensor(result["pooled"]), model.wide_resnet(x).pooler_output, atol=1e-6)
    assert result["backbone"] == "WideResNetModel"
    assert result["top"].startswith("class_")


def test_pipeline_classifies_pil_image(tmp_path, tiny_wrn):
    model = tiny_wrn("wrn-10-1")
    model.config.id2label = {i: name for i, name in enumerate("abcdefghij")}
    model.save_pretrained(tmp_path)
    classify = pipeline("image-classification", model=str(tmp_path))
    image = Image.new("L", (48, 40), 128)  # grayscale and the wrong size: the processor converts and resizes
    result = classify(image, top_k=3)
    assert len(result) == 3 and result[0]["score"] >= result[1]["score"]
    pixel = torch.full((1, 3, 32, 32), 128 / 255)
    with torch.no_grad():
        expected = model(pixel).logits.softmax(-1)[0]
    assert result[0]["label"] == model.config.id2label[int(expected.argmax())]
    assert abs(result[0]["score"] - float(expected.max())) < 1e-3
