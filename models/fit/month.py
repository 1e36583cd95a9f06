"""A simulated month of FIT parser traffic, for drift reports to find something in.

Queries come from the parser's example generator (`models.fit.querygen`); each is answered by
the version serving at that time, right with the version's accuracy or wrong (a dropped place
or another technology), and users react: a rating for a share of answers (high for right
ones, low for wrong ones, a few raters backwards), and a correction for a share of the wrong
ones. Traffic follows the hours of the day, with one outage.

The story: ``parser-v0`` serves; ``parser-v1``, trained on the corrections of the first days,
takes a share as challenger and is promoted on ``promote_day``; in the last ``shift_days``
the traffic shifts (more hydro and anaerobic digestion questions, and places never asked
about before) and ``v1`` gets many of those wrong, so its success rate drops.

`simulate_month` returns the events (in the shape ``kaizend publish`` reads) and the registry
history (versions, aliases, the training run and its lineage) that goes with them; `load`
writes both into a DuckDB file with kaizend's schema, as a daemon would have stored them;
`daily_reports` then stores the report the daemon would have made at the end of each day.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import duckdb
import pyarrow as pa
from kaizend.core.config import Settings
from kaizend.models.drift.report import Embed, TaskReport, compute, gather
from kaizend.models.fit.querygen import generate_examples
from kaizend.storage.drift import DriftStore

TASK = "parser"
RUN_ID = "parser-sim-run"
_SHIFT_TECHNOLOGIES = ("Hydro", "Anaerobic digestion")
_HOUR_WEIGHTS = (1, 1, 1, 1, 1, 2, 3, 5, 7, 8, 8, 8, 7, 8, 8, 8, 7, 6, 5, 4, 3, 2, 2, 1)


@dataclass(frozen=True)
class MonthPlan:
    end: datetime
    """The end of the month (the last day ends here)."""
    days: int = 30
    queries_per_day: int = 300
    shift_days: int = 5
    promote_day: int = 10
    """Day (0-based) at whose start parser-v1 becomes champion."""
    challenger_days: int = 3
    challenger_share: float = 0.25
    v0_error: float = 0.15
    v1_error: float = 0.08
    shifted_error: float = 0.5
    """v1's error rate on the shifted queries (new places, more hydro and AD)."""
    unseen_place_share: float = 0.25
    """Share of the place names kept out of the traffic until the shift."""
    new_place_share: float = 0.4
    """Share of the shifted traffic asking about those places."""
    feedback_share: float = 0.6
    correction_share: float = 0.5
    outage_day: int = 18
    outage_hours: int = 8
    seed: int = 0

    @property
    def start(self) -> datetime:
        return self.end - timedelta(days=self.days)

    def day_start(self, day: int) -> datetime:
        return self.start + timedelta(days=day)


