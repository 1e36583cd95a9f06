"""The experiment loop's decision at one tick: the gates, in their fixed order.

Pure: it takes what has been measured per ramp step and arm (summary statistics over units,
the unit of randomisation: see `models.experiments.units`) and returns one `Decision`; the
daemon gathers the numbers from DuckDB, applies the action (routing bucket, registry) and
logs the decision.

Order, a rollback winning over a hold:

1. no traffic in the current step (an arm without units) -> hold;
2. a guardrail (error rate, fallback rate, share of slow answers; lower is better)
   significantly worse by more than its tolerance (the always-valid lower bound of the
   challenger's excess is above it) -> roll back;
3. sample-ratio mismatch of the current step's distinct units against its *configured*
   weight (p < ``srm_alpha``) -> hold, and alert;
4. the primary metric (success) significantly worse -> roll back;
5. the current step below its minimum units or minimum duration -> hold;
6. before the last comparison step -> advance to the next step; at the last one, the
   primary metric significantly better -> promote; past the step's maximum duration, neither
   better nor worse -> stop as inconclusive (the champion stays); otherwise hold.

Every hold ends: a step held for no traffic, a sample-ratio mismatch or too few units that
reaches its maximum duration stops as inconclusive, like a step that cannot decide, so the
task is free for its next candidate.

Every comparison uses the always-valid sequential test (looking at every tick does not
inflate false decisions) over the steps so far as strata, never a pool across weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from kaizend.models.experiments.stats import (
    DEFAULT_TAU,
    SampleStats,
    TestResult,
    sequential_ttest,
    srm_pvalue,
)

Action = Literal["hold", "advance", "promote", "rollback", "inconclusive"]
PRIMARY = "success"


@dataclass(frozen=True)
class StepData:
    """What one ramp step measured: per arm, a `SampleStats` per metric."""

    weight: float
    """The challenger's configured share in this step."""
    elapsed_s: float
    """How long the step has run."""
    champion: Mapping[str, SampleStats]
    """Per metric, the arm's units: ``n`` units, mean the metric's ratio over them."""
    challenger: Mapping[str, SampleStats]
    queries: tuple[float, float] = (0.0, 0.0)
    """Queries (the primary metric's denominator) of (champion, challenger): descriptive."""
    design_effect: float = float("nan")
    """Variance of the primary metric's difference over units, over what independent queries
    would give (descriptive: how much the per-query analysis would understate it)."""
    adjusted: bool = False
    """Whether the primary metric was adjusted with the units' pre-period history."""
    variance_removed: float = 0.0
    """Share of the primary difference's variance that the adjustment removed."""


@dataclass(frozen=True)
class Policy:
    """The ramp and its thresholds (from configuration)."""

    weights: tuple[float, ...] = (0.10, 0.25, 0.50)
    """Challenger share of each comparison step; after the last comes promotion (100%)."""
    min_units: int = 1000
    """Units (both arms) a step needs before it may advance or promote."""
    min_duration_s: float = 0.0
    max_duration_s: float = 7 * 86400.0
    alpha: float = 0.05
    srm_alpha: float = 0.001
    tau: float = DEFAULT_TAU
    guardrails: tuple[str, ...] = ("error_rate", "fallback_rate", "slow_rate")
    guardrail_tolerance: Mapping[str, float] = field(default_factory=dict)
    """Absolute excess of the challenger a guardrail tolerates (0 when not given): a rules
    champion never falls back, a model that falls back on 1% of queries may still be better."""

    def next_weight(self, weight: float) -> float | None:
        """The share of the step after one at ``weight``; None after the last comparison."""
        return next((w for w in self.weights if w > weight + 1e-9), None)


@dataclass(frozen=True)
class Decision:
    action: Action
    gate: str
    reason: str
    metric: str | None = None
    test: TestResult | None = None
    srm_p_value: float | None = None
    details: dict[str, float] = field(default_factory=dict)


def _compare(
    steps: Sequence[StepData], metric: str, policy: Policy, *, guardrail: bool = False
) -> TestResult | None:
    """The sequential test over the steps as strata. A guardrail is tested one-sided (H1:
    the challenger's is higher, i.e. worse) on the absolute effect, since a rate such as
    errors is often 0 for the champion, where a relative effect is undefined."""
    control = [s.champion[metric] for s in steps if metric in s.champion]
    treatment = [s.challenger[metric] for s in steps if metric in s.challenger]
    if not control or len(control) != len(treatment):
        return None
    return sequential_ttest(
        control,
        treatment,
        relative=not guardrail,
        alpha=policy.alpha,
        alternative="greater" if guardrail else "two-sided",
        tau=policy.tau,
    )


