"""Shared test fixtures: paths to ../shared data, tiny models, offline mode."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
CIFAR10 = REPO.parent / "shared" / "datasets" / "cifar10"


@pytest.fixture(scope="session")
def cifar10_path() -> Path:
    if not (CIFAR10 / "plain_text").is_dir():
        pytest.skip(f"CIFAR-10 copy not found at {CIFAR10} (the repo expects ../shared/datasets/cifar10 beside it)")
    return CIFAR10


@pytest.fixture
def tiny_wrn():
    """Factory for small WideResNet classifiers in eval mode."""
    import torch

    from mixacm_hf import WideResNetConfig, WideResNetForImageClassification

    def make(name: str = "wrn-10-1", num_labels: int = 10, seed: int = 0, **kwargs):
        torch.manual_seed(seed)
        return WideResNetForImageClassification(
            WideResNetConfig.from_name(name, num_labels=num_labels, **kwargs)
        ).eval()

    return make


@pytest.fixture(scope="module")
def single_thread():
    """One torch thread for a module (`pytestmark = pytest.mark.usefixtures("single_thread")`): attacks on a busy
    2-core machine spin-wait with two threads and run ~10x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