@dataclass
class Month:
    plan: MonthPlan
    events: list[dict[str, Any]] = field(default_factory=list)
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Rows of model_versions, alias_history, training_jobs and training_events."""

    def count(self, kind: str) -> int:
        return sum(e["kind"] == kind for e in self.events)


def _corrupt(rng: random.Random, parse: dict[str, Any]) -> dict[str, Any]:
    """A wrong parse: the place dropped, a capacity bound dropped, or another technology."""
    wrong = dict(parse)
    if wrong.get("location") and rng.random() < 0.7:
        wrong.pop("location")
        wrong.pop("postcode_patterns", None)
    elif wrong.get("capacity_min_kw") is not None:
        wrong.pop("capacity_min_kw")
    else:
        solar = wrong.get("technology") == "Photovoltaic"
        wrong["technology"] = "Wind" if solar else "Photovoltaic"
    return wrong


def simulate_month(plan: MonthPlan) -> Month:
    """The month's events, in time order, and its registry history."""
    rng = random.Random(plan.seed)
    pool = generate_examples(seed=plan.seed)
    places = sorted({e["expected"]["location"] for e in pool if e["expected"].get("location")})
    unseen = set(rng.sample(places, int(len(places) * plan.unseen_place_share)))

    def shifted(example: dict[str, Any]) -> bool:
        expected = example["expected"]
        return (
            expected.get("location") in unseen or expected.get("technology") in _SHIFT_TECHNOLOGIES
        )

    normal = [e for e in pool if e["expected"].get("location") not in unseen]
    new_places = [e for e in pool if e["expected"].get("location") in unseen]
    shift_weights = [
        4.0 if e["expected"].get("technology") in _SHIFT_TECHNOLOGIES else 1.0 for e in pool
    ]
    month = Month(plan)
    promoted_at = plan.day_start(plan.promote_day)
    challenger_from = plan.day_start(plan.promote_day - plan.challenger_days)
    shift_from = plan.day_start(plan.days - plan.shift_days)
    namespace = uuid.UUID(int=rng.getrandbits(128))
    number = 0
    for day in range(plan.days):
        for hour, weight in enumerate(_HOUR_WEIGHTS):
            if day == plan.outage_day and 8 <= hour < 8 + plan.outage_hours:
                continue
            expected_n = plan.queries_per_day * weight / sum(_HOUR_WEIGHTS)
            n = int(expected_n) + (rng.random() < expected_n - int(expected_n))
            hour_start = plan.day_start(day) + timedelta(hours=hour)
            for ts in sorted(hour_start + timedelta(seconds=rng.uniform(0, 3600))
                             for _ in range(n)):  # fmt: skip
                in_shift = ts >= shift_from
                if not in_shift:
                    example = rng.choice(normal)
                elif rng.random() < plan.new_place_share:
                    example = rng.choice(new_places)
                else:
                    example = rng.choices(pool, shift_weights)[0]
                if ts >= promoted_at:
                    arm, version = "champion", "parser-v1"
                elif ts >= challenger_from and rng.random() < plan.challenger_share:
                    arm, version = "challenger", "parser-v1"
                else:
                    arm, version = "champion", "parser-v0"
                error = plan.v0_error if version == "parser-v0" else plan.v1_error
                if in_shift and shifted(example) and version == "parser-v1":
                    error = plan.shifted_error
                month.events.extend(_query_events(
                    rng, namespace, number, ts, example, arm, version, rng.random() < error, plan
                ))  # fmt: skip
                number += 1
    month.events.sort(key=lambda e: e["ts"])
    month.history = _history(month, challenger_from, promoted_at)
    return month


def _query_events(
    rng: random.Random,
    namespace: uuid.UUID,
    number: int,
    ts: datetime,
    example: dict[str, Any],
    arm: str,
    version: str,
    wrong: bool,
    plan: MonthPlan,
) -> list[dict[str, Any]]:
    query_id = f"sim-q{number}"

    def event_id(suffix: str) -> str:
        return str(uuid.uuid5(namespace, f"{number}-{suffix}"))

    parse = _corrupt(rng, example["expected"]) if wrong else example["expected"]
    failed = rng.random() < 0.005
    events: list[dict[str, Any]] = [{
        "kind": "query", "event_id": event_id("query"), "query_id": query_id,
        "ts": ts.isoformat(), "task": TASK, "text": example["text"], "model_version": version,
        "arm": arm, "unit_id": f"u{rng.randrange(5000)}",
        "output": None if failed else {"parsed": parse, "fallback_used": rng.random() < 0.02},
        "latency_ms": round(rng.lognormvariate(4.6, 0.4), 2),
        "error": "timeout" if failed else None, "service": "fit-search-sim",
    }]  # fmt: skip
    if rng.random() < plan.feedback_share:
        good = not wrong and not failed
        if rng.random() < 0.05:
            good = not good  # a rater who got it backwards
        events.append({
            "kind": "feedback", "event_id": event_id("rating"), "query_id": query_id,
            "ts": (ts + timedelta(seconds=rng.uniform(5, 300))).isoformat(),
            "rating": rng.choice((4, 5, 5)) if good else rng.choice((1, 2, 2)),
        })  # fmt: skip
    if (wrong or failed) and rng.random() < plan.correction_share:
        events.append({
            "kind": "correction", "event_id": event_id("correction"), "query_id": query_id,
            "ts": (ts + timedelta(seconds=rng.uniform(60, 1800))).isoformat(),
            "corrected_output": example["expected"], "author": "reviewer",
        })  # fmt: skip
    return events


