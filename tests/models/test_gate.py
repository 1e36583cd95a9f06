"""The offline gate: margin on the fresh set, tolerance everywhere, the numbers kept."""

from __future__ import annotations

from models.gate import decide


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
