"""Per-arm metrics of an experiment step, aggregated in DuckDB from the stored events.

A unit is a query answered by one of the experiment's two versions inside the step's time
window, as the ``query_units`` macro of ``schema.sql`` defines it (the one definition that
the quality views and the performance alarm share). Its metrics:

- ``success`` (primary): it got positive feedback (a rating >= 4 or thumbs up) and no
  correction arrived within ``attribution_s`` of the query;
- ``correction_rate``: a correction arrived within ``attribution_s``;
- ``rating``: its mean rating (units with a rating only);
- ``error_rate``: the query failed; ``fallback_rate``: the model's answer was replaced by
  the fallback's (``fallback_used``); ``slow_rate``: its latency was over
  ``latency_budget_ms`` (a tail-latency guardrail: a p95 within the budget keeps it under
  5%); ``latency_ms``: its latency.

Each comes back as the summary statistics (count, sum, sum of squares) the experiment tests
take, per arm, so no raw values leave the database.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb

METRICS = (
    "success", "correction_rate", "rating", "error_rate", "fallback_rate", "slow_rate",
    "latency_ms",
)  # fmt: skip

_ARM_METRICS = """
SELECT arm,
       count(*) AS n,
       sum(CAST(success AS DOUBLE)) AS success,
       sum(CAST(corrected AS DOUBLE)) AS correction_rate,
       count(rating) AS rating_n, sum(rating) AS rating_sum, sum(rating * rating) AS rating_sq,
       sum(CAST(failed AS DOUBLE)) AS error_rate,
       sum(CAST(fallback AS DOUBLE)) AS fallback_rate,
       sum(CAST(latency_ms > $latency_budget AS DOUBLE)) AS slow_rate,
       sum(latency_ms) AS latency_sum, sum(latency_ms * latency_ms) AS latency_sq
FROM query_units($attribution)
WHERE task = $task AND ts >= $start AND ($end IS NULL OR ts < $end)
  AND ((arm = 'champion' AND model_version = $champion)
       OR (arm = 'challenger' AND model_version = $challenger))