def _history(month: Month, trained_at: datetime, promoted_at: datetime) -> dict[str, list]:
    plan = month.plan
    born = plan.start - timedelta(hours=1)
    corrections = [
        e["event_id"] for e in month.events
        if e["kind"] == "correction" and datetime.fromisoformat(e["ts"]) < trained_at
    ]  # fmt: skip
    metrics = json.dumps({"simulated": True})
    versions = [
        {"version_id": "parser-v0", "task": TASK, "status": "retired", "base_model": "rules",
         "artifact_path": None, "parent_version": None, "training_run": None,
         "created_at": born, "metrics": None, "status_reason": "initial champion",
         "status_changed_at": promoted_at},
        {"version_id": "parser-v1", "task": TASK, "status": "champion",
         "base_model": "simulated", "artifact_path": None, "parent_version": "parser-v0",
         "training_run": RUN_ID, "created_at": trained_at, "metrics": metrics,
         "status_reason": "promoted by a simulated experiment",
         "status_changed_at": promoted_at},
    ]  # fmt: skip
    aliases = [
        {"task": TASK, "alias": "champion", "version_id": "parser-v0", "assigned_at": born,
         "reason": "initial champion: the built-in 'rules'"},
        {"task": TASK, "alias": "challenger", "version_id": "parser-v1",
         "assigned_at": trained_at, "reason": "offline gate passed (simulated)"},
        {"task": TASK, "alias": "champion", "version_id": "parser-v1",
         "assigned_at": promoted_at, "reason": "experiment: significantly better (simulated)"},
        {"task": TASK, "alias": "challenger", "version_id": None, "assigned_at": promoted_at,
         "reason": "promoted"},
    ]  # fmt: skip
    jobs = [{
        "job_id": f"{RUN_ID}.1", "run_id": RUN_ID, "task": TASK, "attempt": 1,
        "state": "succeeded", "reason": "threshold (simulated)", "requested_at": trained_at,
        "started_at": trained_at, "finished_at": trained_at, "cutoff": trained_at,
        "snapshot": None, "champion": "parser-v0", "run_dir": "/nonexistent",
        "version_id": "parser-v1",
    }]  # fmt: skip
    lineage = [
        {"run_id": RUN_ID, "kind": "correction", "event_id": event_id, "role": "train"}
        for event_id in corrections
    ]
    return {"model_versions": versions, "alias_history": aliases, "training_jobs": jobs,
            "training_events": lineage}  # fmt: skip


_TABLES = {"query": "query_events", "feedback": "feedback_events",
           "correction": "correction_events"}  # fmt: skip
_JSON = ("output", "corrected_output")


def _row(event: dict[str, Any]) -> dict[str, Any]:
    row = {k: v for k, v in event.items() if k != "kind"}
    row["ts"] = datetime.fromisoformat(row["ts"])
    for name in _JSON:
        if name in row and row[name] is not None:
            row[name] = json.dumps(row[name])
    stored_at = row["ts"] + timedelta(seconds=1)
    return {**row, "schema_version": 1, "extra": None, "ingested_at": stored_at}


def load(con: duckdb.DuckDBPyConnection, month: Month) -> None:
    """Write the month's events and history into ``con`` (which has kaizend's schema)."""
    for kind, table in _TABLES.items():
        rows = [_row(e) for e in month.events if e["kind"] == kind]
        _insert(con, table, rows)
    for table, rows in month.history.items():
        _insert(con, table, rows)


def _insert(con: duckdb.DuckDBPyConnection, table: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    con.register("_simulated", pa.Table.from_pylist(rows))
    try:
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _simulated")
    finally:
        con.unregister("_simulated")


def daily_reports(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    plan: MonthPlan,
    embed: Embed | None,
    *,
    first_day: int = 1,
) -> list[TaskReport]:
    """The parser's drift report as of the end of each day from ``first_day``, each stored."""
    reports = []
    for day in range(first_day, plan.days + 1):
        report = compute(gather(con, settings, TASK, plan.day_start(day)), settings, embed)
        DriftStore(con).add(report.report_row("schedule"), report.check_rows())
        reports.append(report)
    return reports
