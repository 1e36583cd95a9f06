"""Training jobs and snapshots in a real DuckDB file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kaizend.storage.events import EventStore
from kaizend.storage.jobs import JobStore
from kaizend.storage.snapshots import export_snapshot, load_snapshot

T0 = datetime(2026, 11, 23, 10, tzinfo=UTC)


def create(jobs: JobStore, attempt: int = 1) -> str:
    return jobs.create(
        run_id="parser-run", task="parser", attempt=attempt, reason="threshold", cutoff=T0,
        snapshot={"correction_events": 3}, champion="parser-v0", run_dir="/runs/parser-run",
    ).job_id  # fmt: skip


def test_a_job_goes_from_queued_to_running_to_failed_and_its_retry_waits_its_backoff(
    tmp_path: Path,
) -> None:
    jobs = JobStore(EventStore(tmp_path / "k.duckdb").cursor())
    first = create(jobs)
    assert jobs.active("parser").state == "queued"
    jobs.started(first, worker="box:1", pid=42)
    jobs.progressed(first, {"step": 3, "total_steps": 10})
    assert (jobs.get(first).state, jobs.get(first).progress["step"]) == ("running", 3)

    jobs.finished(first, succeeded=False, error="boom")
    assert jobs.active("parser") is None
    # Backoff 60 s before the second attempt: not due yet (the run is still in flight), then due.
    assert jobs.retry_due("parser", max_attempts=3, backoff_s=60) is None
    assert jobs.awaiting_retry("parser", max_attempts=3).job_id == first
    jobs.con.execute("UPDATE training_jobs SET finished_at = finished_at - INTERVAL 61 SECOND")
    assert jobs.retry_due("parser", max_attempts=3, backoff_s=60).job_id == first

    second = create(jobs, attempt=2)
    jobs.finished(second, succeeded=False, error="boom again")
    # The third attempt waits twice as long.
    jobs.con.execute("UPDATE training_jobs SET finished_at = finished_at - INTERVAL 61 SECOND")
    assert jobs.retry_due("parser", max_attempts=3, backoff_s=60) is None
    jobs.con.execute("UPDATE training_jobs SET finished_at = finished_at - INTERVAL 60 SECOND")
    assert jobs.retry_due("parser", max_attempts=3, backoff_s=60).attempt == 2
    assert jobs.retry_due("parser", max_attempts=2, backoff_s=60) is None  # out of attempts
    assert jobs.awaiting_retry("parser", max_attempts=2) is None


def test_an_interrupted_job_stays_active_until_a_worker_takes_it_again(tmp_path: Path) -> None:
    jobs = JobStore(EventStore(tmp_path / "k.duckdb").cursor())
    job = create(jobs)
    jobs.started(job, worker="box:1", pid=42)
    jobs.interrupted(job, "worker box:1 stopped")
    assert jobs.active("parser").state == "interrupted"
    jobs.started(job, worker="box:2", pid=43)
    assert (jobs.get(job).state, jobs.get(job).worker) == ("running", "box:2")
    with pytest.raises(LookupError, match="kaizend jobs"):
        jobs.get("nope")


def row(kind: str, event_id: str, query_id: str, minutes: int, **fields: object) -> dict:
    base = {"event_id": event_id, "query_id": query_id, "ts": T0, "schema_version": 1,
            "ingested_at": T0 + timedelta(minutes=minutes)}  # fmt: skip
    if kind == "query":
        base |= {"task": "parser", "text": "hydro in wales", "model_version": "parser-v0",
                 "latency_ms": 1.0}  # fmt: skip
    return base | fields


def test_a_snapshot_holds_the_task_signal_up_to_its_cutoff_and_loads_back(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "k.duckdb")
    store.write({
        "query_events": [
            row("query", "q1", "a", 0), row("query", "q2", "b", 0),  # b has no signal
            row("query", "q3", "c", 0, task="retriever"),
            row("query", "q4", "d", 9),  # after the cutoff
        ],
        "correction_events": [
            row("c", "c1", "a", 1, corrected_output='{"technology": "Hydro"}'),
            row("c", "c2", "a", 9, corrected_output='{"technology": "Wind"}'),  # too late
            row("c", "c3", "c", 1, corrected_output='{"relevant_ids": ["1"]}'),  # retriever
        ],
        "feedback_events": [row("f", "f1", "a", 2, rating=2), row("f", "f2", "d", 9, rating=5)],
    })  # fmt: skip
    counts = export_snapshot(store.cursor(), "parser", T0 + timedelta(minutes=5), tmp_path / "s")
    assert counts == {"query_events": 1, "feedback_events": 1, "correction_events": 1}
    con = load_snapshot(tmp_path / "s")
    assert con.execute("SELECT event_id FROM correction_events").fetchall() == [("c1",)]
    assert con.execute("SELECT text FROM query_events").fetchall() == [("hydro in wales",)]
    with pytest.raises(FileNotFoundError, match="no query_events.parquet"):
        load_snapshot(tmp_path)


def test_a_failure_a_retry_cannot_help_is_never_retried(tmp_path: Path) -> None:
    jobs = JobStore(EventStore(tmp_path / "k.duckdb").cursor())
    job = create(jobs)
    jobs.finished(job, succeeded=False, error="not enough signal", retryable=False)
    assert jobs.retry_due("parser", max_attempts=3, backoff_s=0) is None
    assert jobs.awaiting_retry("parser", max_attempts=3) is None
    assert jobs.get(job).retryable is False
