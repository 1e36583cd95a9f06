"""Drift reports over a simulated month in a real DuckDB file: the windows, the verdicts on the
days before and during the shift, the stored rows and the views operators read."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kaizend.core.config import Settings
from kaizend.models.drift.report import compute, gather
from kaizend.models.fit.month import MonthPlan, daily_reports, load, simulate_month
from kaizend.storage.events import EventStore

from tests.conftest import FIT_TASKS

END = datetime(2026, 11, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def month() -> object:
    return simulate_month(MonthPlan(end=END, queries_per_day=200))


@pytest.fixture
def store(tmp_path: Path, month: object) -> EventStore:
    store = EventStore(tmp_path / "kaizend.duckdb")
    with store.cursor() as con:
        load(con, month)
    return store


def settings(**drift: object) -> Settings:
    return Settings(daemon={"data_dir": "/nonexistent"}, drift=drift, tasks=FIT_TASKS)


def test_the_reference_is_the_champions_training_traffic_or_the_past_window(
    store: EventStore, month: object
) -> None:
    plan = month.plan
    with store.cursor() as con:
        early = gather(con, settings(), "parser", plan.day_start(5))
        later = gather(con, settings(), "parser", plan.day_start(20))
        past = gather(con, settings(reference="past"), "parser", plan.day_start(20))
    # Before the promotion version 0 serves: it has no training run.
    assert early.reference.label == "past window (parser-v0 has no training run)"
    assert early.reference.end == early.current.start == plan.day_start(4)
    # parser-v1 learned from the corrections of the days before its training: the reference
    # is all the traffic of that period, not only the corrected queries.
    trained_at = plan.day_start(plan.promote_day - plan.challenger_days)
    assert later.reference.label == "training data of parser-v1 (parser-sim-run)"
    assert plan.start <= later.reference.start < plan.day_start(1)
    assert later.reference.end <= trained_at
    corrected = {e["query_id"] for e in month.events if e["kind"] == "correction"}
    in_reference = {q.query_id for q in later.reference.queries}
    assert len(in_reference) > 3 * len(in_reference & corrected)
    assert past.reference.label == "past window"
    assert past.reference.start == plan.day_start(12)


def test_daily_reports_flag_the_shift_and_not_the_days_before(store: EventStore) -> None:
    plan = MonthPlan(end=END, queries_per_day=200)
    with store.cursor() as con:
        reports = daily_reports(con, settings(), plan, None, first_day=2)
    by_day = {day: report for day, report in enumerate(reports, 2)}
    shifted = range(plan.days - plan.shift_days + 1, plan.days + 1)
    before = [by_day[d] for d in by_day if d not in shifted]
    # Without drift a report alarms at most with probability alpha (0.05).
    assert sum(r.input_drift for r in before) <= 2
    assert not any(r.performance_alarm for r in before)
    last = by_day[plan.days]
    assert last.input_drift
    drifted = {c.field for c in last.checks if c.kind == "input" and c.drifted and c.decisive}
    assert drifted & {"technology", "location"}
    # The champion's success rate fell with the shift: the CUSUM alarms once those days'
    # queries have settled (after the attribution window).
    assert last.performance_alarm
    (cusum,) = [c for c in last.checks if c.kind == "performance"]
    assert cusum.version_id == "parser-v1" and cusum.score > cusum.threshold
    assert cusum.detail["window_success_rate"] < cusum.detail["p1"] < cusum.detail["p0"]
    assert cusum.detail["baseline"] == "after promotion"  # v1's experiment had too few units
    # The outage (no queries for 8 hours on one day) shows in the next day's volume check.
    outage = by_day[plan.outage_day + 1]
    (gap,) = [c for c in outage.checks if c.kind == "volume" and c.field == "query"]
    assert gap.drifted and gap.score >= 8 * 3600
    assert not any(
        c.drifted for c in by_day[plan.outage_day].checks if c.kind == "volume"
        and c.field == "query"
    )  # fmt: skip
    # Windows of 200 queries decide by tests; the distances are shown for context.
    decisive = {(c.field, c.method) for c in last.checks if c.decisive and c.kind == "input"}
    assert ("technology", "chi2") in decisive and ("technology", "psi") not in decisive
    assert ("query_length", "ks") in decisive

    # Stored: one report row per day, one row per check, and the views.
    with store.cursor() as con:
        assert con.execute("SELECT count(*) FROM drift_reports").fetchone()[0] == len(reports)
        assert con.execute("SELECT count(*) FROM drift_checks").fetchone()[0] == sum(
            len(r.checks) for r in reports
        )
        latest = con.execute(
            "SELECT field, method, drifted, detail FROM latest_drift WHERE kind = 'input' "
            "AND decisive ORDER BY field"
        ).fetchall()
        assert {row[0] for row in latest if row[2]} == drifted
        detail = json.loads(next(row[3] for row in latest if row[0] == "technology"))
        assert sum(detail["reference"]) == len(last.reference.queries)
        assert "Hydro" in detail["categories"]
        quality = dict(con.execute(
            "SELECT day, success_rate FROM daily_quality WHERE model_version = 'parser-v1' "
            "AND queries > 100"
        ).fetchall())  # fmt: skip
        shift_start = plan.day_start(plan.days - plan.shift_days).date()
        before_rates = [r for d, r in quality.items() if d < shift_start]
        during = [r for d, r in quality.items() if d >= shift_start]
        assert max(during) < min(before_rates)
        hours = con.execute(
            "SELECT count(*) FROM hourly_volume WHERE kind = 'query' AND hour >= ? AND hour < ?",
            [plan.day_start(plan.outage_day).replace(tzinfo=None),
             plan.day_start(plan.outage_day + 1).replace(tzinfo=None)],
        ).fetchone()[0]  # fmt: skip
        assert hours == 24 - plan.outage_hours


def test_large_windows_decide_by_distances(store: EventStore, month: object) -> None:
    with store.cursor() as con:
        inputs = gather(con, settings(small_window_max=100), "parser", month.plan.end)
    report = compute(inputs, settings(small_window_max=100), None)
    decisive = {(c.field, c.method) for c in report.checks if c.decisive and c.kind == "input"}
    assert ("technology", "psi") in decisive and ("technology", "chi2") not in decisive
    assert ("query_length", "wasserstein") in decisive
    assert report.input_drift  # the shift is large enough for PSI too


def test_a_window_too_small_is_skipped_with_the_reason(store: EventStore, month: object) -> None:
    with store.cursor() as con:
        inputs = gather(con, settings(current_window_s=600), "parser", month.plan.end)
    report = compute(inputs, settings(current_window_s=600), None)
    technology = [c for c in report.checks if c.field == "technology"]
    assert all(c.score is None and not c.drifted for c in technology)
    assert technology[0].detail["skipped"] == "fewer than 50 queries in a window"
    assert not report.input_drift
    # A task without queries: every input check skipped, nothing drifted, nothing crashed.
    with store.cursor() as con:
        empty = compute(gather(con, settings(), "retriever", month.plan.end), settings(), None)
    assert not empty.input_drift and not empty.performance_alarm


def test_reports_see_no_future_events(store: EventStore, month: object) -> None:
    """A report as of a past time (the simulated days) reads only what happened before it."""
    now = month.plan.day_start(12)
    with store.cursor() as con:
        inputs = gather(con, settings(), "parser", now)
    assert all(q.ts < now for q in inputs.current.queries)
    assert inputs.current.start == now - timedelta(days=1)
