"""One drift report of one task: gather the windows from DuckDB, then compute every check.

`gather` reads (fast, on a database cursor); `compute` does the work (embedding the query
texts, fitting the domain classifier, permutations) without touching the database, so the
daemon can hold its database lock only while reading and writing. A report holds:

- **input** checks, reference window against current window (`DriftSettings`): the query
  embeddings (domain classifier ROC-AUC, MMD permutation test), each categorical field of the
  parse (PSI and chi-square) and each numeric one (Kolmogorov-Smirnov on small windows,
  normalised Wasserstein on large ones). Per field, the method suited to the window size
  *decides* (small: the tests; large: the distances) and the other is shown for context. The
  report's false-alarm level ``alpha`` is split (Bonferroni) over its deciding tests and the
  domain classifier, whose threshold is raised on small windows to the AUC that chance alone
  reaches with probability ``alpha / tests`` (the Mann-Whitney null), never below the
  configured ``domain_auc_threshold``.
- a **performance** check of the champion: the Bernoulli CUSUM of its settled queries'
  success (no feedback or correction can still change it: older than the attribution
  window) against its success rate at promotion (its one-sided 95% lower confidence bound,
  so that a baseline measured high by chance does not raise false alarms).
- **volume** checks: per event kind, the longest stretch of the current window without an
  event, against ``max_gap_s`` or the reference window's longest stretch, whichever is
  longer (feedback and corrections are sparse at night); the hourly counts go along.

The reference window is, by default, the period of traffic the champion's training events
cover: every query of that period, not only the corrected ones, which are the hard queries
and would always look different from the day's traffic. Version 0 has no training run: the
past window (``reference_window_s`` before the current window) stands in.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import numpy as np
from kaizend.core.config import DriftSettings, Settings
from kaizend.core.errors import KaizendError
from kaizend.models.drift import stats
from kaizend.models.drift.fields import TEXT_FIELDS, DriftFields
from kaizend.models.task import TextEncoder
from kaizend.storage.drift import (
    VOLUME_KINDS,
    Champion,
    QueryRow,
    Volume,
    champion,
    training_span,
    unit_outcomes,
    volume,
    window_queries,
)
from scipy import stats as scipy_stats

log = logging.getLogger(__name__)

Embed = Callable[[list[str]], np.ndarray]
"""Texts -> unit-length embeddings, one row per text."""

HISTOGRAM_BINS = 20
ENCODE_CHUNK = 256
BASELINE_Z = 1.645
CUSUM_PATH_DAYS = 60


class ReportCancelled(KaizendError, RuntimeError):
    """A report stopped half-way because the daemon is stopping; the next run starts over."""


@dataclass(frozen=True)
class Window:
    start: datetime | None
    end: datetime | None
    label: str
    queries: Sequence[QueryRow] = field(default=(), repr=False)


@dataclass(frozen=True)
class PerformanceInputs:
    version_id: str
    baseline: Window
    baseline_outcomes: Sequence[bool]
    monitored: Sequence[tuple[datetime, bool]]
    """(time, success) of its settled queries after the baseline, oldest first."""
    settled_end: datetime


@dataclass(frozen=True)
class ReportInputs:
    task: str
    now: datetime
    reference: Window
    current: Window
    performance: PerformanceInputs | str
    """What the performance check needs, or why it cannot run."""
    volumes: Sequence[tuple[Volume, Volume]]
    """(current, reference) per event kind."""
    fields: DriftFields
    """What the input checks read out of each query (the task's `drift_fields`)."""
    encoder: TextEncoder | None
    """What embeds the queries for the embedding checks (None: those are left out)."""


@dataclass(frozen=True)
class Check:
    kind: str
    field: str
    method: str
    score: float | None
    threshold: float
    direction: str
    drifted: bool
    decisive: bool
    n_reference: int
    n_current: int
    reference: Window
    current: Window
    p_value: float | None = None
    version_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """One line for logs and a training's reason: ``technology chi2 0.0002 < 0.0063``."""
        if self.score is None:
            return f"{self.field} {self.method} skipped"
        sign = ">" if self.direction == "above" else "<"
        if not self.drifted:
            sign = "<=" if self.direction == "above" else ">="
        return f"{self.field} {self.method} {self.score:.4g} {sign} {self.threshold:.4g}"

    def row(self, report_id: str, task: str, checked_at: datetime) -> dict[str, Any]:
        """The ``drift_checks`` row."""
        return {
            "report_id": report_id, "task": task, "checked_at": checked_at, "kind": self.kind,
            "field": self.field, "method": self.method, "version_id": self.version_id,
            "reference_start": self.reference.start, "reference_end": self.reference.end,
            "current_start": self.current.start, "current_end": self.current.end,
            "n_reference": self.n_reference, "n_current": self.n_current, "score": self.score,
            "threshold": self.threshold, "direction": self.direction, "p_value": self.p_value,
            "drifted": self.drifted, "decisive": self.decisive, "detail": self.detail,
        }  # fmt: skip


@dataclass(frozen=True)
class TaskReport:
    report_id: str
    task: str
    created_at: datetime
    reference: Window
    current: Window
    checks: Sequence[Check]
    duration_s: float
    action: str | None = None
    """What the daemon did about it (a training queued, ...), once it acted."""

    @property
    def input_drift(self) -> bool:
        return any(c.kind == "input" and c.decisive and c.drifted for c in self.checks)

    @property
    def performance_alarm(self) -> bool:
        return any(c.kind == "performance" and c.drifted for c in self.checks)

    def reasons(self) -> list[str]:
        """The checks behind the verdict, as lines."""
        return [
            c.describe()
            for c in self.checks
            if c.drifted and c.decisive and c.kind in ("input", "performance")
        ]

    def report_row(self, trigger: str) -> dict[str, Any]:
        """The ``drift_reports`` row."""
        return {
            "report_id": self.report_id, "task": self.task, "created_at": self.created_at,
            "trigger": trigger, "reference": self.reference.label,
            "reference_start": self.reference.start, "reference_end": self.reference.end,
            "current_start": self.current.start, "current_end": self.current.end,
            "n_reference": len(self.reference.queries), "n_current": len(self.current.queries),
            "input_drift": self.input_drift, "performance_alarm": self.performance_alarm,
            "action": self.action, "duration_s": self.duration_s,
        }  # fmt: skip

    def check_rows(self) -> list[dict[str, Any]]:
        return [c.row(self.report_id, self.task, self.created_at) for c in self.checks]


# -- gathering ---------------------------------------------------------------------------


def reference_window(
    con: duckdb.DuckDBPyConnection,
    task: str,
    current_start: datetime,
    now: datetime,
    drift: DriftSettings,
) -> Window:
    """The training traffic of the champion at ``now``, or the past window (see the module
    docstring)."""
    past = Window(
        current_start - timedelta(seconds=drift.reference_window_s), current_start, "past window"
    )
    if drift.reference == "past":
        return past
    current = champion(con, task, now)
    if current is None or current.training_run is None:
        name = current.version_id if current else f"{task}-v0"
        return Window(past.start, past.end, f"past window ({name} has no training run)")
    span = training_span(con, current.training_run)
    if span is None or span[0] >= current_start:
        label = f"past window (no stored training traffic of {current.version_id})"
        return Window(past.start, past.end, label)
    end = min(span[1] + timedelta(microseconds=1), current_start)
    return Window(span[0], end, f"training data of {current.version_id} ({current.training_run})")


def _performance_inputs(
    con: duckdb.DuckDBPyConnection, task: str, now: datetime, settings: Settings
) -> PerformanceInputs | str:
    watched: Champion | None = champion(con, task, now)
    if watched is None:
        return "no champion registered"
    p = settings.drift.performance
    attribution = settings.experiments.attribution_s
    baseline_s = timedelta(seconds=p.baseline_s)

    def outcomes(start: datetime, end: datetime) -> list[tuple[datetime, bool]]:
        return unit_outcomes(con, task=task, version=watched.version_id, start=start, end=end,
                             attribution_s=attribution)  # fmt: skip

    before = outcomes(watched.since - baseline_s, watched.since)
    if len(before) >= p.min_units:
        baseline = Window(watched.since - baseline_s, watched.since, "before promotion")
        monitor_start = watched.since
        baseline_outcomes = before
    else:
        baseline = Window(watched.since, watched.since + baseline_s, "after promotion")
        monitor_start = watched.since + baseline_s
        baseline_outcomes = outcomes(watched.since, watched.since + baseline_s)
    settled_end = now - timedelta(seconds=attribution)
    monitored = outcomes(monitor_start, settled_end) if settled_end > monitor_start else []
    return PerformanceInputs(
        version_id=watched.version_id, baseline=baseline,
        baseline_outcomes=[bool(s) for _, s in baseline_outcomes],
        monitored=[(ts, bool(s)) for ts, s in monitored], settled_end=settled_end,
    )  # fmt: skip


def text_encoder(
    con: duckdb.DuckDBPyConnection, settings: Settings, at: datetime | None = None
) -> TextEncoder | None:
    """The embedder of the embedding checks: the champion of ``drift.embedder_task`` (None
    when no task is named, or the named one embeds nothing or cannot load)."""
    from kaizend.models.tasks import build_task

    name = settings.drift.embedder_task
    if not name:
        return None
    task = build_task(settings, name)
    current = champion(con, name, at or datetime.now(UTC))
    version = current.artifact_path if current and current.artifact_path else task.builtin_version
    try:
        encoder = task.text_encoder(version)
    except (FileNotFoundError, OSError) as err:
        log.warning("no embedder for the drift report's embedding checks: %s", err)
        return None
    if encoder is None:
        log.warning("drift.embedder_task %r embeds nothing: no embedding checks", name)
    return encoder


def drift_fields(settings: Settings, task: str) -> DriftFields:
    """The fields ``task``'s input checks compare (`TEXT_FIELDS` unless its kind names some)."""
    from kaizend.models.tasks import build_task

    return build_task(settings, task).drift_fields() or TEXT_FIELDS


def gather(
    con: duckdb.DuckDBPyConnection, settings: Settings, task: str, now: datetime
) -> ReportInputs:
    """Everything a report of ``task`` as of ``now`` needs from the database."""
    drift = settings.drift
    current_start = now - timedelta(seconds=drift.current_window_s)
    reference = reference_window(con, task, current_start, now, drift)
    reference = Window(
        reference.start, reference.end, reference.label,
        window_queries(con, task, reference.start, reference.end),
    )  # fmt: skip
    current = Window(
        current_start, now, "current window", window_queries(con, task, current_start, now)
    )
    volumes = [
        (
            volume(con, task, kind, current_start, now),
            volume(con, task, kind, reference.start, reference.end),
        )
        for kind in VOLUME_KINDS
    ]
    return ReportInputs(
        task=task, now=now, reference=reference, current=current,
        performance=_performance_inputs(con, task, now, settings), volumes=volumes,
        fields=drift_fields(settings, task), encoder=text_encoder(con, settings, now),
    )  # fmt: skip


# -- computing ---------------------------------------------------------------------------


def _histogram(reference: np.ndarray, current: np.ndarray, edges: Any = HISTOGRAM_BINS) -> dict:
    edges = np.histogram_bin_edges(np.concatenate([reference, current]), bins=edges)
    return {
        "edges": [round(float(e), 6) for e in edges],
        "reference": np.histogram(reference, edges)[0].tolist(),
        "current": np.histogram(current, edges)[0].tolist(),
    }


def _auc_threshold(configured: float, n: int, level: float) -> float:
    """The configured AUC, raised to what chance reaches with probability ``level`` for n
    samples per window (the Mann-Whitney null of the AUC)."""
    z = float(scipy_stats.norm.ppf(1 - level))
    return max(configured, 0.5 + z * stats.auc_null_sd(n))


class _Builder:
    """Builds the checks of one report (shared windows and settings)."""

    def __init__(self, inputs: ReportInputs, drift: DriftSettings) -> None:
        self.inputs = inputs
        self.drift = drift
        self.rng = np.random.default_rng(drift.seed)

    def check(self, kind: str, name: str, method: str, **values: Any) -> Check:
        values.setdefault("reference", self.inputs.reference)
        values.setdefault("current", self.inputs.current)
        return Check(kind=kind, field=name, method=method, **values)

    def skipped(self, kind: str, name: str, method: str, threshold: float, direction: str,
                n_ref: int, n_cur: int, why: str, **values: Any) -> Check:  # fmt: skip
        return self.check(kind, name, method, score=None, threshold=threshold,
                          direction=direction, drifted=False, decisive=False, n_reference=n_ref,
                          n_current=n_cur, detail={"skipped": why}, **values)  # fmt: skip

    def small(self, n_ref: int, n_cur: int) -> bool:
        return min(n_ref, n_cur) <= self.drift.small_window_max


def _input_checks(b: _Builder, embed: Embed | None) -> list[Check]:
    drift = b.drift
    ref_rows, cur_rows = b.inputs.reference.queries, b.inputs.current.queries
    spec = b.inputs.fields
    ref_fields = [spec.extract(q.text, q.output) for q in ref_rows]
    cur_fields = [spec.extract(q.text, q.output) for q in cur_rows]
    numeric = {
        name: (
            np.array([f[name] for f in ref_fields if f[name] is not None], float),
            np.array([f[name] for f in cur_fields if f[name] is not None], float),
        )
        for name in spec.numeric
    }
    enough = min(len(ref_rows), len(cur_rows)) >= drift.min_samples
    # The deciding checks that can fire by chance at a known rate share the report's alpha.
    tests = 2 if enough and embed is not None else 0  # the domain classifier and the MMD test
    if enough and b.small(len(ref_rows), len(cur_rows)):
        tests += len(spec.categorical)
    for ref, cur in numeric.values():
        if min(len(ref), len(cur)) >= drift.min_samples and b.small(len(ref), len(cur)):
            tests += 1
    level = stats.bonferroni(drift.alpha, tests)
    checks: list[Check] = []
    checks += _embedding_checks(b, embed, level) if embed is not None else []
    for name in spec.categorical:
        checks += _categorical_checks(b, name, ref_fields, cur_fields, level)
    for name, (ref, cur) in numeric.items():
        checks.append(_numeric_check(b, name, ref, cur, level))
    return checks


def _embedding_checks(b: _Builder, embed: Embed, level: float) -> list[Check]:
    drift = b.drift
    ref_rows, cur_rows = b.inputs.reference.queries, b.inputs.current.queries
    n_ref, n_cur = len(ref_rows), len(cur_rows)
    if min(n_ref, n_cur) < drift.min_samples:
        why = f"fewer than {drift.min_samples} queries in a window"
        return [
            b.skipped("input", "embedding", "domain_auc", drift.domain_auc_threshold, "above",
                      n_ref, n_cur, why),
            b.skipped("input", "embedding", "mmd", 0.0, "above", n_ref, n_cur, why),
        ]  # fmt: skip

    def texts(rows: Sequence[QueryRow]) -> list[str]:
        if len(rows) <= drift.max_samples:
            return [r.text for r in rows]
        picked = b.rng.choice(len(rows), drift.max_samples, replace=False)
        return [rows[i].text for i in sorted(picked)]

    started = time.perf_counter()
    ref_texts, cur_texts = texts(ref_rows), texts(cur_rows)
    vectors = np.asarray(embed(ref_texts + cur_texts), float)
    x, y = vectors[: len(ref_texts)], vectors[len(ref_texts) :]
    embedded_s = time.perf_counter() - started
    domain = stats.domain_classifier(x, y, max_samples=drift.max_samples, seed=drift.seed)
    auc_threshold = _auc_threshold(drift.domain_auc_threshold, domain.n_test_per_window, level)
    mmd = stats.mmd_test(x, y, alpha=level, permutations=drift.mmd_permutations,
                         max_samples=drift.mmd_max_samples, seed=drift.seed)  # fmt: skip
    log.info("embedded %d query texts in %.1f s: domain AUC %.3f, MMD^2 %.2e (p %.3f)",
             len(vectors), embedded_s, domain.auc, mmd.mmd2, mmd.p_value)  # fmt: skip
    scores = _histogram(domain.reference_scores, domain.current_scores, np.linspace(0, 1, 21))
    return [
        b.check("input", "embedding", "domain_auc", score=domain.auc, threshold=auc_threshold,
                direction="above", drifted=domain.auc > auc_threshold, decisive=True,
                n_reference=n_ref, n_current=n_cur,
                detail={"classifier_scores": scores, "per_window": domain.n_per_window,
                        "held_out_per_window": domain.n_test_per_window,
                        "configured_threshold": drift.domain_auc_threshold,
                        "embedded": len(vectors)}),
        b.check("input", "embedding", "mmd", score=mmd.mmd2, threshold=mmd.threshold,
                direction="above", p_value=mmd.p_value, drifted=mmd.p_value < level,
                decisive=True, n_reference=n_ref, n_current=n_cur,
                detail={"bandwidth": mmd.bandwidth, "permutations": drift.mmd_permutations,
                        "level": level, "per_window": [mmd.n_reference, mmd.n_current]}),
    ]  # fmt: skip


def _categorical_checks(
    b: _Builder, name: str, ref_fields: list[dict], cur_fields: list[dict], level: float
) -> list[Check]:
    drift = b.drift
    n_ref, n_cur = len(ref_fields), len(cur_fields)
    if min(n_ref, n_cur) < drift.min_samples:
        why = f"fewer than {drift.min_samples} queries in a window"
        return [
            b.skipped("input", name, "psi", drift.psi_threshold, "above", n_ref, n_cur, why),
            b.skipped("input", name, "chi2", level, "below", n_ref, n_cur, why),
        ]
    counts = stats.align_categories(
        [f[name] for f in ref_fields], [f[name] for f in cur_fields],
        max_categories=drift.max_categories,
    )  # fmt: skip
    detail = {
        "categories": list(counts.labels),
        "reference": counts.reference.astype(int).tolist(),
        "current": counts.current.astype(int).tolist(),
    }
    small = b.small(n_ref, n_cur)
    index = stats.psi(counts.reference, counts.current)
    test = stats.chi_square(counts.reference, counts.current)
    return [
        b.check("input", name, "psi", score=index, threshold=drift.psi_threshold,
                direction="above", drifted=index > drift.psi_threshold, decisive=not small,
                n_reference=n_ref, n_current=n_cur, detail=detail),
        b.check("input", name, "chi2", score=test.p_value, threshold=level, direction="below",
                p_value=test.p_value, drifted=test.p_value < level, decisive=small,
                n_reference=n_ref, n_current=n_cur,
                detail={**detail, "statistic": test.statistic}),
    ]  # fmt: skip


def _numeric_check(b: _Builder, name: str, ref: np.ndarray, cur: np.ndarray, level: float) -> Check:
    drift = b.drift
    small = b.small(len(ref), len(cur))
    method, threshold, direction = (
        ("ks", level, "below") if small else ("wasserstein", drift.wasserstein_threshold, "above")
    )
    if min(len(ref), len(cur)) < drift.min_samples:
        return b.skipped("input", name, method, threshold, direction, len(ref), len(cur),
                         f"fewer than {drift.min_samples} values in a window")  # fmt: skip
    detail = {**_histogram(ref, cur), "reference_median": float(np.median(ref)),
              "current_median": float(np.median(cur))}  # fmt: skip
    if small:
        test = stats.ks(ref, cur)
        return b.check("input", name, "ks", score=test.p_value, threshold=level,
                       direction="below", p_value=test.p_value, drifted=test.p_value < level,
                       decisive=True, n_reference=len(ref), n_current=len(cur),
                       detail={**detail, "statistic": test.statistic})  # fmt: skip
    distance = stats.normalised_wasserstein(ref, cur)
    return b.check("input", name, "wasserstein", score=distance, threshold=threshold,
                   direction="above", drifted=distance > threshold, decisive=True,
                   n_reference=len(ref), n_current=len(cur), detail=detail)  # fmt: skip


def _performance_check(b: _Builder, settings: Settings) -> Check:
    p = settings.drift.performance
    performance = b.inputs.performance
    if isinstance(performance, str):
        return b.skipped("performance", "success_rate", "cusum", p.cusum_h, "above", 0, 0,
                         performance)  # fmt: skip
    settled_start = performance.settled_end - timedelta(seconds=settings.drift.current_window_s)
    recent = Window(settled_start, performance.settled_end, "settled current window")
    values = {"reference": performance.baseline, "current": recent,
              "version_id": performance.version_id}  # fmt: skip
    baseline = np.asarray(performance.baseline_outcomes, float)
    n_base = len(baseline)
    in_window = [s for ts, s in performance.monitored if ts >= settled_start]
    if n_base < p.min_units:
        return b.skipped("performance", "success_rate", "cusum", p.cusum_h, "above", n_base,
                         len(in_window), f"baseline ({performance.baseline.label}) has {n_base} "
                         f"units, fewer than {p.min_units}", **values)  # fmt: skip
    # The in-control rate is the baseline's one-sided 95% lower confidence bound: with the
    # plain estimate, a baseline that came out high by chance would raise false alarms.
    rate = float(baseline.mean())
    p0 = rate - BASELINE_Z * math.sqrt(rate * (1 - rate) / n_base)
    p1 = p0 - p.min_drop
    if p1 <= 0 or p0 >= 1:
        return b.skipped("performance", "success_rate", "cusum", p.cusum_h, "above", n_base,
                         len(in_window), f"baseline success rate {rate:.3f} leaves no room for a "
                         f"drop of {p.min_drop}", **values)  # fmt: skip
    outcomes = np.array([s for _, s in performance.monitored], float)
    path = stats.bernoulli_cusum(outcomes, p0, p1) if len(outcomes) else np.zeros(0)
    times = [ts for ts, _ in performance.monitored]
    recent_path = [s for ts, s in zip(times, path, strict=True) if ts >= settled_start]
    score = float(max(recent_path)) if recent_path else float(path[-1]) if len(path) else 0.0
    crossed = np.flatnonzero(path > p.cusum_h)
    daily: dict[str, float] = {}
    for ts, s in zip(times, path, strict=True):
        day = ts.date().isoformat()
        daily[day] = max(daily.get(day, 0.0), float(s))
    detail = {
        "baseline_rate": rate, "p0": p0, "p1": p1, "h": p.cusum_h,
        "baseline": performance.baseline.label,
        "monitored_units": len(outcomes),
        "monitored_success_rate": float(outcomes.mean()) if len(outcomes) else None,
        "window_success_rate": float(np.mean(in_window)) if in_window else None,
        "first_alarm": times[int(crossed[0])].isoformat() if len(crossed) else None,
        "daily_max": sorted(daily.items())[-CUSUM_PATH_DAYS:],
    }  # fmt: skip
    return b.check("performance", "success_rate", "cusum", score=score, threshold=p.cusum_h,
                   direction="above", drifted=score > p.cusum_h, decisive=True,
                   n_reference=n_base, n_current=len(in_window), detail=detail,
                   **values)  # fmt: skip


def _volume_checks(b: _Builder) -> list[Check]:
    drift = b.drift
    checks = []
    for current, reference in b.inputs.volumes:
        hours_ref = _hours(b.inputs.reference)
        hours_cur = _hours(b.inputs.current)
        detail = {
            "hourly": [[hour.isoformat(), n] for hour, n in current.hourly],
            "per_hour_current": current.events / hours_cur if hours_cur else None,
            "per_hour_reference": reference.events / hours_ref if hours_ref else None,
        }
        # Sparse kinds go quiet every night: a gap counts when it is longer than the
        # configured one and than any in the reference window.
        threshold = max(drift.max_gap_s, reference.longest_gap_s)
        detail["reference_longest_gap_s"] = reference.longest_gap_s
        checks.append(b.check(
            "volume", current.kind, "max_gap_s", score=current.longest_gap_s,
            threshold=threshold, direction="above",
            drifted=current.longest_gap_s > threshold, decisive=True,
            n_reference=reference.events, n_current=current.events, detail=detail,
        ))  # fmt: skip
    return checks


def _hours(window: Window) -> float:
    if window.start is None or window.end is None:
        return 0.0
    return (window.end - window.start).total_seconds() / 3600


def compute(inputs: ReportInputs, settings: Settings, embed: Embed | None) -> TaskReport:
    """The report of ``inputs``; ``embed`` None leaves out the embedding checks."""
    started = time.perf_counter()
    builder = _Builder(inputs, settings.drift)
    checks = _input_checks(builder, embed)
    checks.append(_performance_check(builder, settings))
    checks += _volume_checks(builder)
    report_id = f"{inputs.task}-drift-{inputs.now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:4]}"
    return TaskReport(
        report_id=report_id, task=inputs.task, created_at=inputs.now,
        reference=inputs.reference, current=inputs.current, checks=checks,
        duration_s=time.perf_counter() - started,
    )  # fmt: skip


class CachedEmbedder:
    """An `Embed` over a `TextEncoder` that remembers recent texts.

    Daily reports embed mostly the same reference queries again (the champion's training
    traffic does not change until the next champion), so each text is encoded once while
    it stays among the ``cache_size`` most recently added. The encoder runs on the CPU: the
    daemon leaves the GPU to the training subprocesses (a CUDA context in the daemon would
    hold memory for good).
    """

    def __init__(
        self,
        encoder: TextEncoder,
        *,
        cache_size: int = 20000,
        stop: threading.Event | None = None,
    ) -> None:
        self.encoder = encoder
        self.key = encoder.key
        self._cache: dict[str, np.ndarray] = {}
        self.cache_size = cache_size
        self.stop = stop or threading.Event()
        """Set it to abandon a report between chunks (the daemon is stopping)."""

    def _encode(self, texts: list[str]) -> list[np.ndarray]:
        vectors: list[np.ndarray] = []
        for start in range(0, len(texts), ENCODE_CHUNK):
            if self.stop.is_set():
                raise ReportCancelled("the drift report was abandoned: kaizend is stopping")
            vectors.extend(self.encoder.encode(texts[start : start + ENCODE_CHUNK]))
        return vectors

    def __call__(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), np.float32)
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        fresh = dict(zip(missing, self._encode(missing), strict=True)) if missing else {}
        vectors = np.vstack([fresh[t] if t in fresh else self._cache[t] for t in texts])
        self._cache.update(fresh)
        while len(self._cache) > self.cache_size:
            del self._cache[next(iter(self._cache))]
        return vectors
