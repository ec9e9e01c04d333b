"""benchmarks/data_throughput.py --parts imagenet: the streamed 224-px pipeline's per-core figure, the GPU side with
its source, the cores needed per GPU; the keys of the other part already in the file are kept."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> dict:
    output = tmp_path_factory.mktemp("data_throughput") / "data_throughput.json"
    output.write_text(json.dumps({"training_step_images_per_second": 160.91}))  # a key of the CIFAR part
    command = [sys.executable, "benchmarks/data_throughput.py", "--parts", "imagenet", "--imagenet_images", "24",
               "--imagenet_batch_size", "8", "--imagenet_batches", "2", "--output", str(output)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    subprocess.run(command, cwd=REPO, env=env, check=True, capture_output=True, timeout=600)
    return json.loads(output.read_text())


def test_the_imagenet_part_is_added_and_the_other_keys_kept(measured):
    assert measured["training_step_images_per_second"] == 160.91
    part = measured["imagenet_224"]
    assert part["batch_shape"] == [8, 3, 224, 224] and part["threads"] == 1
    assert part["images_per_second_per_core"] > 0 and part["jpeg_decode_images_per_second_per_core"] > 0
    jpegs = part["generated_jpegs"]
    assert 250 < jpegs["mean_width"] < 600 and 200 < jpegs["mean_height"] < 500  # around 400 x 350
    assert 30 < jpegs["mean_kilobytes"] < 250  # ImageNet's training JPEGs: ~110 KB on average


def test_cores_needed_is_the_gpu_side_over_the_per_core_figure(measured):
    part = measured["imagenet_224"]
    side = part["gpu_side"]
    gpu = side["gpu_resnet50_training"]
    assert gpu["images_per_second"] == 2470 and "github.com/NVIDIA/DeepLearningExamples" in gpu["source"]
    cost = side["mixacm_step_cost_over_training_step"]
    assert cost == pytest.approx(4 / 3, abs=1e-3)  # a teacher forward is ~1/3 of a training step
    assert side["gpu_mixacm_images_per_second"] == pytest.approx(2470 / cost, rel=1e-3)
    cores = side["gpu_mixacm_images_per_second"] / part["images_per_second_per_core"]
    assert side["cores_needed_per_gpu"] == pytest.approx(cores, rel=0.01, abs=0.005)  # rounded to 2 decimals
    assert side["device_cores_feed_images_per_second"] == pytest.approx(16 * part["images_per_second_per_core"], 0.01)
