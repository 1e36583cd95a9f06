"""Per-arm experiment metrics aggregated from stored events in a real DuckDB file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from storage.events import EventStore
from storage.experiments import arm_metrics

T0 = datetime(2026, 11, 23, 10, tzinfo=UTC)


def query(qid: str, arm: str, version: str, minutes: float = 1, **fields: object) -> dict:
    return {"event_id": f"e-{qid}", "query_id": qid, "ts": T0 + timedelta(minutes=minutes),
            "task": "parser", "text": "t", "model_version": version, "arm": arm,
            "latency_ms": 10.0, "schema_version": 1, "ingested_at": T0} | fields  # fmt: skip


def signal(eid: str, qid: str, minutes: float, **fields: object) -> dict:
    return {"event_id": eid, "query_id": qid, "ts": T0 + timedelta(minutes=minutes),
            "schema_version": 1, "ingested_at": T0} | fields  # fmt: skip


def test_success_needs_positive_feedback_and_no_correction_within_the_window(
    tmp_path: Path,
) -> None:
    store = EventStore(tmp_path / "k.duckdb")
    store.write({
        "query_events": [
            query("a", "champion", "v0"),                      # rated 5: success
            query("b", "champion", "v0", latency_ms=30.0),     # thumbs up, corrected at +5 min
            query("c", "champion", "v0", error="boom"),        # no feedback, failed
            query("d", "challenger", "v1"),                    # rated 2
            query("e", "challenger", "v1"),                    # rated 4, corrected after 2 h
            query("f", "challenger", "v9"),                    # another version: not counted
            query("g", "champion", "v0", minutes=90),          # after the window's end
        ],
        "feedback_events": [
            signal("f1", "a", 2, rating=5), signal("f2", "b", 2, thumbs="up"),
            signal("f3", "d", 2, rating=2), signal("f4", "e", 2, rating=4),
        ],
        "correction_events": [
            signal("c1", "b", 6, corrected_output="{}"),
            signal("c2", "e", 130, corrected_output="{}"),
        ],
    })  # fmt: skip
    metrics = arm_metrics(
        store.cursor(), task="parser", champion="v0", challenger="v1",
        start=T0, end=T0 + timedelta(minutes=60), attribution_s=3600,
    )  # fmt: skip
    champion, challenger = metrics["champion"], metrics["challenger"]
    assert champion["success"] == (3, 1.0, 1.0)
    assert champion["correction_rate"] == (3, 1.0, 1.0)
    assert champion["error_rate"] == (3, 1.0, 1.0)
    assert champion["latency_ms"] == (3, 50.0, 1100.0)
    assert champion["rating"] == (1, 5.0, 25.0)
    # e's correction came after the attribution window: e counts as a success.
    assert challenger["success"] == (2, 1.0, 1.0)
    assert challenger["rating"] == (2, 6.0, 20.0)
    assert challenger["correction_rate"] == (2, 0.0, 0.0)


def test_an_arm_without_units_has_empty_summaries(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "k.duckdb")
    metrics = arm_metrics(
        store.cursor(), task="parser", champion="v0", challenger="v1",
        start=T0, end=None, attribution_s=60,
    )  # fmt: skip
    assert metrics["challenger"]["success"] == (0.0, 0.0, 0.0)
