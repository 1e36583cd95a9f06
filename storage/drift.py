"""What drift reports read from DuckDB, and where they are stored.

Reads: the queries of a time window, the span of traffic the champion's training events
cover (`training_events` of its run), the champion's promotion, the success of each of its
queries (the ``query_units`` macro: the same definition as the experiments'), and the event
times a volume check looks for gaps in. Writes: one ``drift_reports`` row per task and run
and one ``drift_checks`` row per check, in one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb

VOLUME_KINDS: tuple[str, ...] = ("query", "feedback", "correction")


@dataclass(frozen=True)
class QueryRow:
    query_id: str
    ts: datetime
    text: str
    output: Any
    """The stored output (JSON text), or None."""


def window_queries(
    con: duckdb.DuckDBPyConnection, task: str, start: datetime, end: datetime
) -> list[QueryRow]:
    """The task's queries with ``start <= ts < end``, oldest first."""
    rows = con.execute(
        "SELECT query_id, ts, text, output FROM query_events "
        "WHERE task = ? AND ts >= ? AND ts < ? ORDER BY ts, query_id",
        [task, start, end],
    ).fetchall()
    return [QueryRow(*row) for row in rows]


@dataclass(frozen=True)
class Champion:
    version_id: str
    since: datetime
    """When it became champion (its newest alias_history row)."""
    training_run: str | None
    artifact_path: str | None
    """Its version directory; None for a built-in version 0."""


def champion(con: duckdb.DuckDBPyConnection, task: str, at: datetime) -> Champion | None:
    """The task's champion at time ``at``, or None before the daemon's first start."""
    row = con.execute(
        "SELECT a.version_id, a.assigned_at, v.training_run, v.artifact_path "
        "FROM alias_history a JOIN model_versions v USING (version_id) "
        "WHERE a.task = ? AND a.alias = 'champion' AND a.assigned_at <= ? "
        "ORDER BY a.assigned_at DESC LIMIT 1",
        [task, at],
    ).fetchone()
    return Champion(*row) if row else None


def training_span(con: duckdb.DuckDBPyConnection, run_id: str) -> tuple[datetime, datetime] | None:
    """First and last time of the queries whose signal a training run learned from."""
    row = con.execute(
        """
        WITH signal AS (
            SELECT s.query_id FROM training_events t
            JOIN (SELECT event_id, query_id FROM correction_events
                  UNION ALL SELECT event_id, query_id FROM feedback_events) s USING (event_id)
            WHERE t.run_id = ? AND t.role = 'train'
        )
        SELECT min(q.ts), max(q.ts) FROM query_events q WHERE q.query_id IN (FROM signal)
        """,
        [run_id],
    ).fetchone()
    return (row[0], row[1]) if row and row[0] is not None else None


def unit_outcomes(
    con: duckdb.DuckDBPyConnection,
    *,
    task: str,
    version: str,
    start: datetime,
    end: datetime,
    attribution_s: float,
) -> list[tuple[datetime, bool]]:
    """(time, success) of each query ``version`` answered in [start, end), oldest first."""
    return con.execute(
        "SELECT ts, success FROM query_units($attribution) WHERE task = $task "
        "AND model_version = $version AND ts >= $start AND ts < $end ORDER BY ts, query_id",
        {"attribution": attribution_s, "task": task, "version": version, "start": start,
         "end": end},
    ).fetchall()  # fmt: skip


def _kind_times(kind: str) -> str:
    if kind == "query":
        return "SELECT ts FROM query_events WHERE task = $task"
    table = {"feedback": "feedback_events", "correction": "correction_events"}[kind]
    return (
        f"SELECT s.ts FROM {table} s WHERE s.query_id IN "
        "(SELECT query_id FROM query_events WHERE task = $task)"
    )


@dataclass(frozen=True)
class Volume:
    kind: str
    events: int
    longest_gap_s: float
    """The longest stretch in the window without an event (window edges included)."""
    hourly: list[tuple[datetime, int]]


def volume(
    con: duckdb.DuckDBPyConnection, task: str, kind: str, start: datetime, end: datetime
) -> Volume:
    """Events of ``kind`` belonging to the task's queries in [start, end): count, gaps, hours."""
    times = f"SELECT ts FROM ({_kind_times(kind)}) WHERE ts >= $start AND ts < $end"
    params = {"task": task, "start": start, "end": end}
    events, gap = con.execute(
        f"""
        WITH t AS ({times}), edges AS (SELECT ts FROM t UNION ALL SELECT $start UNION ALL
                                       SELECT $end)
        SELECT (SELECT count(*) FROM t),
               max(epoch(ts) - epoch(previous)) FROM (
                   SELECT ts, lag(ts) OVER (ORDER BY ts) AS previous FROM edges)
        """,
        params,
    ).fetchone()
    hourly = con.execute(
        f"SELECT date_trunc('hour', timezone('UTC', ts)) AS hour, count(*) FROM ({times}) "
        "GROUP BY 1 ORDER BY 1",
        params,
    ).fetchall()
    return Volume(kind, int(events), float(gap or 0.0), [(h, int(n)) for h, n in hourly])


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str)


REPORT_COLUMNS = (
    "report_id", "task", "created_at", "trigger", "reference", "reference_start",
    "reference_end", "current_start", "current_end", "n_reference", "n_current", "input_drift",
    "performance_alarm", "action", "duration_s",
)  # fmt: skip
CHECK_COLUMNS = (
    "report_id", "task", "checked_at", "kind", "field", "method", "version_id",
    "reference_start", "reference_end", "current_start", "current_end", "n_reference",
    "n_current", "score", "threshold", "direction", "p_value", "drifted", "decisive", "detail",
)  # fmt: skip


class DriftStore:
    """Drift reports on a DuckDB connection."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def add(self, report: Mapping[str, Any], checks: Sequence[Mapping[str, Any]]) -> None:
        """Store one report and its checks, all or nothing."""
        self.con.begin()
        try:
            self.con.execute(
                f"INSERT INTO drift_reports ({', '.join(REPORT_COLUMNS)}) "
                f"VALUES ({', '.join('?' for _ in REPORT_COLUMNS)})",
                [report[c] for c in REPORT_COLUMNS],
            )
            if checks:
                self.con.executemany(
                    f"INSERT INTO drift_checks ({', '.join(CHECK_COLUMNS)}) "
                    f"VALUES ({', '.join('?' for _ in CHECK_COLUMNS)})",
                    [
                        [_json(c[k]) if k == "detail" else c[k] for k in CHECK_COLUMNS]
                        for c in checks
                    ],
                )
        except BaseException:
            self.con.rollback()
            raise
        self.con.commit()
