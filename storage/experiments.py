"""Per-unit metrics of an experiment step, aggregated in DuckDB from the stored events.

The unit of analysis is the unit of randomisation: routing assigns an arm by ``unit_id``
(sticky per user), so every metric is summed per unit within the step's time window, and
the experiment tests compare arms over units (ratio metrics, see
`models.experiments.stats.ratio_stats`). A query without a ``unit_id`` is a unit of its own.

A unit answered by both arms within one step is a challenger unit of that step, and only its
challenger answers count. Within an experiment (one salt) a unit only ever moves from the
champion to the challenger: a step raises the share, and a resumed step brings the
challenger's units back after the pause. Its champion answers in the step are the ones the
gateway routed before it saw the step's routing entry, in flight when the step began (a
query's ``ts`` is when its answer was published). Leaving such a unit out instead would drop
every unit a step moves, the more surely the more it asks: heavy users would vanish from the
challenger arm, and the first step, whose challenger units all move at its start, could end
with none at all.

A query is one answered by one of the experiment's two versions inside the window, as the
``query_units`` macro of ``schema.sql`` defines it (the one definition that the quality views
and the performance alarm share). Per unit, the columns of `UNIT_COLUMNS`:

- ``queries``; ``successes`` (primary: positive feedback, a rating >= 4 or thumbs up, and no
  correction within ``attribution_s``); ``corrections`` (one within ``attribution_s``);
- ``rated`` (queries with a rating) and ``rating_sum``;
- ``errors`` (the query failed); ``fallbacks`` (the model's answer was replaced by the
  fallback's); ``slow`` (latency over ``latency_budget_ms``: a p95 within the budget keeps
  its rate under 5%); ``latency_sum``;
- each of these again with a ``pre_`` prefix: the unit's queries of the task in the
  pre-period window before the experiment started (any version; shadow answers excluded),
  the covariates of the history adjustment; zeros for a unit without history.

`METRICS` names each metric's numerator and denominator: ``success`` is successes over
queries, summed over the arm's units.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb
import numpy as np

METRICS: dict[str, tuple[str, str]] = {
    "success": ("successes", "queries"),
    "correction_rate": ("corrections", "queries"),
    "rating": ("rating_sum", "rated"),
    "error_rate": ("errors", "queries"),
    "fallback_rate": ("fallbacks", "queries"),
    "slow_rate": ("slow", "queries"),
    "latency_ms": ("latency_sum", "queries"),
}
"""Metric -> (numerator column, denominator column) of the per-unit table."""

BINARY_METRICS = frozenset(
    {"success", "correction_rate", "error_rate", "fallback_rate", "slow_rate"}
)
"""Metrics whose per-query value is 0 or 1 (rates), for which a design effect is defined."""

VALUE_COLUMNS = (
    "queries", "successes", "corrections", "rated", "rating_sum", "errors", "fallbacks", "slow",
    "latency_sum",
)  # fmt: skip
UNIT_COLUMNS = (*VALUE_COLUMNS, *(f"pre_{c}" for c in VALUE_COLUMNS))

UnitTable = dict[str, np.ndarray]
"""One arm's units: a column name of `UNIT_COLUMNS` -> one value per unit."""


def _sums(prefix: str) -> str:
    """The per-unit sums of `VALUE_COLUMNS`, named with ``prefix``."""
    return f"""
       CAST(count(*) AS DOUBLE) AS {prefix}queries,
       sum(CAST(success AS DOUBLE)) AS {prefix}successes,
       sum(CAST(corrected AS DOUBLE)) AS {prefix}corrections,
       CAST(count(rating) AS DOUBLE) AS {prefix}rated,
       coalesce(sum(rating), 0) AS {prefix}rating_sum,
       sum(CAST(failed AS DOUBLE)) AS {prefix}errors,
       sum(CAST(fallback AS DOUBLE)) AS {prefix}fallbacks,
       sum(CAST(latency_ms > $latency_budget AS DOUBLE)) AS {prefix}slow,
       sum(latency_ms) AS {prefix}latency_sum"""


_UNIT_METRICS = f"""
WITH step AS (
    SELECT arm, coalesce(unit_id, 'query:' || query_id) AS unit, {_sums("")}
    FROM query_units($attribution)
    WHERE task = $task AND ts >= $start AND ($end IS NULL OR ts < $end)
      AND ((arm = 'champion' AND model_version = $champion)
           OR (arm = 'challenger' AND model_version = $challenger))
    GROUP BY arm, unit
    -- A unit answered by both arms in one step was moved to the challenger by the step's
    -- routing (its champion answers were in flight): its challenger answers alone count.
    QUALIFY arm = 'challenger' OR count(*) OVER (PARTITION BY unit) = 1
), pre AS (
    SELECT unit_id AS unit, {_sums("pre_")}
    FROM query_units($attribution)
    WHERE $pre_start IS NOT NULL AND task = $task AND unit_id IS NOT NULL
      AND ts >= $pre_start AND ts < $pre_end AND arm IS DISTINCT FROM 'shadow'
    GROUP BY ALL
)
SELECT step.arm, {", ".join(f"CAST(coalesce({c}, 0) AS DOUBLE) AS {c}" for c in UNIT_COLUMNS)}
FROM step LEFT JOIN pre USING (unit)
ORDER BY step.arm, step.unit
"""


def unit_metrics(
    con: duckdb.DuckDBPyConnection,
    *,
    task: str,
    champion: str,
    challenger: str,
    start: datetime,
    end: datetime | None,
    attribution_s: float,
    latency_budget_ms: float = float("inf"),
    pre_start: datetime | None = None,
    pre_end: datetime | None = None,
) -> dict[str, UnitTable]:
    """``{arm: {column: values per unit}}`` for the window [start, end); the ``pre_`` columns
    cover [pre_start, pre_end) (all zero when ``pre_start`` is None)."""
    params = {
        "task": task, "champion": champion, "challenger": challenger, "start": start,
        "end": end, "attribution": attribution_s, "latency_budget": latency_budget_ms,
        "pre_start": pre_start, "pre_end": pre_end or start,
    }  # fmt: skip
    rows = con.execute(_UNIT_METRICS, params).fetchnumpy()
    arms = np.asarray(rows["arm"], dtype=object)
    return {
        arm: {c: np.asarray(rows[c], dtype=float)[arms == arm] for c in UNIT_COLUMNS}
        for arm in ("champion", "challenger")
    }


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
