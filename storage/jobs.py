"""Training jobs in DuckDB: the queue as operators see it, and each job's lifecycle.

A *run* is one training on one snapshot of the stored events; every attempt at it is a *job*
(``<run_id>.<attempt>``). Jobs move ``queued`` -> ``running`` -> ``succeeded`` | ``failed``;
a job whose worker was stopped mid-way is ``interrupted`` until a worker takes it again.
A job is recorded ``queued`` before its message is published to the work queue;
``published_at`` stays empty until JetStream has acknowledged that message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb

ACTIVE_STATES = ("queued", "running", "interrupted")
STATES = (*ACTIVE_STATES, "succeeded", "failed")


@dataclass(frozen=True)
class Job:
    job_id: str
    run_id: str
    task: str
    attempt: int
    state: str
    reason: str
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cutoff: datetime
    snapshot: dict[str, int] | None
    champion: str | None
    run_dir: str
    worker: str | None
    pid: int | None
    progress: dict[str, Any] | None
    error: str | None
    retryable: bool | None
    version_id: str | None
    published_at: datetime | None


_COLUMNS = ", ".join(Job.__dataclass_fields__)
_JSON_FIELDS = ("snapshot", "progress")


def _job(row: Sequence[Any]) -> Job:
    values = dict(zip(Job.__dataclass_fields__, row, strict=True))
    for name in _JSON_FIELDS:
        if values[name] is not None:
            values[name] = json.loads(values[name])
    return Job(**values)


def job_id(run_id: str, attempt: int) -> str:
    return f"{run_id}.{attempt}"


class JobStore:
    """Job rows on a DuckDB connection (the daemon's cursor, or a test's)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def _one(self, where: str, params: Sequence[Any]) -> Job | None:
        row = self.con.execute(
            f"SELECT {_COLUMNS} FROM training_jobs WHERE {where} "
            "ORDER BY requested_at DESC, attempt DESC LIMIT 1",
            list(params),
        ).fetchone()
        return _job(row) if row else None

    def create(
        self,
        *,
        run_id: str,
        task: str,
        attempt: int,
        reason: str,
        cutoff: datetime,
        snapshot: Mapping[str, int] | None,
        champion: str | None,
        run_dir: str,
    ) -> Job:
        """Queue a job (``attempt`` 1 of a new run, or a retry of ``run_id``)."""
        self.con.execute(
            "INSERT INTO training_jobs (job_id, run_id, task, attempt, state, reason, "
            "requested_at, cutoff, snapshot, champion, run_dir) "
            "VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?)",
            [job_id(run_id, attempt), run_id, task, attempt, reason, datetime.now(UTC), cutoff,
             json.dumps(dict(snapshot)) if snapshot is not None else None, champion, run_dir],
        )  # fmt: skip
        return self.get(job_id(run_id, attempt))

    def get(self, job: str) -> Job:
        found = self._one("job_id = ?", [job])
        if found is None:
            raise LookupError(f"no training job {job!r}: see `kaizend jobs`")
        return found

    def find(self, job: str) -> Job | None:
        return self._one("job_id = ?", [job])

    def active(self, task: str) -> Job | None:
        """The task's job that is queued, running or interrupted (at most one: single flight)."""
        states = ", ".join(f"'{state}'" for state in ACTIVE_STATES)
        return self._one(f"task = ? AND state IN ({states})", [task])

    def unpublished(self, task: str) -> Job | None:
        """The task's queued job whose message JetStream has not acknowledged."""
        return self._one("task = ? AND state = 'queued' AND published_at IS NULL", [task])

    def latest(self, task: str) -> Job | None:
        """The task's most recently requested job, whatever its state."""
        return self._one("task = ?", [task])

    def published(self, job: str) -> None:
        """JetStream acknowledged the job's message: it is on the work queue."""
        self.con.execute(
            "UPDATE training_jobs SET published_at = ? WHERE job_id = ? AND published_at IS NULL",
            [datetime.now(UTC), job],
        )

    def last_succeeded(self, task: str) -> Job | None:
        return self._one("task = ? AND state = 'succeeded'", [task])

    def started(self, job: str, *, worker: str, pid: int | None) -> None:
        self.con.execute(
            "UPDATE training_jobs SET state = 'running', started_at = coalesce(started_at, ?), "
            "worker = ?, pid = ?, error = NULL WHERE job_id = ?",
            [datetime.now(UTC), worker, pid, job],
        )

    def progressed(self, job: str, progress: Mapping[str, Any]) -> None:
        self.con.execute(
            "UPDATE training_jobs SET progress = ? WHERE job_id = ? AND state = 'running'",
            [json.dumps(dict(progress)), job],
        )

    def interrupted(self, job: str, reason: str) -> None:
        self.con.execute(
            "UPDATE training_jobs SET state = 'interrupted', error = ?, pid = NULL "
            "WHERE job_id = ? AND state = 'running'",
            [reason, job],
        )

    def finished(
        self,
        job: str,
        *,
        succeeded: bool,
        error: str | None = None,
        retryable: bool = True,
        version_id: str | None = None,
    ) -> None:
        self.con.execute(
            "UPDATE training_jobs SET state = ?, finished_at = ?, error = ?, retryable = ?, "
            "version_id = ?, pid = NULL WHERE job_id = ?",
            ["succeeded" if succeeded else "failed", datetime.now(UTC), error,
             None if succeeded else retryable, version_id, job],
        )  # fmt: skip

    def awaiting_retry(self, task: str, *, max_attempts: int) -> Job | None:
        """The task's newest job when it failed and its run has attempts left: the run is
        still in flight, waiting for its backoff to pass."""
        last = self.latest(task)
        if last is None or last.state != "failed" or last.attempt >= max_attempts:
            return None
        return None if last.retryable is False else last

    def retry_due(self, task: str, *, max_attempts: int, backoff_s: float) -> Job | None:
        """The job `awaiting_retry` returns once it has waited its backoff (``backoff_s``
        before the second attempt, doubling after each further failure)."""
        last = self.awaiting_retry(task, max_attempts=max_attempts)
        if last is None:
            return None
        wait = timedelta(seconds=backoff_s * 2 ** (last.attempt - 1))
        return last if last.finished_at + wait <= datetime.now(UTC) else None

    def record_events(self, run_id: str, role: str, event_ids: Mapping[str, Sequence[str]]) -> None:
        """Lineage: the events a run trained on (``train``) or held back (``fresh``)."""
        for kind, ids in event_ids.items():
            if ids:
                self.con.execute(
                    "INSERT INTO training_events SELECT ?, ?, unnest(?), ?",
                    [run_id, kind, list(ids), role],
                )

    def list(self, limit: int = 50) -> list[Job]:
        rows = self.con.execute(
            f"SELECT {_COLUMNS} FROM training_jobs ORDER BY requested_at DESC, attempt DESC "
            "LIMIT ?",
            [limit],
        ).fetchall()
        return [_job(row) for row in rows]
