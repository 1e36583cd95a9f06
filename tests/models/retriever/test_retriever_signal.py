"""The retriever's new signal for its trigger: rated results and corrections, by storage time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from kaizend.models.tasks import build_task
from kaizend.storage.events import EventStore

from tests.conftest import make_settings

T0 = datetime(2026, 11, 23, 10, tzinfo=UTC)


def row(event_id: str, query_id: str, minutes: int, **fields: object) -> dict:
    return {"event_id": event_id, "query_id": query_id, "ts": T0, "schema_version": 1,
            "ingested_at": T0 + timedelta(minutes=minutes)} | fields  # fmt: skip


def query(query_id: str, task: str) -> dict:
    return row(f"e-{query_id}", query_id, 0, task=task, text="wind in kent",
               model_version=f"{task}-v0", latency_ms=5.0)  # fmt: skip


def test_rated_results_and_corrections_of_retriever_queries_count(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "k.duckdb")
    store.write({
        "query_events": [query("r1", "retriever"), query("p1", "parser")],
        "feedback_events": [
            row("f1", "r1", 1, rating=5, doc_id="4004"),
            row("f2", "r1", 2, rating=1, doc_id="1585"),
            row("f3", "r1", 3, rating=4),  # the whole answer, no result named
            row("f4", "p1", 4, rating=5, doc_id="4004"),  # a parser query
        ],
        "correction_events": [row("c1", "r1", 5, corrected_output='{"relevant_ids": ["7"]}')],
    })  # fmt: skip
    task = build_task(make_settings(tmp_path, "nats://unused:4222"), "retriever")
    until = T0 + timedelta(hours=1)
    assert task.count_new_signal(store.cursor(), None, until) == 3
    assert task.count_new_signal(store.cursor(), T0 + timedelta(minutes=1), until) == 2
    assert task.count_new_signal(store.cursor(), T0 + timedelta(minutes=5), until) == 0
