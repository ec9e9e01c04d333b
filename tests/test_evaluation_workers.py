"""Worker processes (`evaluate_robustness(..., workers=N)`): the same batches and seeds as one process, so the same
per-example verdicts; impossible settings refused before any work."""

import sys

import pytest
import torch
from torch import nn

from mixacm_hf.robustness import evaluate_robustness


class PooledLinear(nn.Module):
    """Logits linear in 4x4-average-pooled pixels: margins spread widely, so at 8/255 some examples break at once and
    others survive every AutoAttack component (each then runs on them)."""

    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.pool = nn.AvgPool2d(8)
        self.linear = nn.Linear(3 * 4 * 4, 10)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(10, 48, generator=generator))
            self.linear.bias.copy_(torch.randn(10, generator=generator) * 0.2)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.linear(self.pool(pixel_values).flatten(1))


@pytest.fixture(scope="module")
def robust_ish():
    """The model and 12 images (4x4 blocks of random colour) it classifies correctly by construction (labels are its
    own clean predictions)."""
    model = PooledLinear().eval()
    blocks = torch.rand(12, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    x = blocks.repeat_interleave(8, 2).repeat_interleave(8, 3)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


def test_workers_give_the_verdicts_of_one_process(robust_ish):
    model, x, y = robust_ish
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one process at the workers' thread count: the same arithmetic
    try:
        reports = {
            workers: evaluate_robustness(
                model, (x, y), ["clean", "pgd-10", "autoattack"], batch_size=6, device="cpu", progress=False,
                workers=workers, eps_sweep=[0, 8 / 255],
            )
            for workers in (1, 2)
        }  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    plain, parallel = reports[1], reports[2]
    assert 0 < plain.robust_accuracy["autoattack"] < 1  # some examples broke, the others met every component
    assert parallel.per_example == plain.per_example
    assert parallel.eps_sweep == plain.eps_sweep
    assert (plain.processes, parallel.processes) == (1, 2)
    assert all(seconds > 0 for seconds in parallel.seconds.values())


@pytest.mark.parametrize(
    ("workers", "device", "message"),
    [(0, "cpu", "positive integer"), (1.5, "cpu", "positive integer"), (2, "cuda", "the device is cuda")],
)
def test_impossible_workers_are_refused_before_any_work(robust_ish, workers, device, message):
    model, x, y = robust_ish
    with pytest.raises(ValueError, match=message) as refusal:
        evaluate_robustness(model, (x, y), ["autoattack"], device=device, progress=False, workers=workers)
    assert f"workers={workers}" in str(refusal.value)


def test_no_more_workers_than_batches_are_counted(robust_ish):
    model, x, y = robust_ish
    report = evaluate_robustness(model, (x, y), ["clean", "pgd-2"], batch_size=6, device="cpu", progress=False,
                                 workers=4, eps_sweep=[])  # fmt: skip
    assert report.processes == 2  # 12 images in batches of 6
    single = evaluate_robustness(model, (x, y), ["clean", "pgd-2"], batch_size=12, device="cpu", progress=False,
                                 workers=2, eps_sweep=[])  # fmt: skip
    assert single.processes == 1 and single.per_example == report.per_example


def test_a_model_class_another_process_cannot_import_is_refused_before_any_attack(robust_ish, monkeypatch):
    model, x, y = robust_ish

    class Interactive(PooledLinear):  # as if typed at `python -c` or in a notebook: in a __main__ without a file
        pass

    Interactive.__module__, Interactive.__qualname__ = "__main__", "Interactive"
    main = sys.modules["__main__"]
    monkeypatch.setattr(main, "Interactive", Interactive, raising=False)
    monkeypatch.setattr(main, "__file__", None, raising=False)
    with pytest.raises(ValueError, match="workers=2: the model cannot be sent to worker processes .*Interactive.*"
                       "__main__ without a file"):  # fmt: skip
        evaluate_robustness(Interactive().eval(), (x, y), ["clean", "pgd-2"], batch_size=6, device="cpu",
                            progress=False, workers=2)  # fmt: skip
