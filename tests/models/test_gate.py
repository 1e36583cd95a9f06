"""The offline gate: margin on the fresh set, tolerance everywhere, the numbers kept."""

from __future__ import annotations

from typing import Any

import pytest
from kaizend.models.gate import decide, paired_test


def reports(fresh: tuple[float, float], benchmark: tuple[float, float]) -> dict:
    def pair(candidate: float, champion: float, n: int) -> dict:
        return {
            "candidate": {"exact_match": candidate, "examples": n},
            "champion": {"exact_match": champion, "examples": n},
        }

    return {"fresh": pair(*fresh, 20), "benchmark": pair(*benchmark, 450)}


def gate(r: dict, greater: bool = True) -> object:
    return decide(
        r, primary_metric="exact_match", greater_is_better=greater, margin=0.02, tolerance=0.01
    )


def test_a_candidate_better_on_fresh_and_not_worse_elsewhere_passes() -> None:
    decision = gate(reports(fresh=(0.85, 0.80), benchmark=(0.955, 0.96)))
    assert decision.passed
    assert decision.reason.startswith("passed: exact_match on fresh (20 examples) 0.8500")
    assert len(decision.checks) == 3 and all(check.passed for check in decision.checks)


def test_a_gain_below_the_margin_is_rejected_with_its_numbers() -> None:
    decision = gate(reports(fresh=(0.81, 0.80), benchmark=(0.97, 0.96)))
    assert not decision.passed
    assert decision.reason == (
        "rejected: exact_match on fresh (20 examples) 0.8100 vs champion 0.8000: +0.0100, "
        "needs >= +0.0200"
    )


def test_a_regression_beyond_the_tolerance_on_the_benchmark_is_rejected() -> None:
    decision = gate(reports(fresh=(0.90, 0.80), benchmark=(0.94, 0.96)))
    assert not decision.passed
    assert "benchmark (450 examples) 0.9400 vs champion 0.9600: -0.0200" in decision.reason
    (failed,) = [c for c in decision.to_json() if not c["passed"]]
    assert failed["eval_set"] == "benchmark" and failed["required"] == -0.01


def test_lower_is_better_metrics_flip_the_sign() -> None:
    assert gate(reports(fresh=(0.10, 0.20), benchmark=(0.30, 0.30)), greater=False).passed
    assert not gate(reports(fresh=(0.20, 0.10), benchmark=(0.30, 0.30)), greater=False).passed


def test_without_a_fresh_set_nothing_passes() -> None:
    r = reports(fresh=(0.9, 0.1), benchmark=(0.9, 0.1))
    del r["fresh"]
    decision = gate(r)
    assert not decision.passed and "no fresh evaluation set" in decision.reason


# -- evidence: paired tests over the same examples, and a minimum fresh set ----------------

MIN_FRESH = 30
ALPHA = 0.05


def paired(candidate: list[float], champion: list[float], kind: str = "binary") -> dict:
    def report(scores: list[float]) -> dict:
        return {
            "exact_match": sum(scores) / len(scores), "examples": len(scores),
            "per_example": scores, "primary_metric_type": kind,
        }  # fmt: skip

    return {"candidate": report(candidate), "champion": report(champion)}


def strict_gate(r: dict) -> Any:
    return decide(
        r, primary_metric="exact_match", greater_is_better=True, margin=0.02, tolerance=0.01,
        min_fresh_examples=MIN_FRESH, alpha=ALPHA,
    )  # fmt: skip


SAME_BENCHMARK = paired([1.0] * 90 + [0.0] * 10, [1.0] * 90 + [0.0] * 10)


def test_a_candidate_better_by_one_example_on_a_small_fresh_set_does_not_pass() -> None:
    # The run that prompted this: exact match 1/11 against 0/11 on held-back corrections.
    small = paired([1.0] + [0.0] * 10, [0.0] * 11)
    decision = strict_gate({"fresh": small, "benchmark": SAME_BENCHMARK})
    assert not decision.passed
    assert decision.fresh_examples == 11 and decision.evidence == "benchmark"
    (waived,) = [c for c in decision.checks if not c.decides]
    assert waived.eval_set == "fresh" and waived.kind == "improvement"
    assert "not enough evidence: 11 fresh examples, 30 needed" in waived.note
    assert "not enough evidence" in decision.reason
    # The benchmark had to show the improvement and shows none.
    deciding = decision.deciding
    assert deciding is not None and deciding.eval_set == "benchmark" and not deciding.passed
    assert deciding.test == "mcnemar_exact" and deciding.p_value == 1.0

    # Even a fresh set allowed to decide at that size does not pass on one example: McNemar's
    # exact test of one discordant pair has p = 0.5.
    lenient = decide(
        {"fresh": small, "benchmark": SAME_BENCHMARK}, primary_metric="exact_match",
        greater_is_better=True, margin=0.02, tolerance=0.01, min_fresh_examples=5, alpha=ALPHA,
    )  # fmt: skip
    assert not lenient.passed and lenient.evidence == "fresh"
    assert lenient.deciding is not None and lenient.deciding.p_value == pytest.approx(0.5)
    assert "mcnemar_exact p=0.5000 needs <= 0.05" in lenient.reason