GROUP BY arm
"""

Summary = tuple[float, float, float]
"""(n, sum, sum of squares) of one metric."""


def arm_metrics(
    con: duckdb.DuckDBPyConnection,
    *,
    task: str,
    champion: str,
    challenger: str,
    start: datetime,
    end: datetime | None,
    attribution_s: float,
    latency_budget_ms: float = float("inf"),
) -> dict[str, dict[str, Summary]]:
    """``{arm: {metric: (n, sum, sum_squares)}}`` for the window [start, end)."""
    params = {
        "task": task, "champion": champion, "challenger": challenger, "start": start,
        "end": end, "attribution": attribution_s, "latency_budget": latency_budget_ms,
    }  # fmt: skip
    out: dict[str, dict[str, Summary]] = {
        arm: {metric: (0.0, 0.0, 0.0) for metric in METRICS} for arm in ("champion", "challenger")
    }
    for row in con.execute(_ARM_METRICS, params).fetchall():
        arm, n, success, corrected, r_n, r_sum, r_sq, failed, fell_back, slow, l_sum, l_sq = row
        out[arm] = {
            # A proportion's sum of squares is its number of successes.
            "success": (n, success, success),
            "correction_rate": (n, corrected, corrected),
            "rating": (r_n, r_sum or 0.0, r_sq or 0.0),
            "error_rate": (n, failed, failed),
            "fallback_rate": (n, fell_back, fell_back),
            "slow_rate": (n, slow, slow),
            "latency_ms": (n, l_sum or 0.0, l_sq or 0.0),
        }
    return out


@dataclass(frozen=True)
class Experiment:
    experiment_id: str
    task: str
    champion: str
    challenger: str
    salt: str
    status: str
    created_at: datetime


@dataclass(frozen=True)
class Step:
    step: int
    weight: float
    started_at: datetime
    ended_at: datetime | None


class ExperimentStore:
    """Experiments, their steps and their decision log on a DuckDB connection."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def create(self, task: str, champion: str, challenger: str, weight: float) -> Experiment:
        """A running experiment at its first step."""
        now = datetime.now(UTC)
        experiment_id = f"{task}-{challenger}-{uuid.uuid4().hex[:6]}"
        self.con.execute(
            "INSERT INTO experiments VALUES (?, ?, ?, ?, ?, 'running', ?, NULL, NULL)",
            [experiment_id, task, champion, challenger, uuid.uuid4().hex, now],
        )
        self.con.execute(
            "INSERT INTO experiment_steps VALUES (?, 1, ?, ?, NULL)", [experiment_id, weight, now]
        )
        return self.get(experiment_id)

    def get(self, experiment_id: str) -> Experiment:
        row = self.con.execute(
            "SELECT experiment_id, task, champion, challenger, salt, status, created_at "
            "FROM experiments WHERE experiment_id = ?",
            [experiment_id],
        ).fetchone()
        if row is None:
            raise LookupError(f"no experiment {experiment_id!r}: see `kaizend experiments list`")
        return Experiment(*row)

    def running(self) -> list[Experiment]:
        rows = self.con.execute(
            "SELECT experiment_id FROM experiments WHERE status = 'running' ORDER BY created_at"
        ).fetchall()
        return [self.get(row[0]) for row in rows]

    def active_for(self, task: str) -> Experiment | None:
        row = self.con.execute(
            "SELECT experiment_id FROM experiments WHERE task = ? AND status IN "
            "('running', 'paused')",
            [task],
        ).fetchone()
        return self.get(row[0]) if row else None

    def steps(self, experiment_id: str) -> list[Step]:
        rows = self.con.execute(
            "SELECT step, weight, started_at, ended_at FROM experiment_steps "
            "WHERE experiment_id = ? ORDER BY step",
            [experiment_id],
        ).fetchall()
        return [Step(*row) for row in rows]

    def next_step(self, experiment_id: str, weight: float) -> None:
        """Close the current step and open the next one with ``weight``."""
        now = datetime.now(UTC)
        current = self.steps(experiment_id)[-1]
        self.con.execute(
            "UPDATE experiment_steps SET ended_at = ? WHERE experiment_id = ? AND step = ?",
            [now, experiment_id, current.step],
        )
        self.con.execute(
            "INSERT INTO experiment_steps VALUES (?, ?, ?, ?, NULL)",
            [experiment_id, current.step + 1, weight, now],
        )

    def pause(self, experiment_id: str, reason: str) -> None:
        """Close the current step; no step is open while the experiment is paused."""
        now = datetime.now(UTC)
        self.con.execute(
            "UPDATE experiments SET status = 'paused', reason = ? WHERE experiment_id = ?",
            [f"paused: {reason}", experiment_id],
        )
        self.con.execute(
            "UPDATE experiment_steps SET ended_at = ? WHERE experiment_id = ? AND ended_at IS NULL",
            [now, experiment_id],
        )

    def resume(self, experiment_id: str, reason: str) -> None:
        """Open a new step at the last step's weight: its data is a stratum of its own."""
        last = self.steps(experiment_id)[-1]
        self.con.execute(
            "UPDATE experiments SET status = 'running', reason = ? WHERE experiment_id = ?",
            [f"resumed: {reason}", experiment_id],
        )
        self.con.execute(
            "INSERT INTO experiment_steps VALUES (?, ?, ?, ?, NULL)",
            [experiment_id, last.step + 1, last.weight, datetime.now(UTC)],
        )

    def finish(self, experiment_id: str, status: str, reason: str) -> None:
        now = datetime.now(UTC)
        self.con.execute(
            "UPDATE experiments SET status = ?, ended_at = ?, reason = ? WHERE experiment_id = ?",
            [status, now, reason, experiment_id],
        )
        self.con.execute(
            "UPDATE experiment_steps SET ended_at = ? WHERE experiment_id = ? AND ended_at IS NULL",
            [now, experiment_id],
        )

    def log(self, experiment_id: str, row: dict[str, object]) -> None:
        """Append one tick's decision (the columns of experiment_decisions)."""
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        self.con.execute(
            f"INSERT INTO experiment_decisions (experiment_id, decided_at, {columns}) "
            f"VALUES (?, ?, {marks})",
            [experiment_id, datetime.now(UTC), *row.values()],
        )
