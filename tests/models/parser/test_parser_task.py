"""The parser task builds its training set from corrections stored in DuckDB."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from models.parser.config import PROFILES
from models.parser.task import ParserTask
from storage.events import EventStore

T0 = datetime(2026, 11, 23, 10, tzinfo=UTC)


def query(event_id: str, query_id: str, text: str, task: str = "parser") -> dict:
    return {"event_id": event_id, "query_id": query_id, "ts": T0, "task": task, "text": text,
            "model_version": "parser-v0", "latency_ms": 1.0, "schema_version": 1,
            "ingested_at": T0}  # fmt: skip


def correction(event_id: str, query_id: str, output: object, minutes: int = 1) -> dict:
    return {
        "event_id": event_id,
        "query_id": query_id,
        "ts": T0 + timedelta(minutes=minutes),
        "corrected_output": json.dumps(output),
        "schema_version": 1,
        "ingested_at": T0,
    }


def test_training_set_merges_generated_data_with_weighted_valid_corrections(
    tmp_path: Path,
) -> None:
    store = EventStore(tmp_path / "k.duckdb")
    store.write({
        "query_events": [
            query("q1", "a", "turbines above half a megawatt in berks"),
            query("q2", "b", "hydro in wales"),
            query("q3", "c", "docs about wind", task="retriever"),
        ],
        "correction_events": [
            # Two corrections of one query: the newer one wins.
            correction("c1", "a", {"technology": "Wind"}, minutes=1),
            correction("c2", "a", {"technology": "Wind", "capacity_min_kw": 500,
                                   "location": "Berkshire", "postcode_patterns": ["RG", "SL"]},
                       minutes=2),
            correction("c3", "b", {"technology": "Steam"}),  # not a FIT technology
            correction("c4", "c", {"technology": "Wind"}),  # a retriever query
            correction("c5", "never-seen", {"technology": "Hydro"}),  # no query text yet
        ],
    })  # fmt: skip
    task = ParserTask(config=PROFILES["quick"], base_path=tmp_path, correction_weight=3)
    training = task.build_training_set(store.cursor())

    assert training.event_ids == {"correction": ["c2"]}
    assert training.skipped == {"invalid corrected_output": 1}
    from_events = [e for e in training.train if e.get("source") == "correction"]
    assert [e["id"] for e in from_events] == ["c2#0", "c2#1", "c2#2"]
    assert from_events[0]["text"] == "turbines above half a megawatt in berks"
    assert from_events[0]["expected"]["capacity_min_kw"] == 500
    generated = len(training.train) - len(from_events)
    assert generated >= 3000 and len(training.validation) >= 400
