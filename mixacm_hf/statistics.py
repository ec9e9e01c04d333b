"""The project's statistics, used by reports, the leaderboard and the benchmarks: Wilson intervals of one accuracy,
paired comparisons of two on the same examples (Newcombe's interval of the difference, the exact McNemar p, the
sanity checks' "higher beyond noise"), and the t interval of a mean difference (over images or training seeds)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy
from scipy.stats import binomtest, ttest_1samp


def wilson_interval(successes: int, n: int, z: float = 1.96) -> list[float]:
    """Wilson score interval [low, high] for a binomial proportion (95% for z = 1.96)."""
    if n == 0:
        return [0.0, 1.0]
    p = successes / n
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, center - half), min(1.0, center + half)]


def mcnemar_exact_p(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: binomial test of min(only_a, only_b) in only_a + only_b trials at 1/2
    (`scipy.stats.binomtest`); 1.0 without discordant pairs.

    Raises:
        ValueError: a negative or non-integer count.
    """
    counts = (only_a, only_b)
    if not all(isinstance(count, numbers.Integral) and not isinstance(count, bool) and count >= 0 for count in counts):
        raise ValueError(f"McNemar needs two counts of discordant pairs >= 0, got {only_a!r} and {only_b!r}.")
    only_a, only_b = int(only_a), int(only_b)
    if only_a + only_b == 0:
        return 1.0
    return float(binomtest(min(only_a, only_b), only_a + only_b, 0.5).pvalue)


def discordant(first: Sequence[bool], second: Sequence[bool]) -> tuple[int, int]:
    """(pairs correct only under `first`, only under `second`) of paired correctness flags (bools or a bool tensor).

    Raises:
        ValueError: flags of different lengths.
    """
    if len(first) != len(second):
        raise ValueError(f"Paired flags must have the same length, got {len(first)} and {len(second)}.")
    pairs = list(zip((bool(a) for a in first), (bool(b) for b in second), strict=True))
    return sum(a and not b for a, b in pairs), sum(b and not a for a, b in pairs)


def mcnemar_p_value(first: Sequence[bool], second: Sequence[bool]) -> float:
    """Exact two-sided McNemar p-value of paired correctness flags (`mcnemar_exact_p` of their `discordant` counts;
    McNemar, 1947). 1.0 when no pair is discordant."""
    return mcnemar_exact_p(*discordant(first, second))


def significantly_higher(first: Sequence[bool], second: Sequence[bool], z: float = 1.96) -> tuple[bool, str]:
    """Whether the accuracy of `first` exceeds that of `second` beyond noise, from paired correctness flags: with
    n_ab pairs correct only under the first and n_ba only under the second, n_ab - n_ba > z * sqrt(n_ab + n_ba)
    (McNemar's normal approximation; one-sided at z). Returns the verdict and the counts in words."""
    only_first, only_second = discordant(first, second)
    detail = f"{only_first} examples correct only under the first, {only_second} only under the second"
    return only_first - only_second > z * math.sqrt(only_first + only_second), detail


def t_interval(values: Sequence[float]) -> tuple[list[float] | None, float | None]:
    """The 95% t interval of the mean of `values` (differences in [-1, 1], so clipped to it) and the two-sided p of
    mean 0 (`scipy.stats.ttest_1samp`). A sample without spread has no interval (a zero-width one would claim a
    certainty a few identical values cannot give); its p is the exact sign test's (2^(1-n) when every value has
    the same sign, 1 when all are 0). Fewer than two values: (None, None)."""
    if len(values) < 2:
        return None, None
    if len(set(values)) == 1:
        return None, 1.0 if values[0] == 0 else min(1.0, 2 * 0.5 ** len(values))
    test = ttest_1samp(values, 0.0)
    interval = test.confidence_interval(0.95)
    return [max(-1.0, float(interval.low)), min(1.0, float(interval.high))], float(test.pvalue)


def _check_z(z: float) -> None:
    if isinstance(z, bool) or not isinstance(z, numbers.Real) or not math.isfinite(z) or z < 1:
        raise ValueError(
            f"z must be a finite normal quantile >= 1 (1.96 for a 95% interval; not a confidence level), got {z!r}."
        )


def newcombe_paired_interval(
    both: int, only_first: int, only_second: int, neither: int, z: float = 1.96
) -> list[float]:
    """Interval for the difference of two paired proportions, first - second (95% for z = 1.96): Newcombe's hybrid
    score interval (Newcombe, Statistics in Medicine 1998, method 10, as in Altman et al., Statistics with Confidence,
    and Fagerland et al.'s `contingencytables`), built from the Wilson intervals of both proportions and the phi
    correlation of the 2x2 table of pairs, shrunk by N/2 when positive. It stays in [-1, 1] and does not collapse to a
    point when no pair is discordant. Counts of pairs: both correct, only the first, only the second, neither.

    Raises:
        ValueError: a count that is no integer >= 0, no pair at all, or z as `paired_difference`.
    """
    _check_z(z)
    counts = (both, only_first, only_second, neither)
    if not all(isinstance(c, numbers.Integral) and not isinstance(c, bool) and c >= 0 for c in counts) or not any(
        counts
    ):
        raise ValueError(f"Newcombe's interval needs four counts of pairs (integers >= 0, not all 0), got {counts}.")
    n = both + only_first + only_second + neither
    p1, p2 = (both + only_first) / n, (both + only_second) / n
    (l1, u1), (l2, u2) = wilson_interval(both + only_first, n, z), wilson_interval(both + only_second, n, z)
    margins = (both + only_first) * (only_second + neither) * (both + only_second) * (only_first + neither)
    cross = both * neither - only_first * only_second
    if not margins or 0 <= cross <= n / 2:
        phi = 0.0
    else:
        phi = (cross - n / 2 if cross > 0 else cross) / math.sqrt(margins)
    below = math.sqrt(max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0.0))
    above = math.sqrt(max((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2, 0.0))
    return [max(-1.0, p1 - p2 - below), min(1.0, p1 - p2 + above)]


def paired_difference(first: Sequence[bool], second: Sequence[bool], z: float = 1.96) -> dict[str, Any]:
    """Accuracy of `first` minus `second` on paired correctness flags (one per example, the same examples in the
    same order): `difference`, its `interval` (`newcombe_paired_interval`; 95% for z = 1.96), the exact McNemar
    two-sided `p_value`, `n`, both accuracies and the discordant counts. Fractions, not percent.

    Raises:
        ValueError: no pairs, lists of different lengths, a flag that is not a bool, or z not a finite number >= 1.
    """
    _check_z(z)
    if len(first) == 0 or len(first) != len(second):
        raise ValueError(f"A paired difference needs two equally long, non-empty lists of flags ({len(first)} and "
                         f"{len(second)} given).")  # fmt: skip
    bad = next((flag for flag in (*first, *second) if not isinstance(flag, bool | numpy.bool_)), None)
    if bad is not None:
        raise ValueError(f"Correctness flags must be True or False (bool or numpy.bool_), got {bad!r}.")
    first, second = [bool(flag) for flag in first], [bool(flag) for flag in second]
    n = len(first)
    only_first, only_second = discordant(first, second)
    both = sum(a and b for a, b in zip(first, second))
    difference = (only_first - only_second) / n
    return {
        "n": n, "accuracy": sum(first) / n, "other_accuracy": sum(second) / n, "difference": difference,
        "interval": newcombe_paired_interval(both, only_first, only_second, n - both - only_first - only_second, z),
        "only_this_correct": only_first, "only_other_correct": only_second,
        "p_value": mcnemar_exact_p(only_first, only_second),
    }  # fmt: skip
