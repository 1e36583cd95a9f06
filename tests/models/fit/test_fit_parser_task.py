"""The parser task builds its training set from corrections stored in DuckDB."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kaizend.models.llm.config import PROFILES
from kaizend.storage.events import EventStore

from tests.conftest import fit_parser_task

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
    task = fit_parser_task(config=PROFILES["quick"], base_source=tmp_path, correction_weight=3)
    training = task.build_training_set(store.cursor())

    assert training.event_ids == {"correction": ["c2"]}
    assert training.skipped == {"invalid corrected_output": 1}
    from_events = [e for e in training.train if e.get("source") == "correction"]
    assert [e["id"] for e in from_events] == ["c2#0", "c2#1", "c2#2"]
    assert from_events[0]["text"] == "turbines above half a megawatt in berks"
    assert from_events[0]["expected"]["capacity_min_kw"] == 500
    generated = len(training.train) - len(from_events)
    assert generated >= 3000 and len(training.validation) >= 400


def test_the_newest_corrections_are_held_back_as_the_fresh_set_and_counted_as_signal(
    tmp_path: Path,
) -> None:
    store = EventStore(tmp_path / "k.duckdb")
    store.write({
        "query_events": [query(f"q{i}", f"k{i}", f"hydro sites number {i}") for i in range(5)],
        "correction_events": [
            correction(f"c{i}", f"k{i}", {"technology": "Hydro"}, minutes=i) for i in range(5)
        ],
    })  # fmt: skip
    task = fit_parser_task(config=PROFILES["quick"], correction_weight=1)
    training = task.build_training_set(store.cursor(), fresh_share=0.4)
    assert training.fresh_event_ids == {"correction": ["c3", "c4"]}
    assert training.event_ids == {"correction": ["c0", "c1", "c2"]}
    assert [e["text"] for e in training.fresh] == ["hydro sites number 3", "hydro sites number 4"]
    trained_texts = {e["text"] for e in training.train}
    assert not trained_texts & {e["text"] for e in training.fresh}
    assert len(task.benchmark_examples()) >= 400

    # Signal counts by when it was stored: all five, then none after the last.
    until = T0 + timedelta(days=1)
    assert task.count_new_signal(store.cursor(), None, until) == 5
    assert task.count_new_signal(store.cursor(), T0, until) == 0


def feedback(event_id: str, query_id: str, minutes: int, **fields: object) -> dict:
    return {"event_id": event_id, "query_id": query_id, "ts": T0 + timedelta(minutes=minutes),
            "schema_version": 1, "ingested_at": T0, **fields}  # fmt: skip


def answered(event_id: str, query_id: str, text: str, output: object, minutes: int) -> dict:
    return {**query(event_id, query_id, text), "ts": T0 + timedelta(minutes=minutes),
            "output": json.dumps(output)}  # fmt: skip


def test_the_fresh_set_also_holds_the_newest_answers_users_confirmed(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "k.duckdb")
    hydro = {"technology": "Hydro"}
    store.write({
        "query_events": [
            *[query(f"q{i}", f"k{i}", f"hydro sites number {i}") for i in range(5)],
            # Ten answers users liked and nobody corrected: confirmed.
            *[answered(f"a{i}", f"ok{i}", f"wind farms {i}", {"technology": "Wind"}, 10 + i)
              for i in range(10)],
            answered("a10", "fixed", "solar in kent", {"technology": "Wind"}, 30),  # corrected
            answered("a11", "disliked", "solar in devon", hydro, 31),  # rated 2
            answered("a12", "bad", "steam engines", {"technology": "Steam"}, 32),  # invalid
            answered("a13", "flagged", "hydro in wales", {**hydro, "fallback_used": True}, 33),
            {**answered("a14", "other", "wind docs", {"results": []}, 34), "task": "retriever"},
        ],
        "feedback_events": [
            *[feedback(f"f{i}", f"ok{i}", 10 + i, thumbs="up") for i in range(10)],
            feedback("f10", "fixed", 30, rating=5),
            feedback("f11", "disliked", 31, rating=2),
            feedback("f12", "bad", 32, rating=5),
            feedback("f13", "flagged", 33, rating=4),
            feedback("f14", "other", 34, rating=5),
        ],
        "correction_events": [
            *[correction(f"c{i}", f"k{i}", hydro, minutes=i) for i in range(5)],
            # Corrected long after the user liked it: not a right answer to judge against.
            correction("c5", "fixed", {"technology": "Photovoltaic"}, minutes=900),
        ],
    })  # fmt: skip
    task = fit_parser_task(config=PROFILES["quick"], correction_weight=1)
    training = task.build_training_set(store.cursor(), fresh_share=0.4)

    by_source: dict[str, list[dict]] = {}
    for example in training.fresh:
        by_source.setdefault(example["source"], []).append(example)
    # The newest 40% of each kind: 2 of the 6 corrections, 4 of the 11 confirmed answers (the
    # ten liked ones and the flagged one), with the confirmed answer as the target.
    assert [e["id"] for e in by_source["correction"]] == ["c4", "c5"]
    confirmed = by_source["confirmed"]
    assert [e["id"] for e in confirmed] == ["ok7", "ok8", "ok9", "flagged"]
    assert confirmed[0] == {
        "id": "ok7", "text": "wind farms 7", "expected": {"technology": "Wind"},
        "source": "confirmed", "feedback_ids": ["f7"],
    }  # fmt: skip
    assert confirmed[-1]["expected"] == hydro  # the recorded fallback flag is not a field
    assert training.fresh_event_ids["feedback"] == ["f13", "f7", "f8", "f9"]
    assert training.skipped == {"invalid confirmed output": 1}
    # Confirmed answers are judged on, never trained on.
    trained_texts = {e["text"] for e in training.train}
    assert not trained_texts & {e["text"] for e in confirmed}
    assert training.event_ids == {"correction": ["c0", "c1", "c2", "c3"]}
