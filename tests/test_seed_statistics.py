"""The reproduction's seed statistics and paired comparisons, against hand-computed values."""

import math

import pytest

from benchmarks.seed_statistics import compare_groups, mean_std
from mixacm_hf.robustness import RobustnessReport
from mixacm_hf.robustness.report import paired_difference


def report(name: str, flags: list[bool], indices: list[int] | None = None) -> RobustnessReport:
    indices = list(range(len(flags))) if indices is None else indices
    return RobustnessReport(
        clean_accuracy=1.0, robust_accuracy={"autoattack": sum(flags) / len(flags)}, n_examples=len(flags),
        eps=8 / 255, norm="Linf", attacks={}, seconds={}, seed=0, model={"name": name},
        per_example={"index": indices, "clean": [True] * len(flags), "autoattack": flags},
    )  # fmt: skip


def test_mean_std_is_the_sample_standard_deviation():
    result = mean_std([0.29, 0.27, 0.31])
    assert result["mean"] == pytest.approx(0.29) and result["std"] == pytest.approx(0.02)
    assert mean_std([0.3])["std"] is None
    with pytest.raises(ValueError):
        mean_std([])


def test_paired_difference_by_hand():
    # 10 pairs: 4 both right, 3 only first, 1 only second, 2 both wrong
    first = [True] * 4 + [True] * 3 + [False] * 1 + [False] * 2
    second = [True] * 4 + [False] * 3 + [True] * 1 + [False] * 2
    result = paired_difference(first, second)
    assert result["difference"] == pytest.approx(0.2) and result["accuracy"] == 0.7 and result["other_accuracy"] == 0.5
    half = 1.96 * math.sqrt((4 / 10 - 0.2**2) / 10)
    assert result["interval"] == pytest.approx([0.2 - half, 0.2 + half])
    assert result["p_value"] == pytest.approx(2 * (1 + 4) / 2**4)  # exact McNemar: 2 P(X <= 1), X ~ Bin(4, 1/2)


def test_compare_groups_pairs_seeds_pools_them_and_pairs_a_single_report_with_every_seed():
    seeds = [report("a0", [True, True, False, True]), report("a1", [True, False, False, True])]
    others = [report("b0", [True, False, False, False]), report("b1", [False, False, False, True])]
    result = compare_groups(seeds, others, "autoattack")
    assert [r["difference"] for r in result["per_seed"]] == [0.5, 0.25]
    assert result["pooled"]["n"] == 8 and result["pooled"]["difference"] == pytest.approx(3 / 8)
    single = compare_groups(seeds, [report("teacher", [True, True, True, False])], "autoattack")
    assert [r["other_accuracy"] for r in single["per_seed"]] == [0.75, 0.75] and single["pooled"]["n"] == 8
    shifted = compare_groups([report("a", [True, False], [5, 6])], [report("b", [False, False, True], [6, 7, 8])],
                             "autoattack")  # fmt: skip
    assert shifted["pooled"]["n"] == 1  # only index 6 is common
    with pytest.raises(ValueError, match="Cannot pair"):
        compare_groups(seeds, [*others, others[0]], "autoattack")
    with pytest.raises(ValueError, match="no per-example"):
        compare_groups([RobustnessReport(1.0, {}, 1, 8 / 255, "Linf", {}, {}, 0)], others[:1], "autoattack")
