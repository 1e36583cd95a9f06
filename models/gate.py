"""The offline gate: may a trained candidate face live traffic?

A candidate and the current champion are measured with the task's evaluator on the same
evaluation sets: the task's fixed benchmark split and the fresh set (the newest real signal,
never trained on: corrected answers and confirmed ones). The candidate passes only if

- it improves on the champion where there is evidence to say so: on the fresh set, when it
  has at least ``min_fresh_examples`` examples, else on the benchmark. Improving means the
  primary metric is better by at least ``margin`` *and* a one-sided paired test over the
  same examples (candidate better) has a p-value of at most ``alpha``: McNemar's exact test
  for a binary metric (each example right or wrong), a paired t-test for a continuous one.
  A fresh set too small to decide is reported as not enough evidence and counts neither way;
- and it is nowhere worse than the champion by more than ``tolerance`` (point estimates, on
  every set, however small: a check that can only reject), the fresh set's confirmed
  answers on their own included (``fresh/confirmed``: the champion was right there, so a
  candidate cannot pay for fixing corrections by breaking them).

The decision keeps every number that made it: the test, its p-value and each set's size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from kaizend.models.task import CONFIRMED, METRIC_TYPE, PER_EXAMPLE, SOURCES

FRESH = "fresh"
BENCHMARK = "benchmark"
IMPROVEMENT = "improvement"

MCNEMAR = "mcnemar_exact"
"""McNemar's exact test: a binomial test of the discordant pairs (candidate right where the
champion was wrong, and the reverse), one-sided."""
PAIRED_T = "paired_t"
"""A one-sided paired t-test of the per-example differences (what IR evaluation uses for
per-query scores such as nDCG: Smucker, Allan and Carterette, CIKM 2007)."""


@dataclass(frozen=True)
class PairedTest:
    """A one-sided paired test that the candidate is better, over ``examples`` pairs."""

    test: str
    examples: int
    p_value: float
    candidate_better: int
    """Examples where the candidate scored better than the champion."""
    champion_better: int

    def describe(self) -> str:
        return f"{self.candidate_better} better, {self.champion_better} worse"


def paired_test(
    candidate: Sequence[float], champion: Sequence[float], *, binary: bool, greater_is_better: bool
) -> PairedTest:
    """Test that ``candidate`` beats ``champion`` example by example (same order)."""
    if len(candidate) != len(champion):
        raise ValueError(f"{len(candidate)} candidate scores for {len(champion)} champion ones")
    sign = 1.0 if greater_is_better else -1.0
    diffs = [sign * (float(c) - float(p)) for c, p in zip(candidate, champion, strict=True)]
    better = sum(d > 0 for d in diffs)
    worse = sum(d < 0 for d in diffs)
    if binary:
        from scipy.stats import binomtest

        discordant = better + worse
        p = binomtest(better, discordant, 0.5, alternative="greater").pvalue if discordant else 1.0
        return PairedTest(MCNEMAR, len(diffs), float(p), better, worse)
    n = len(diffs)
    mean = sum(diffs) / n if n else 0.0
    variance = sum((d - mean) ** 2 for d in diffs) / (n - 1) if n > 1 else 0.0
    if n < 2 or variance == 0.0:
        # No spread to test against: every pair moved by the same amount (or there is one).
        p = 0.0 if n >= 2 and mean > 0 else 1.0
    else:
        from scipy.stats import t

        p = float(t.sf(mean / math.sqrt(variance / n), n - 1))
    return PairedTest(PAIRED_T, n, p, better, worse)


@dataclass(frozen=True)
class GateCheck:
    """One comparison: ``improvement`` is candidate minus champion, sign-corrected so that
    positive is better; the check passes when it is at least ``required`` (and, for an
    improvement check, when its paired test's p-value is at most ``alpha``).

    A check that does not ``decide`` (a fresh set below the minimum) is shown, not counted.
    """

    eval_set: str
    metric: str
    examples: int
    candidate: float
    champion: float
    improvement: float
    required: float
    passed: bool
    kind: str = "no regression"
    """``improvement`` (``required`` is the margin) or ``no regression`` (the tolerance)."""
    test: str | None = None
    p_value: float | None = None
    alpha: float | None = None
    decides: bool = True
    note: str = ""

    def describe(self) -> str:
        text = (
            f"{self.metric} on {self.eval_set} ({self.examples} examples) {self.candidate:.4f} "
            f"vs champion {self.champion:.4f}: {self.improvement:+.4f}, needs >= "
            f"{self.required:+.4f}"
        )
        if self.p_value is not None:
            text += f", {self.test} p={self.p_value:.4f} needs <= {self.alpha:g}"
        return f"{text} ({self.note})" if self.note else text


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reason: str
    checks: tuple[GateCheck, ...]
    fresh_examples: int = 0
    """Size of the fresh set the candidate was measured on."""
    evidence: str | None = None
    """The evaluation set whose improvement check decided (fresh, or the benchmark when the
    fresh set was too small); None when none could."""

    @property
    def deciding(self) -> GateCheck | None:
        """The improvement check that decided, with its test and p-value."""
        return next(
            (c for c in self.checks if c.eval_set == self.evidence and c.kind == IMPROVEMENT),
            None,
        )

    def to_json(self) -> list[dict[str, Any]]:
        return [asdict(check) for check in self.checks]


def _size(report: Mapping[str, Any]) -> int:
    scores = report.get(PER_EXAMPLE)
    return len(scores) if scores is not None else int(report.get("examples", 0))


def decide(
    reports: Mapping[str, Mapping[str, Mapping[str, Any]]],
    *,
    primary_metric: str,
    greater_is_better: bool,
    margin: float,
    tolerance: float,
    min_fresh_examples: int = 0,
    alpha: float = 1.0,
) -> GateDecision:
    """Decide from ``reports[eval_set]["candidate" | "champion"]`` (evaluator reports, each
    with ``primary_metric``, ``examples`` and, for the paired test, ``per_example`` and
    ``primary_metric_type``).

    ``min_fresh_examples`` 0 lets any fresh set decide (and then one must exist); ``alpha``
    1.0 asks no significance of the improvement. The daemon passes its configuration
    (``training.gate_*``).
    """
    fresh = reports.get(FRESH)
    fresh_examples = _size(fresh["candidate"]) if fresh else 0
    if min_fresh_examples <= 0 and not fresh_examples:
        return GateDecision(False, "rejected: no fresh evaluation set to compare on", ())
    evidence = FRESH if fresh_examples >= max(min_fresh_examples, 1) else BENCHMARK
    checks = []
    for eval_set, pair in reports.items():
        candidate, champion = pair["candidate"], pair["champion"]
        args = (
            eval_set, primary_metric, _size(candidate), float(candidate[primary_metric]),
            float(champion[primary_metric]),
        )  # fmt: skip
        improvement = args[3] - args[4] if greater_is_better else args[4] - args[3]
        checks.append(GateCheck(*args, improvement, -tolerance, improvement >= -tolerance - 1e-12))
        if eval_set not in (FRESH, evidence):
            continue
        test = _paired(candidate, champion, greater_is_better) if alpha < 1.0 else None
        significant = test is not None and test.p_value <= alpha
        passed = improvement >= margin - 1e-12 and (alpha >= 1.0 or significant)
        note = test.describe() if test else ""
        if alpha < 1.0 and test is None:
            note = "no per-example scores for a paired test"
        decides = eval_set == evidence
        if not decides:
            passed = False
            note = (
                f"not enough evidence: {args[2]} fresh examples, {min_fresh_examples} needed "
                "(training.gate_min_fresh_examples); the benchmark decides"
                + (f" (there: {test.test} p={test.p_value:.4f}, {note})" if test else "")
            )
        checks.append(GateCheck(
            *args, improvement, margin, passed, IMPROVEMENT,
            test=test.test if test else None, p_value=test.p_value if test else None,
            alpha=alpha if alpha < 1.0 else None, decides=decides, note=note,
        ))  # fmt: skip
    if fresh and (
        confirmed := _confirmed_check(fresh, primary_metric, greater_is_better, tolerance)
    ):
        checks.append(confirmed)
    if not any(c.decides and c.kind == IMPROVEMENT for c in checks):
        # The benchmark should have decided but is missing: nothing shows an improvement.
        return GateDecision(
            False,
            f"rejected: {fresh_examples} fresh examples, {min_fresh_examples} needed, and no "
            "benchmark to decide on",
            tuple(checks),
            fresh_examples,
        )
    failed = [check for check in checks if check.decides and not check.passed]
    verdict = "rejected" if failed else "passed"
    shown = failed or [check for check in checks if check.decides]
    waived = [check for check in checks if not check.decides]
    reason = f"{verdict}: " + "; ".join(c.describe() for c in shown)
    if waived:
        reason += f"; {waived[0].note}"
    return GateDecision(not failed, reason, tuple(checks), fresh_examples, evidence)


def _paired(
    candidate: Mapping[str, Any], champion: Mapping[str, Any], greater_is_better: bool
) -> PairedTest | None:
    ours, theirs = candidate.get(PER_EXAMPLE), champion.get(PER_EXAMPLE)
    if ours is None or theirs is None or len(ours) != len(theirs):
        return None
    binary = candidate.get(METRIC_TYPE) == "binary"
    return paired_test(ours, theirs, binary=binary, greater_is_better=greater_is_better)


def _confirmed_check(
    fresh: Mapping[str, Mapping[str, Any]], metric: str, greater_is_better: bool, tolerance: float
) -> GateCheck | None:
    """No regression on the fresh set's confirmed answers alone (where the champion was
    right), so fixing corrections cannot pay for breaking them; None without such answers."""
    ours, theirs = fresh["candidate"].get(PER_EXAMPLE), fresh["champion"].get(PER_EXAMPLE)
    sources = fresh["candidate"].get(SOURCES)
    if not ours or not theirs or not sources or not len(ours) == len(theirs) == len(sources):
        return None
    picked = [i for i, source in enumerate(sources) if source == CONFIRMED]
    if not picked:
        return None
    candidate = sum(float(ours[i]) for i in picked) / len(picked)
    champion = sum(float(theirs[i]) for i in picked) / len(picked)
    improvement = candidate - champion if greater_is_better else champion - candidate
    return GateCheck(
        f"{FRESH}/{CONFIRMED}", metric, len(picked), candidate, champion, improvement,
        -tolerance, improvement >= -tolerance - 1e-12,
    )  # fmt: skip
