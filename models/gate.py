"""The offline gate: may a trained candidate face live traffic?

A candidate and the current champion are measured with the task's evaluator on the same
evaluation sets: the task's fixed benchmark split and the fresh set (the newest real signal,
never trained on). The candidate passes only if its primary metric beats the champion's on
the fresh set by at least ``margin`` and is nowhere worse than the champion's by more than
``tolerance``. The decision keeps every number that made it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

FRESH = "fresh"
BENCHMARK = "benchmark"


@dataclass(frozen=True)
class GateCheck:
    """One comparison: ``improvement`` is candidate minus champion, sign-corrected so that
    positive is better; the check passes when it is at least ``required``."""

    eval_set: str
    metric: str
    examples: int
    candidate: float
    champion: float
    improvement: float
    required: float
    passed: bool

    def describe(self) -> str:
        return (
            f"{self.metric} on {self.eval_set} ({self.examples} examples) {self.candidate:.4f} "
            f"vs champion {self.champion:.4f}: {self.improvement:+.4f}, needs >= "
            f"{self.required:+.4f}"
        )


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reason: str
    checks: tuple[GateCheck, ...]

    def to_json(self) -> list[dict[str, Any]]:
        return [asdict(check) for check in self.checks]


def _check(
    eval_set: str,
    metric: str,
    examples: int,
    candidate: float,
    champion: float,
    greater_is_better: bool,
    required: float,
) -> GateCheck:
    improvement = candidate - champion if greater_is_better else champion - candidate
    return GateCheck(
        eval_set, metric, examples, candidate, champion, improvement, required,
        passed=improvement >= required - 1e-12,
    )  # fmt: skip


def decide(
    reports: Mapping[str, Mapping[str, Mapping[str, Any]]],
    *,
    primary_metric: str,
    greater_is_better: bool,
    margin: float,
    tolerance: float,
) -> GateDecision:
    """Decide from ``reports[eval_set]["candidate" | "champion"]`` (evaluator reports, each
    with ``primary_metric`` and ``examples``). The fresh set must be among them."""
    fresh = reports.get(FRESH)
    if not fresh or not fresh["candidate"].get("examples"):
        return GateDecision(False, "rejected: no fresh evaluation set to compare on", ())
    checks = []
    for eval_set, pair in reports.items():
        args = (
            eval_set, primary_metric, int(pair["candidate"].get("examples", 0)),
            float(pair["candidate"][primary_metric]), float(pair["champion"][primary_metric]),
            greater_is_better,
        )  # fmt: skip
        checks.append(_check(*args, required=-tolerance))
        if eval_set == FRESH:
            checks.append(_check(*args, required=margin))
    failed = [check for check in checks if not check.passed]
    verdict = "rejected" if failed else "passed"
    shown = failed or checks
    return GateDecision(
        not failed, f"{verdict}: " + "; ".join(c.describe() for c in shown), tuple(checks)
    )
