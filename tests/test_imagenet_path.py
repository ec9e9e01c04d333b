"""The paper's ImageNet path at toy size, as one job: `training/configs/imagenet_resnet50_mixacm.yaml` with only sizes
overridden, a streamed dataset in the Hub's ImageNet-1k schema, a teacher converted from a `robustness`-library
checkpoint by `training/convert_teacher.py`, 2 processes, through to the card."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from PIL import Image
from test_scale_out import two_cpu_processes
from test_teachers import robustness_checkpoint
from transformers import ResNetConfig

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NUM_CLASSES = 1000
N_VALIDATION = 8


def jpeg(rng: np.random.Generator, width: int, height: int) -> dict:
    """A JPEG of smooth random colours, as the Hub's parquet files store images (bytes, no path)."""
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((width, height), Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return {"bytes": buffer.getvalue(), "path": None}


@pytest.fixture(scope="module")
def imagenet_like(tmp_path_factory) -> Path:
    """ILSVRC/imagenet-1k's schema (`image`, `label` with the 1000 class names) in its layout (`data/train-*`,
    `data/validation-*` parquet shards): 32 training JPEGs in 4 shards and 8 validation JPEGs, of varied sizes and
    aspect ratios (portrait, landscape, smaller and larger than 224 px)."""
    root = tmp_path_factory.mktemp("imagenet-like")
    names = [f"n{index:08d}" for index in range(NUM_CLASSES)]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names)})
    rng = np.random.default_rng(0)
    sizes = [(500, 375), (375, 500), (160, 120), (240, 320), (800, 600), (300, 300), (180, 360), (640, 427)]

    def split(n: int, offset: int) -> datasets.Dataset:
        images = [jpeg(rng, *sizes[(offset + i) % len(sizes)]) for i in range(n)]
        labels = [int(label) for label in rng.integers(0, NUM_CLASSES, n)]
        return datasets.Dataset.from_dict({"image": images, "label": labels}, features)

    train, validation = split(32, 0), split(N_VALIDATION, 3)
    for shard in range(4):
        train.shard(4, shard, contiguous=True).to_parquet(root / "data" / f"train-0000{shard}-of-00004.parquet")
    validation.to_parquet(root / "data" / "validation-00000-of-00001.parquet")
    return root


@pytest.fixture(scope="module")
def imagenet_run(imagenet_like, tmp_path_factory) -> Path:
    """The job: a random-weight `robustness`-library ResNet-50 checkpoint converted by the script, a small ResNet
    config folder as the student (built from its config, as the config builds microsoft/resnet-50), 2 steps on 2
    processes; returns its output folder."""
    torchvision = pytest.importorskip("torchvision")
    root = tmp_path_factory.mktemp("imagenet-run")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    torch.manual_seed(0)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    checkpoint = root / "imagenet_linf_4.pt"
    torch.save(robustness_checkpoint(torchvision.models.resnet50(num_classes=NUM_CLASSES), mean, std), checkpoint)
    convert = [sys.executable, "training/convert_teacher.py", checkpoint, "--arch", "robustness-resnet50"]
    subprocess.run([*map(str, convert), "--output", str(root / "teacher")], cwd=REPO, env=env, check=True)
    ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1], layer_type="basic", num_labels=NUM_CLASSES
    ).save_pretrained(root / "student")
    launcher = two_cpu_processes()
    command = [
        *launcher, "training/run_mixacm.py", "--config", "training/configs/imagenet_resnet50_mixacm.yaml",
        "--use_cpu", "true", "--dataset", imagenet_like, "--teacher", root / "teacher", "--student", root / "student",
        "--output_dir", root / "out", "--max_steps", 2, "--warmup_steps", 1, "--per_device_train_batch_size", 4,
        "--per_device_eval_batch_size", 4, "--eval_n", N_VALIDATION, "--eval_batch_size", 4,
        "--dataloader_num_workers", 1, "--logging_steps", 1, "--disable_tqdm", "true",
    ]  # fmt: skip
    result = subprocess.run(list(map(str, command)), cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    return root / "out"


def test_imagenet_config_runs_as_one_job_to_its_card(imagenet_run):
    """Trained on 2 processes from the streamed ImageNet-schema data with the converted teacher, then evaluated at
    4/255 with PGD-10/50/100 and the sweep's 2/255 column, every validation image recorded, the card written."""
    summary = json.loads((imagenet_run / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 2 and summary["method"] == "mixacm"
    assert summary["hyperparameters"]["alpha_acm"] == 5000 and summary["hyperparameters"]["mixup_alpha"] == 0.2
    config = json.loads((imagenet_run / "config.json").read_text())
    assert config["model_type"] == "resnet" and len(config["id2label"]) == NUM_CLASSES
    assert config["id2label"]["7"] == "n00000007"  # the dataset's label names
    (report,) = json.loads((imagenet_run / "robustness.json").read_text())
    assert report["eps"] == pytest.approx(4 / 255) and report["processes"] == 2
    assert list(report["attacks"]) == ["clean", "pgd-10", "pgd-50", "pgd-100"]
    assert report["per_example"]["index"] == list(range(N_VALIDATION))
    sweep = report["eps_sweep"]
    assert sweep["eps"] == pytest.approx([0, 2 / 255, 4 / 255])
    assert all(len(values) == 3 and None not in values for values in sweep["robust_accuracy"].values())
    for name in ("pgd-10", "pgd-50", "pgd-100"):  # the sweep's 4/255 point is the main evaluation's
        assert sweep["robust_accuracy"][name][2] == report["robust_accuracy"][name]
    card = ModelCard.load(imagenet_run / "README.md")
    results = {(result.metric_config, result.metric_value) for result in card.data.eval_results}
    assert ("pgd-100", round(100 * report["robust_accuracy"]["pgd-100"], 2)) in results
    # the card's sweep table: the 2/255 column beside the 4/255 one, from the same records
    assert "| Evaluation | 0/255 | 2/255 | 4/255 |" in card.text
    for name in ("pgd-10", "pgd-50", "pgd-100"):
        row = [f"{100 * value:.2f}" for value in sweep["robust_accuracy"][name]]
        assert f"| {name.upper()} | {' | '.join(row)} |" in card.text