def test_a_candidate_clearly_better_on_enough_fresh_examples_passes_with_its_test() -> None:
    # 20 corrections (the champion wrong on each), the candidate fixes 12; 20 confirmed
    # answers (the champion right), the candidate keeps them all.
    champion = [0.0] * 20 + [1.0] * 20
    candidate = [1.0] * 12 + [0.0] * 8 + [1.0] * 20
    decision = strict_gate({"fresh": paired(candidate, champion), "benchmark": SAME_BENCHMARK})
    assert decision.passed, decision.reason
    assert decision.fresh_examples == 40 and decision.evidence == "fresh"
    deciding = decision.deciding
    assert deciding is not None and deciding.test == "mcnemar_exact"
    assert deciding.p_value == pytest.approx(0.5**12)  # 12 discordant pairs, all one way
    assert "mcnemar_exact p=0.0002 needs <= 0.05 (12 better, 0 worse)" in decision.reason
    assert all(check.passed for check in decision.checks)


def test_fixing_corrections_by_breaking_confirmed_answers_fails() -> None:
    champion = [0.0] * 20 + [1.0] * 20
    sources = ["correction"] * 20 + ["confirmed"] * 20

    def fresh(candidate: list[float]) -> dict:
        pair = paired(candidate, champion)
        return {side: {**report, "sources": sources} for side, report in pair.items()}

    # An even trade: 15 corrected cases fixed, 15 confirmed answers broken.
    even = strict_gate({"fresh": fresh([1.0] * 15 + [0.0] * 5 + [0.0] * 15 + [1.0] * 5),
                        "benchmark": SAME_BENCHMARK})  # fmt: skip
    assert not even.passed
    assert even.deciding is not None and even.deciding.p_value > 0.5
    # A trade that wins overall (15 fixed, 5 broken: +0.25, McNemar p = 0.02) still fails:
    # the confirmed answers on their own fell from 1.0 to 0.75.
    uneven = strict_gate({"fresh": fresh([1.0] * 15 + [0.0] * 5 + [0.0] * 5 + [1.0] * 15),
                          "benchmark": SAME_BENCHMARK})  # fmt: skip
    assert not uneven.passed
    (failed,) = [c for c in uneven.checks if not c.passed]
    assert (failed.eval_set, failed.examples, failed.candidate) == ("fresh/confirmed", 20, 0.75)
    assert "exact_match on fresh/confirmed (20 examples) 0.7500 vs champion 1.0000" in (
        uneven.reason
    )
    # Keeping every confirmed answer, the same fixes pass.
    kept = strict_gate({"fresh": fresh([1.0] * 15 + [0.0] * 5 + [1.0] * 20),
                        "benchmark": SAME_BENCHMARK})  # fmt: skip
    assert kept.passed, kept.reason


def test_a_small_fresh_set_leaves_the_decision_to_a_benchmark_that_shows_a_gain() -> None:
    small = paired([1.0] * 8 + [0.0] * 2, [0.0] * 8 + [1.0] * 2)
    better = paired([1.0] * 95 + [0.0] * 5, [1.0] * 80 + [0.0] * 20)
    decision = strict_gate({"fresh": small, "benchmark": better})
    assert decision.passed, decision.reason
    assert decision.evidence == "benchmark" and decision.fresh_examples == 10
    # ... but a small fresh set can still reject: worse than the tolerance there.
    worse = paired([0.0] * 8 + [1.0] * 2, [1.0] * 8 + [0.0] * 2)
    assert not strict_gate({"fresh": worse, "benchmark": better}).passed


def test_a_continuous_metric_is_tested_with_a_paired_t_test() -> None:
    champion = [0.5 + 0.01 * (i % 7) for i in range(40)]
    candidate = [value + 0.05 + 0.01 * (i % 3 - 1) for i, value in enumerate(champion)]
    fresh = paired(candidate, champion, kind="continuous")
    decision = strict_gate({"fresh": fresh, "benchmark": SAME_BENCHMARK})
    assert decision.passed, decision.reason
    assert decision.deciding is not None and decision.deciding.test == "paired_t"
    assert decision.deciding.p_value < 1e-6
    # A noisy gain of the same mean that a paired test cannot tell from nothing.
    noisy = [value + (0.9 if i % 2 else -0.8) for i, value in enumerate(champion)]
    noisy = [min(1.0, max(0.0, value)) for value in noisy]
    decision = strict_gate({"fresh": paired(noisy, champion, "continuous"),
                            "benchmark": SAME_BENCHMARK})  # fmt: skip
    assert not decision.passed and decision.deciding.p_value > ALPHA


def test_without_per_example_scores_no_improvement_is_significant() -> None:
    r = reports(fresh=(0.95, 0.10), benchmark=(0.96, 0.96))
    r["fresh"] = {
        side: {**values, "examples": 40} for side, values in r["fresh"].items()
    }  # fmt: skip
    decision = strict_gate(r)
    assert not decision.passed
    assert "no per-example scores for a paired test" in decision.reason


def test_the_paired_tests_against_scipy() -> None:
    from scipy.stats import binomtest, ttest_rel

    a = [1.0] * 9 + [0.0] * 3 + [1.0] * 20
    b = [0.0] * 9 + [1.0] * 3 + [1.0] * 20
    test = paired_test(a, b, binary=True, greater_is_better=True)
    assert (test.candidate_better, test.champion_better, test.examples) == (9, 3, 32)
    assert test.p_value == pytest.approx(binomtest(9, 12, 0.5, alternative="greater").pvalue)
    x = [0.1 * i for i in range(12)]
    y = [0.1 * i + (0.05 if i % 3 else -0.02) for i in range(12)]
    test = paired_test(y, x, binary=False, greater_is_better=True)
    assert test.p_value == pytest.approx(ttest_rel(y, x, alternative="greater").pvalue)
    flipped = paired_test(x, y, binary=False, greater_is_better=False)
    assert flipped.p_value == pytest.approx(test.p_value)
