"""benchmarks/gpu_smoke.py at toy size on whatever device the test machine has: every field written, the MixACM steps
trained, the timings and ratios consistent with each other."""

import datetime
import json
import math

import pytest
import torch

from benchmarks.gpu_smoke import main

pytestmark = pytest.mark.usefixtures("single_thread")

STEPS, WARMUP, BATCH, AUTOATTACK_N = 2, 1, 4, 8
TOY = ["--toy", "--steps", str(STEPS), "--warmup", str(WARMUP), "--batch_size", str(BATCH), "--image_size", "64",
       "--autoattack_n", str(AUTOATTACK_N), "--autoattack_batch_size", "8",
       "--attack", "autoattack:apgd-ce"]  # fmt: skip


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[dict, dict]:
    """(returned result, the JSON file written) of one toy run of both pairs."""
    output = tmp_path_factory.mktemp("gpu_smoke") / "gpu_smoke.json"
    result = main([*TOY, "--output", str(output)])
    return result, json.loads(output.read_text())


def test_the_file_records_the_device_software_and_date(smoke):
    result, written = smoke
    assert written == json.loads(json.dumps(result))
    device = written["device"]
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert device["type"] == expected and device["torch"] == torch.__version__
    assert device["name"] and (device["name"].startswith("CPU: ") or expected == "cuda")
    age = datetime.datetime.now(datetime.timezone.utc) - datetime.datetime.fromisoformat(written["date"])
    assert datetime.timedelta(0) <= age < datetime.timedelta(minutes=30)
    assert written["toy"] is True and written["command"].startswith("python benchmarks/gpu_smoke.py --toy")
    assert list(written["pairs"]) == ["cifar10", "imagenet"]


@pytest.mark.parametrize(
    "pair, teacher, student, size, eps",
    [
        ("cifar10", "dm-wrn-16-1", "dm-wrn-10-1", 32, 8 / 255),
        ("imagenet", "toy bottleneck ResNet (robustness-resnet50 layout)", "toy bottleneck ResNet", 64, 4 / 255),
    ],
)
def test_each_pair_trains_and_its_figures_agree(smoke, pair, teacher, student, size, eps):
    measured = smoke[1]["pairs"][pair]
    assert (measured["teacher"], measured["student"], measured["image_size"]) == (teacher, student, size)
    assert measured["batch_size"] == BATCH and measured["precision"] == "bf16 autocast" and measured["channels_last"]
    seconds = measured["seconds"]
    assert set(seconds) == {"mixacm_step", "natural_step", "teacher_forward"}
    assert all(math.isfinite(value) and value > 0 for value in seconds.values())
    assert len(measured["mixacm_step_seconds"]) == STEPS
    assert measured["images_per_second"] == pytest.approx(BATCH / seconds["mixacm_step"], rel=1e-3)
    ratio = seconds["mixacm_step"] / (seconds["natural_step"] + seconds["teacher_forward"])
    assert measured["overhead_ratio"] == pytest.approx(ratio, rel=1e-3) and measured["overhead_ratio"] > 0
    # the step trained: one loss per MixACM step (warm-up + timed), all finite, and the student's weights moved
    assert len(measured["losses"]) == WARMUP + STEPS and measured["losses_finite"]
    assert all(math.isfinite(loss) and loss > 0 for loss in measured["losses"])
    assert measured["max_abs_weight_change"] > 0
    memory = measured["peak_memory"]
    assert memory["bytes"] > 2**20 and memory["gib"] == round(memory["bytes"] / 2**30, 2)
    assert memory["kind"].startswith("cuda" if torch.cuda.is_available() else "CPU: peak resident set size")
    attack = measured["autoattack"]
    assert attack["attack"] == "autoattack:apgd-ce" and attack["n_examples"] == AUTOATTACK_N
    assert attack["eps"] == pytest.approx(eps)
    assert attack["images_per_second"] == pytest.approx(AUTOATTACK_N / attack["attack_seconds"], rel=0.01)
    assert attack["clean_accuracy"] == 1.0  # labelled with the student's own predictions: every image is attacked
    assert 0 <= attack["robust_accuracy"] <= attack["clean_accuracy"]


def test_unknown_pairs_are_refused_naming_the_flag(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--pairs", "cifar100", "--output", str(tmp_path / "out.json")])
    assert "unknown --pairs ['cifar100']; choose from cifar10, imagenet" in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists()


def test_a_bad_size_is_refused_naming_its_flag(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--warmup", "0", "--output", str(tmp_path / "out.json")])
    assert "--warmup 0: must be >= 1" in capsys.readouterr().err


def test_cpu_figures_never_land_in_the_gpu_results_file(monkeypatch, tmp_path):
    """Without --output, a run on a CPU prints its figures and writes nothing: benchmarks/results/gpu_smoke.json
    holds GPU figures only."""
    import benchmarks.gpu_smoke as smoke

    monkeypatch.setattr(smoke, "RESULTS_FILE", tmp_path / "gpu_smoke.json")
    monkeypatch.setattr(smoke.torch.cuda, "is_available", lambda: False)
    result = main([*TOY, "--pairs", "cifar10"])
    assert result["device"]["type"] == "cpu" and result["pairs"]["cifar10"]["seconds"]["mixacm_step"] > 0
    assert not (tmp_path / "gpu_smoke.json").exists()
