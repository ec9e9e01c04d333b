"""The evaluation script at scale: resuming after a kill, and sharding over processes with torchrun."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mixacm_hf.robustness import RobustnessReport
from mixacm_hf.robustness.batches import KILL_AFTER_BATCHES
from mixacm_hf.robustness.registry import AttackSpec

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "training" / "evaluate_robustness.py"
sys.path.insert(0, str(REPO))
from training.evaluate_robustness import main as evaluate_main  # noqa: E402

N_EXAMPLES, BATCH_SIZE = 21, 4  # 6 batches, the last one short; 21 is not divisible by 2 x 4
BATCHES = 6


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, list[str]]:
    """A tiny WRN folder, a 24-image parquet split and the command-line arguments that evaluate it."""
    import datasets
    from PIL import Image

    from mixacm_hf import WideResNetConfig, WideResNetForImageClassification

    root = tmp_path_factory.mktemp("scale")
    torch.manual_seed(0)
    WideResNetForImageClassification(WideResNetConfig.from_name("wrn-10-1", num_labels=10)).save_pretrained(
        root / "model"
    )
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (24, 32, 32, 3), generator=generator, dtype=torch.uint8)
    split = datasets.Dataset.from_dict(
        {"img": [Image.fromarray(image.numpy()) for image in images], "label": list(range(10)) * 2 + [0, 1, 2, 3]}
    ).cast_column("img", datasets.Image())
    split.to_parquet(str(root / "data" / "test-00000-of-00001.parquet"))
    args = ["--model", str(root / "model"), "--dataset", str(root / "data"), "--attacks", "clean,fgsm,pgd-2"]
    args += ["--n_examples", str(N_EXAMPLES), "--batch-size", str(BATCH_SIZE), "--device", "cpu"]
    return root, args


@pytest.fixture(scope="module")
def uninterrupted(setup) -> RobustnessReport:
    root, args = setup
    return evaluate_main([*args, "--output", str(root / "uninterrupted.json")])


def script_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **extra}


def test_killed_evaluation_resumes_without_rerunning_finished_batches(setup, uninterrupted, monkeypatch):
    root, args = setup
    output = root / "resumed.json"
    partial = root / "resumed.json.partial"
    # the clean pass (6 batches) and FGSM's first 2 batches are saved, then the process is SIGKILLed
    killed = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--output", str(output)],
        env=script_env(**{KILL_AFTER_BATCHES: str(BATCHES + 2)}),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not output.exists() and len(list(partial.glob("*-batch*.json"))) == BATCHES + 2

    calls = []
    original = AttackSpec.run

    def counted(spec, model, x, y, eps, norm, seed):
        calls.append((spec.name, eps, seed))
        return original(spec, model, x, y, eps, norm, seed)

    monkeypatch.setattr(AttackSpec, "run", counted)
    resumed = evaluate_main([*args, "--output", str(output)])
    assert resumed.per_example == uninterrupted.per_example
    assert RobustnessReport.load(output).per_example == uninterrupted.per_example
    eps = resumed.eps
    assert not [call for call in calls if call[0] == "clean"]  # the finished clean pass is not re-run
    assert sorted(seed for name, e, seed in calls if name == "fgsm" and e == eps) == [2, 3, 4, 5]  # batches 2..5
    assert len([call for call in calls if call[0] == "pgd-2"]) == BATCHES
    assert not partial.exists()


def test_resume_refuses_progress_of_other_settings(setup):
    root, args = setup
    partial = root / "other.json.partial"
    evaluate_main([*args, "--output", str(root / "other.json")])
    partial.mkdir()
    (partial / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="other settings .* delete the folder"):
        evaluate_main([*args, "--output", str(root / "other.json")])


def test_torchrun_two_processes_give_the_records_of_one(setup, uninterrupted):
    root, args = setup
    output = root / "sharded.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(SCRIPT)]
    result = subprocess.run(
        [*command, *args, "--output", str(output)], env=script_env(), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sharded = RobustnessReport.load(output)
    assert sharded.n_examples == N_EXAMPLES and sharded.processes == 2 and uninterrupted.processes == 1
    assert sharded.per_example == uninterrupted.per_example
    assert sharded.robust_accuracy == uninterrupted.robust_accuracy
    assert result.stdout.count("Wrote ") == 1  # one report, written by rank 0
