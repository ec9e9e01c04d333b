"""The reproduction's seed statistics and paired comparisons, against hand-computed values."""

import math
import statistics

import pytest

from benchmarks.seed_statistics import claim_criteria, claim_markdown, compare_groups, format_paired, mean_std
from mixacm_hf.robustness import RobustnessReport
from mixacm_hf.statistics import paired_difference

ATTACKS = {"clean": {"type": "clean"}, "pgd-20": {"type": "pgd", "steps": 20}, "autoattack": {"type": "autoattack"}}


def report(name: str, flags: list[bool], indices: list[int] | None = None) -> RobustnessReport:
    indices = list(range(len(flags))) if indices is None else indices
    return RobustnessReport(
        clean_accuracy=1.0, robust_accuracy={"autoattack": sum(flags) / len(flags)}, n_examples=len(flags),
        eps=8 / 255, norm="Linf", attacks=ATTACKS, seconds={}, seed=0, model={"name": name},
        dataset={"name": "toy", "split": "test"},
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

    # Newcombe's hybrid score interval (1998, method 10) from the Wilson intervals of 7/10 and 5/10: here
    # AD - BC = 4 * 2 - 3 * 1 = 5 = N / 2, so the shrunk phi is 0 and the half-widths are root sums of squares
    def wilson(p, n=10, z=1.96):
        center, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        return center - half / (1 + z * z / n), center + half / (1 + z * z / n)

    (l1, u1), (l2, u2) = wilson(0.7), wilson(0.5)
    low, high = 0.2 - math.hypot(0.7 - l1, u2 - 0.5), 0.2 + math.hypot(u1 - 0.7, 0.5 - l2)
    assert result["interval"] == pytest.approx([low, high])
    assert result["p_value"] == pytest.approx(2 * (1 + 4) / 2**4)  # exact McNemar: 2 P(X <= 1), X ~ Bin(4, 1/2)


def test_compare_groups_pairs_seeds_pools_them_and_pairs_a_single_report_with_every_seed():
    seeds = [report("a0", [True, True, False, True]), report("a1", [True, False, False, True])]
    others = [report("b0", [True, False, False, False]), report("b1", [False, False, False, True])]
    result = compare_groups(seeds, others, "autoattack")
    assert [r["difference"] for r in result["per_seed"]] == [0.5, 0.25]
    # pooled over the 4 images both seeds evaluated: each image's difference averaged over the seeds
    pooled = result["pooled"]
    assert (pooled["n"], pooled["n_seeds"]) == (4, 2) and pooled["difference"] == pytest.approx(3 / 8)
    per_image = [((1 - 1) + (1 - 0)) / 2, ((1 - 0) + (0 - 0)) / 2, 0.0, ((1 - 0) + (1 - 1)) / 2]
    half = 3.182446305284263 * statistics.stdev(per_image) / 2  # t(0.975, df 3) * sd / sqrt(4)
    assert pooled["interval"] == pytest.approx([3 / 8 - half, 3 / 8 + half])
    half = 12.706204736174707 * statistics.stdev([0.5, 0.25]) / math.sqrt(2)  # t(0.975, df 1): between seeds
    assert pooled["between_seeds"] == pytest.approx([max(-1, 0.375 - half), min(1, 0.375 + half)])  # in [-1, 1]
    single = compare_groups(seeds, [report("teacher", [True, True, True, False])], "autoattack")
    assert [r["other_accuracy"] for r in single["per_seed"]] == [0.75, 0.75] and single["pooled"]["n"] == 4
    shifted = compare_groups([report("a", [True, False], [5, 6])], [report("b", [False, False, True], [6, 7, 8])],
                             "autoattack")  # fmt: skip
    assert shifted["pooled"]["n"] == 1  # only index 6 is common
    with pytest.raises(ValueError, match="Cannot pair"):
        compare_groups(seeds, [*others, others[0]], "autoattack")
    with pytest.raises(ValueError, match=r"same model more than once \(a0\)"):  # one seed counted twice
        compare_groups([seeds[0], seeds[0]], others, "autoattack")
    with pytest.raises(ValueError, match="empty group"):
        compare_groups([], others, "autoattack")
    with pytest.raises(ValueError, match="no per-example"):
        compare_groups([RobustnessReport(1.0, {}, 1, 8 / 255, "Linf", {}, {}, 0)], others[:1], "autoattack")


SEEDS_AB, ONE = {"models": ["a", "b"], "missing": []}, {"models": ["m"], "missing": []}


def _row(name: str, seconds: float, shared: bool = False, **accuracies: float) -> dict:
    return {"name": name, "train_seconds": seconds, "shared_machine": shared, **accuracies}


def test_claim_criteria_on_the_means_by_hand():
    """Each criterion from the group means; wall time from the rows trained alone (the shared-machine seed is out)."""
    groups = {"recipe": ["a", "b"], "kd": ["k"], "at": ["p"], "teacher": ["t"]}
    summary = {
        "groups": {
            "recipe": {**SEEDS_AB, "autoattack": mean_std([0.28, 0.30]), "clean": mean_std([0.70, 0.69])},
            "kd": {**ONE, "autoattack": mean_std([0.20])},
            "at": {**ONE, "autoattack": mean_std([0.33]), "clean": mean_std([0.70])},
            "teacher": {**ONE, "autoattack": mean_std([0.37])},
        }
    }
    rows = [_row("a", 1400), _row("b", 3600, shared=True), _row("p", 6000), _row("k", 1300), _row("t", 4000)]
    criteria = claim_criteria(
        summary, rows, recipe="recipe", soft_labels="kd", adversarial_training="at", teacher="teacher", groups=groups
    )
    measured = {item["criterion"]: (item["measured"], item["met"]) for item in criteria}
    assert measured["AutoAttack / teacher's AutoAttack"] == (pytest.approx(0.29 / 0.37), False)
    assert measured["AutoAttack - soft labels' AutoAttack (points)"] == (pytest.approx(9.0), True)
    assert measured["AutoAttack - PGD-7 AT's AutoAttack (points)"] == (pytest.approx(-4.0), True)
    assert measured["clean - PGD-7 AT's clean (points)"] == (pytest.approx(-0.5), False)
    assert measured["wall time / PGD-7 AT's (runs trained alone)"] == (pytest.approx(1400 / 6000), True)
    summary["criteria"] = criteria
    summary["comparisons"] = {}
    text = claim_markdown(summary, 1000, 500)
    verdict = text.splitlines()[0]
    assert "2 of the claim's 5 criteria are not met" in verdict
    assert "AutoAttack / teacher's AutoAttack" in verdict and "clean - PGD-7 AT's clean" in verdict
    assert "soft labels" not in verdict
    assert "| recipe | 2 | 69.5 +- 0.7 | - | - | 29.0 +- 1.4 |" in text


def test_a_criterion_without_its_group_is_not_yet_measured():
    none = {"models": [], "missing": ["x"]}
    summary = {"groups": {"recipe": {**ONE, "autoattack": mean_std([0.3])}, "kd": none, "at": none, "teacher": none}}
    groups = {"recipe": ["a"], "kd": [], "at": [], "teacher": []}
    criteria = claim_criteria(
        summary, [_row("a", 1)], recipe="recipe", soft_labels="kd", adversarial_training="at", teacher="teacher",
        groups=groups,
    )  # fmt: skip
    assert all(item["measured"] is None and item["met"] is None for item in criteria)
    text = claim_markdown({**summary, "criteria": criteria, "comparisons": {}}, 1000, 500)
    assert text.splitlines()[0] == "**No criterion of the claim is measured yet.**"
    assert text.count("| not yet measured |") == len(criteria)


def test_format_paired_by_hand():
    pooled = paired_difference([True, True, False, True], [False, True, False, False])
    assert pooled["difference"] == 0.5
    text = format_paired({"pooled": pooled})
    low, high = (100 * value for value in pooled["interval"])
    assert text == f"+50.0 [{low:+.1f}, {high:+.1f}], p = 0.5 (n = 4)" and low < 0 < 50 < high < 100
    assert (
        format_paired({"missing_per_example_records": ["x", "y"]})
        == "waiting for the per-example records of 2 models: x, y"
    )
    partial = format_paired({"pooled": pooled, "missing_per_example_records": ["z"]})
    assert partial.endswith("(n = 4; without z: no per-example records yet)")


def test_a_comparison_of_unknown_or_empty_groups_is_refused():
    from benchmarks.seed_statistics import claim_summary

    for groups in ({"a": ["x"]}, {"a": ["x"], "b": []}):
        with pytest.raises(ValueError, match="names groups without models"):
            claim_summary([], groups, {"a - b": ("a", "b")}, lambda name, attack: None)


def test_no_measured_criterion_is_not_called_met_and_bad_values_are_refused():
    criteria = [{"criterion": "x", "measured": None, "target": ">= 1", "met": None}]
    text = claim_markdown({"groups": {}, "comparisons": {}, "criteria": criteria}, 1000, 500)
    assert text.splitlines()[0] == "**No criterion of the claim is measured yet.**"
    from benchmarks.studies import average

    for values in ([], [None], [float("nan"), 0.5], [69.6, 70.0], [True, False], ["0.5"]):
        with pytest.raises(ValueError, match="finite accuracies"):
            mean_std(values)
        if values and None not in values:  # the studies' averages refuse the same values
            with pytest.raises(ValueError, match="finite accuracies"):
                average([{"pgd20": value} for value in values], "pgd20")


def test_a_zero_denominator_measures_nothing():
    zero = {**ONE, "autoattack": mean_std([0.0]), "clean": mean_std([0.5])}
    summary = {"groups": {"recipe": {**ONE, "autoattack": mean_std([0.3])}, "kd": zero, "at": zero, "teacher": zero}}
    groups = {"recipe": ["a"], "kd": ["k"], "at": ["p"], "teacher": ["t"]}
    rows = [_row("a", 100), _row("p", 0), _row("k", 1), _row("t", 1)]
    criteria = claim_criteria(
        summary, rows, recipe="recipe", soft_labels="kd", adversarial_training="at", teacher="teacher", groups=groups
    )
    by_name = {item["criterion"]: item for item in criteria}
    assert by_name["AutoAttack / teacher's AutoAttack"]["measured"] is None
    assert by_name["wall time / PGD-7 AT's (runs trained alone)"]["measured"] is None
    assert by_name["AutoAttack - PGD-7 AT's AutoAttack (points)"]["measured"] == pytest.approx(30.0)


def test_a_study_question_is_answered_from_its_paired_comparisons_and_only_the_columns_it_names():
    """'no' when a measured paired interval lies wholly below 0, 'yes' when every one lies wholly above, 'not
    distinguishable' when one contains 0; a comparison restricted to PGD-20 never waits for AutoAttack records."""
    from benchmarks.seed_statistics import claim_summary, paired_verdict, questions_markdown

    def attacked(name: str, pgd: list[bool], autoattack: list[bool] | None) -> RobustnessReport:
        records = {"pgd-20": pgd, **({"autoattack": autoattack} if autoattack else {})}
        return RobustnessReport(
            clean_accuracy=1.0, robust_accuracy={k: sum(v) / len(v) for k, v in records.items()},
            n_examples=len(pgd), eps=8 / 255, norm="Linf", attacks=ATTACKS, seconds={}, seed=0, model={"name": name},
            per_example={"index": list(range(len(pgd))), "clean": [True] * len(pgd), **records},
            dataset={"name": "toy", "split": "test"},
        )  # fmt: skip

    n = 400
    strong = [True] * 200 + [False] * 200  # 50%
    weak = [True] * 100 + [False] * 300  # 25%, right only where strong is: 100 discordant pairs, all one way
    close = [True] * 198 + [False] * 4 + [True] * 2 + [False] * 196  # 50%: 2 + 2 discordant pairs against strong
    reports = {
        "s": attacked("s", strong, None), "w": attacked("w", weak, weak), "t": attacked("t", strong, strong),
        "c": attacked("c", close, None),
    }  # fmt: skip
    rows = [{"name": name, "clean": 0.9, "fgsm": 0.5, "pgd20": 0.4, "autoattack": None} for name in reports]
    summary = claim_summary(
        rows, {"strong": ["s"], "weak": ["w"], "twin": ["t"], "close": ["c"]},
        {"strong - weak": ("strong", "weak", ("pgd20",)), "weak - twin": ("weak", "twin"),
         "close - strong": ("close", "strong", ("pgd20",))},
        lambda name, attack: reports[name] if attack in reports[name].per_example else None,
    )  # fmt: skip
    first, second = summary["comparisons"]["strong - weak"], summary["comparisons"]["weak - twin"]
    third = summary["comparisons"]["close - strong"]
    assert set(first) == {"groups", "pgd20"} and first["pgd20"]["pooled"]["difference"] == pytest.approx(0.25)
    assert second["autoattack"]["pooled"]["difference"] == pytest.approx(-0.25)
    assert third["pgd20"]["pooled"]["difference"] == 0
    assert [paired_verdict(result) for result in (first, second, third)] == ["above", "below", "not distinguishable"]
    assert paired_verdict({"pgd20": {"missing_per_example_records": ["x"]}}) is None
    questions = {"strong - weak": "Strong?", "weak - twin": "Weak?", "close - strong": "Close?"}
    text = questions_markdown(summary, questions, n, n)
    strong_line, weak_line, close_line = text.splitlines()[:3]
    assert strong_line.startswith("- Strong? **yes**, above (strong - weak, paired: PGD-20 +25.0 [")
    assert "AutoAttack" not in strong_line
    assert weak_line.startswith("- Weak? **no**, below (weak - twin, paired: PGD-20 -25.0 [")
    assert "AutoAttack -25.0 [" in weak_line
    assert close_line.startswith(
        "- Close? **not distinguishable** at this sample size (close - strong, paired: PGD-20 +0.0 ["
    )
    assert "| strong - weak | +25.0 [" in text
    assert next(line for line in text.splitlines() if line.startswith("| strong - weak |")).endswith("| not compared |")


def test_pooling_refuses_copies_other_images_and_claims_no_certainty_it_lacks():
    from benchmarks.seed_statistics import claim_summary, paired_verdict

    a0 = report("a0", [True, True, False, True])
    b0, b1 = report("b0", [True, False, False, False]), report("b1", [False, False, False, True])
    copy = report("a0-copy", [True, True, False, True])  # the same model under another name or folder
    with pytest.raises(ValueError, match="same model more than once"):
        compare_groups([a0, copy], [b0, b1], "autoattack")
    with pytest.raises(ValueError, match="evaluated on different test images"):  # seed 1 saw images 2-5 only
        compare_groups([a0, report("a1", [True, False, False, True], [2, 3, 4, 5])], [b0, b1], "autoattack")
    # each seed right on one of 2 images against a model right on none: every image's difference (and every seed's)
    # is 0.5, no spread, so no interval or p, and no verdict, rather than a certain +50
    seeds = [report("r0", [True, False]), report("r1", [False, True])]
    pooled = compare_groups(seeds, [report("w", [False, False])], "autoattack")["pooled"]
    assert (pooled["interval"], pooled["p_value"], pooled["between_seeds"]) == (None, 0.5, None)  # sign test, n = 2
    assert paired_verdict({"autoattack": {"pooled": pooled}}) == "not distinguishable"
    text = format_paired({"pooled": pooled, "per_seed": [], "missing_per_example_records": []})
    assert "(no interval: every image's difference is the same; sign test p = 0.5)" in text
    # ... but 20 images that all differ the same way are decisive evidence (sign test p = 2^-19), not "no verdict"
    seeds = [report("r0", [True] * 10 + [False] * 10), report("r1", [False] * 10 + [True] * 10)]
    pooled = compare_groups(seeds, [report("w", [False] * 20)], "autoattack")["pooled"]
    assert pooled["p_value"] == pytest.approx(2**-19) and paired_verdict({"pgd20": {"pooled": pooled}}) == "above"
    # groups sharing a model, and one model's two reports (its PGD-20 and AutoAttack evaluations, other folders)
    with pytest.raises(ValueError, match="Both groups hold the model"):
        compare_groups(seeds, [seeds[1]], "autoattack")
    twin = report("/elsewhere/r0", [True] * 10 + [False] * 10)
    twin.per_example["extra"] = twin.per_example["clean"]
    with pytest.raises(ValueError, match="same model more than once"):
        compare_groups([seeds[0], twin], [report("w", [False] * 20)], "autoattack")
    for bad in ({"difference": 0.1, "interval": [-0.3, -0.1], "p_value": 0.01},  # difference outside its interval
                {"difference": -5.5, "interval": [-8.0, -3.0], "p_value": 0.01},  # percent, not fractions
                {"difference": 0.1, "interval": [0.2, 0.05], "p_value": 0.01},
                {"difference": 0.1, "interval": [0.05, 0.2], "p_value": -3}):  # fmt: skip
        with pytest.raises(ValueError, match="Not a paired comparison"):
            paired_verdict({"pgd20": {"pooled": bad}})
    rows = [{"name": "a", "clean": 0.9, "fgsm": 0.5, "pgd20": 0.4, "autoattack": None}]
    with pytest.raises(ValueError, match="distinct names"):
        claim_summary(rows * 2, {"a": ["a"]}, {}, lambda name, attack: None)
    with pytest.raises(ValueError, match="columns must be a tuple"):
        claim_summary(rows, {"a": ["a"], "b": ["a"]}, {"a - b": ("a", "b", "pgd20")}, lambda name, attack: None)


def test_the_paired_caption_names_the_test_its_comparisons_used():
    """A table of single pairs is captioned with Newcombe's interval and McNemar's p; one pooling several seeds with
    the paired t-test over the images and the between-seed interval."""
    from benchmarks.seed_statistics import POOLED_CAPTION, SINGLE_CAPTION, paired_caption

    def summary(*n_seeds: int) -> dict:
        return {"comparisons": {f"c{i}": {"autoattack": {"pooled": {"n_seeds": n}}} for i, n in enumerate(n_seeds)}}

    assert paired_caption(summary(1, 1)) == SINGLE_CAPTION and "McNemar" in SINGLE_CAPTION
    assert paired_caption(summary(1, 3)) == POOLED_CAPTION and "paired t-test" in POOLED_CAPTION
    assert paired_caption({"comparisons": {"c": {"pgd20": {}}}}) == SINGLE_CAPTION  # nothing measured yet