def _describe(metric: str, test: TestResult) -> str:
    fmt = "{:+.2%}" if test.relative else "{:+.4g}"
    low, high, effect = (fmt.format(v) for v in (test.ci_lower, test.ci_upper, test.effect))
    return (
        f"{metric} {test.treatment_mean:.4f} vs {test.control_mean:.4f}: effect {effect} "
        f"[{low}, {high}], p={test.p_value:.3g}"
    )


def decide(steps: Sequence[StepData], policy: Policy) -> Decision:
    """The action for this tick; ``steps`` are the steps so far, the current one last."""
    if not steps:
        raise ValueError("an experiment has at least its first step")
    current = steps[-1]
    # A paused and resumed experiment repeats a step's weight, so the weight says where the
    # ramp is, not the number of steps.
    last_step = policy.next_weight(current.weight) is None
    n_champion = current.champion[PRIMARY].n
    n_challenger = current.challenger[PRIMARY].n
    expired = current.elapsed_s >= policy.max_duration_s
    if n_champion == 0 or n_challenger == 0:
        traffic = (
            f"no traffic in step {len(steps)} "
            f"({n_champion:.0f} champion, {n_challenger:.0f} challenger units)"
        )
        if expired:
            return Decision("inconclusive", "traffic", f"{traffic} by its maximum duration")
        return Decision("hold", "traffic", traffic)

    for guardrail in policy.guardrails:
        test = _compare(steps, guardrail, policy, guardrail=True)
        tolerance = policy.guardrail_tolerance.get(guardrail, 0.0)
        # Higher is worse for a guardrail: the challenger's excess is surely above tolerance.
        if test is not None and test.ci_lower > tolerance:
            reason = f"guardrail worse by more than {tolerance:g}: {_describe(guardrail, test)}"
            return Decision("rollback", "guardrail", reason, guardrail, test)

    srm = srm_pvalue([n_champion, n_challenger], [1 - current.weight, current.weight])
    if srm < policy.srm_alpha:
        mismatch = (
            f"sample-ratio mismatch: {n_champion:.0f}/{n_challenger:.0f} units against a "
            f"configured {1 - current.weight:.0%}/{current.weight:.0%} split (p={srm:.2g}); "
            "check the producers' routing"
        )
        if expired:
            return Decision(
                "inconclusive", "srm", f"{mismatch}; step {len(steps)} reached its maximum "
                "duration", srm_p_value=srm,
            )  # fmt: skip
        return Decision("hold", "srm", mismatch, srm_p_value=srm)

    primary = _compare(steps, PRIMARY, policy)
    assert primary is not None
    if primary.is_worse:
        return Decision(
            "rollback", "primary", f"worse: {_describe(PRIMARY, primary)}", PRIMARY, primary, srm
        )

    units = int(n_champion + n_challenger)
    if units < policy.min_units or current.elapsed_s < policy.min_duration_s:
        if expired:
            return Decision(
                "inconclusive",
                "duration",
                f"step {len(steps)} reached its maximum duration with {units} of "
                f"{policy.min_units} units",
                PRIMARY,
                primary,
                srm,
            )
        return Decision(
            "hold",
            "sample",
            f"step {len(steps)}: {units} of {policy.min_units} "
            f"units, {current.elapsed_s:.0f} of {policy.min_duration_s:.0f} s; "
            f"{_describe(PRIMARY, primary)}",
            PRIMARY,
            primary,
            srm,
        )
    if not last_step:
        return Decision(
            "advance",
            "ramp",
            f"step {len(steps)} complete ({units} units); {_describe(PRIMARY, primary)}",
            PRIMARY,
            primary,
            srm,
        )
    if primary.is_better:
        return Decision(
            "promote", "primary", f"better: {_describe(PRIMARY, primary)}", PRIMARY, primary, srm
        )
    if expired:
        return Decision(
            "inconclusive",
            "duration",
            "neither better nor worse by the last "
            f"step's maximum duration: {_describe(PRIMARY, primary)}",
            PRIMARY,
            primary,
            srm,
        )
    return Decision(
        "hold",
        "primary",
        f"not yet significant: {_describe(PRIMARY, primary)}",
        PRIMARY,
        primary,
        srm,
    )
