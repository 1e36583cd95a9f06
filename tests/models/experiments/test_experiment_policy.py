"""The experiment loop's gates at one tick, in their fixed order."""

from __future__ import annotations

from kaizend.models.experiments.policy import Policy, StepData, decide
from kaizend.models.experiments.stats import SampleStats

POLICY = Policy(weights=(0.10, 0.25, 0.50), min_units=1000, max_duration_s=86400.0)


def arm(
    n: int, successes: int, errors: int = 0, latency: float = 100.0, fallbacks: int = 0
) -> dict:
    return {
        "success": SampleStats.proportion(successes, n),
        "error_rate": SampleStats.proportion(errors, n),
        "fallback_rate": SampleStats.proportion(fallbacks, n),
        "latency_ms": SampleStats(n, latency * n, latency * latency * n * 1.01),
    }


def step(weight: float, champion: dict, challenger: dict, elapsed: float = 3600.0) -> StepData:
    return StepData(weight, elapsed, champion, challenger)


def test_no_traffic_holds() -> None:
    decision = decide([step(0.1, arm(50, 30), arm(0, 0))], POLICY)
    assert (decision.action, decision.gate) == ("hold", "traffic")


def test_a_significantly_worse_guardrail_rolls_back_before_anything_else() -> None:
    # Also a sample-ratio mismatch and too few units: the rollback still wins.
    decision = decide([step(0.1, arm(500, 300), arm(200, 140, errors=60))], POLICY)
    assert (decision.action, decision.gate, decision.metric) == ("rollback", "guardrail",
                                                                 "error_rate")  # fmt: skip
    assert decision.reason.startswith("guardrail worse by more than 0: error_rate 0.3000 vs 0")


def test_a_guardrail_excess_within_its_tolerance_does_not_roll_back() -> None:
    # A rules champion never falls back; a model falling back on 1.5% of 4,000 queries is
    # significantly worse on that guardrail, but within a tolerance of 2 points.
    steps = [step(0.5, arm(4000, 2400), arm(4000, 2600, fallbacks=60))]
    strict = decide(steps, POLICY)
    assert (strict.action, strict.metric) == ("rollback", "fallback_rate")
    tolerant = Policy(weights=POLICY.weights, guardrail_tolerance={"fallback_rate": 0.02})
    assert decide(steps, tolerant).action == "promote"
    far_worse = [step(0.5, arm(4000, 2400), arm(4000, 2600, fallbacks=400))]
    assert decide(far_worse, tolerant).action == "rollback"


def test_a_sample_ratio_mismatch_holds_and_says_so() -> None:
    decision = decide([step(0.1, arm(1800, 1080), arm(400, 240))], POLICY)
    assert (decision.action, decision.gate) == ("hold", "srm")
    assert decision.srm_p_value < 0.001 and "check the producers' routing" in decision.reason


def test_a_significantly_worse_primary_rolls_back_even_below_the_minimum_sample() -> None:
    decision = decide([step(0.5, arm(450, 315), arm(450, 225))], POLICY)
    assert (decision.action, decision.gate) == ("rollback", "primary")
    assert decision.test.is_worse and decision.test.p_value < 0.05


def test_a_step_below_its_minimum_holds_then_advances() -> None:
    assert decide([step(0.1, arm(450, 270), arm(50, 30))], POLICY).gate == "sample"
    decision = decide([step(0.1, arm(900, 540), arm(100, 62))], POLICY)
    assert (decision.action, decision.gate) == ("advance", "ramp")


def test_a_resumed_step_repeats_its_weight_and_the_ramp_goes_on_from_there() -> None:
    assert POLICY.next_weight(0.10) == 0.25 and POLICY.next_weight(0.50) is None
    earlier = [step(0.1, arm(900, 540), arm(100, 62)), step(0.25, arm(300, 180), arm(100, 60))]
    resumed = decide([*earlier, step(0.25, arm(750, 450), arm(250, 150))], POLICY)
    assert (resumed.action, resumed.gate) == ("advance", "ramp")  # not mistaken for the last
    at_last = decide([*earlier, step(0.5, arm(100, 60), arm(100, 60)),
                      step(0.5, arm(3000, 1800), arm(3000, 1950))], POLICY)  # fmt: skip
    assert at_last.action == "promote"


def test_the_last_step_promotes_only_a_significantly_better_challenger() -> None:
    earlier = [step(0.1, arm(900, 540), arm(100, 65)), step(0.25, arm(750, 450), arm(250, 165))]
    better = decide([*earlier, step(0.5, arm(3000, 1800), arm(3000, 1950))], POLICY)
    assert (better.action, better.gate) == ("promote", "primary")
    assert better.test.method.startswith("stratified-") and better.test.ci_lower > 0
    same = decide([*earlier, step(0.5, arm(1000, 600), arm(1000, 605))], POLICY)
    assert (same.action, same.gate) == ("hold", "primary")
    late = decide([*earlier, step(0.5, arm(1000, 600), arm(1000, 605), elapsed=90000)], POLICY)
    assert late.action == "inconclusive"


def test_every_hold_ends_inconclusive_at_the_steps_maximum_duration() -> None:
    late = POLICY.max_duration_s
    no_traffic = decide([step(0.1, arm(50, 30), arm(0, 0), elapsed=late)], POLICY)
    assert (no_traffic.action, no_traffic.gate) == ("inconclusive", "traffic")
    mismatch = decide([step(0.1, arm(1800, 1080), arm(400, 240), elapsed=late)], POLICY)
    assert (mismatch.action, mismatch.gate) == ("inconclusive", "srm")
    assert mismatch.srm_p_value < 0.001 and "maximum duration" in mismatch.reason
    too_few = decide([step(0.1, arm(450, 270), arm(50, 30), elapsed=late)], POLICY)
    assert (too_few.action, too_few.gate) == ("inconclusive", "duration")
    # Before the maximum, each of them holds.
    for champion, challenger in ((arm(50, 30), arm(0, 0)), (arm(1800, 1080), arm(400, 240))):
        assert decide([step(0.1, champion, challenger, elapsed=late - 1)], POLICY).action == "hold"
