"""Stored retrieval feedback becomes positives, negatives and hard-negative pairs."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kaizend.models.retriever.config import RetrieverPairSettings
from kaizend.models.retriever.pairs import (
    build_pairs,
    collect_judgements,
    count_signal,
)
from kaizend.storage.events import EventStore

T0 = datetime(2026, 11, 23, 10, tzinfo=UTC)
DOCS = {str(i): f"document {i}" for i in range(1, 40)}


def query(query_id: str, text: str, shown: list[str], minutes: int = 0, task: str = "retriever",
          event_id: str | None = None) -> dict:  # fmt: skip
    output = {"results": [{"doc_id": d, "score": 0.9 - i / 20} for i, d in enumerate(shown)]}
    return {"event_id": event_id or f"qe-{query_id}", "query_id": query_id,
            "ts": T0 + timedelta(minutes=minutes), "task": task, "text": text,
            "model_version": "retriever-v0", "output": json.dumps(output), "latency_ms": 5.0,
            "schema_version": 1, "ingested_at": T0}  # fmt: skip


def feedback(event_id: str, query_id: str, doc_id: str | None, rating: int | None = None,
             thumbs: str | None = None, seconds: int = 1) -> dict:  # fmt: skip
    return {"event_id": event_id, "query_id": query_id, "ts": T0 + timedelta(seconds=seconds),
            "rating": rating, "thumbs": thumbs, "doc_id": doc_id, "schema_version": 1,
            "ingested_at": T0}  # fmt: skip


def correction(event_id: str, query_id: str, output: object) -> dict:
    return {"event_id": event_id, "query_id": query_id, "ts": T0 + timedelta(minutes=5),
            "corrected_output": json.dumps(output), "schema_version": 1,
            "ingested_at": T0}  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> EventStore:
    store = EventStore(tmp_path / "k.duckdb")
    store.write({
        "query_events": [
            query("a", "wind turbines in berkshire", ["1", "2", "3", "4"], minutes=1),
            query("b", "AD plants in norfolk", ["5", "6", "7"], minutes=2),
            query("p", "hydro in wales", ["1"], minutes=3, task="parser"),
        ],
        "feedback_events": [
            feedback("f1", "a", "1", rating=5),
            feedback("f2", "a", "2", rating=1),
            feedback("f3", "a", "3", thumbs="up"),
            feedback("f4", "a", "4", rating=3),  # neither
            feedback("f5", "a", "2", rating=4, seconds=9),  # newer: doc 2 is positive after all
            feedback("f6", "a", None, rating=2),  # whole query: counts for its first result
            feedback("f7", "a", "999", rating=5),  # not in the corpus
            feedback("f8", "b", "5", rating=5),
            feedback("f9", "b", "6", thumbs="down"),
            feedback("f10", "p", "1", rating=5),  # a parser query
        ],
        "correction_events": [
            correction("c1", "b", {"relevant_ids": ["7", "8"]}),
            correction("c2", "a", {"technology": "Wind"}),  # not a retrieval correction
        ],
    })  # fmt: skip
    return store


def test_ratings_thumbs_and_corrections_become_judgements(store: EventStore) -> None:
    settings = RetrieverPairSettings()
    queries, skipped = collect_judgements(
        store.cursor(), settings, known_ids=set(DOCS), task="retriever"
    )
    assert skipped == {"unknown doc_id": 1, "invalid corrected_output": 1}
    a, b = queries  # oldest first; the parser query is not the retriever's
    assert (a.query_id, b.query_id) == ("a", "b")
    # The whole-query rating of 2 is the newest judgement of result 1 (rated 5 before).
    assert sorted(a.positives) == ["2", "3"]
    assert sorted(a.negatives) == ["1"]
    assert a.neutral == {"4"} and not a.complete
    # The correction is the truth: 7 and 8 relevant, everything else shown or rated is not.
    assert sorted(b.positives) == ["7", "8"] and b.complete
    assert sorted(b.negatives) == ["5", "6"]
    assert b.negatives["6"] == "f9" and b.negatives["5"] == "c1"
    assert count_signal(queries) == {
        "positive": 4, "negative": 3, "queries": 2, "corrected_queries": 1,
    }  # fmt: skip


def test_pairs_take_own_negatives_then_mined_ones_never_a_positive(store: EventStore) -> None:
    settings = RetrieverPairSettings(hard_negatives=3, mine_depth=5)
    queries, _ = collect_judgements(store.cursor(), settings, known_ids=set(DOCS), task="retriever")
    mined_for = []

    def mine(texts: list[str]) -> list[list[tuple[str, float]]]:
        mined_for.extend(texts)
        return [[("8", 0.9), ("20", 0.8), ("21", 0.7), ("22", 0.6), ("23", 0.5), ("24", 0.4)]]

    pairs = build_pairs(queries, DOCS, settings, mine=mine, seed=0)
    # Only the corrected query is mined: the others' unrated results may be relevant.
    assert mined_for == ["AD plants in norfolk"]
    by_query = {}
    for pair in pairs:
        by_query.setdefault(pair["query_id"], []).append(pair)
        assert len(pair["negative_ids"]) == 3
        assert pair["positive"] == DOCS[pair["positive_id"]]
        assert pair["negatives"] == [DOCS[d] for d in pair["negative_ids"]]
    assert [p["positive_id"] for p in by_query["a"]] == ["2", "3"]
    for pair in by_query["a"]:
        assert pair["negative_ids"][0] == "1"  # its own negative first
        assert not {"2", "3"} & set(pair["negative_ids"])
        assert pair["source"] == "rating"
    for pair in by_query["b"]:
        assert set(pair["negative_ids"]) <= {"5", "6", "20", "21", "22", "23"}  # not 24: depth
        assert "8" not in pair["negative_ids"] and "7" not in pair["negative_ids"]
        assert pair["source"] == "correction"
        assert pair["event_ids"] == ["c1", "f8", "f9"]


def test_positives_per_query_are_capped(store: EventStore) -> None:
    settings = RetrieverPairSettings(max_positives_per_query=1, hard_negatives=0)
    queries, _ = collect_judgements(store.cursor(), settings, known_ids=set(DOCS), task="retriever")
    pairs = build_pairs(queries, DOCS, settings)
    assert Counter(pair["query_id"] for pair in pairs) == {"a": 1, "b": 1}
    assert all(pair["negative_ids"] == [] for pair in pairs)


def test_thresholds_are_configurable(store: EventStore) -> None:
    strict = RetrieverPairSettings(positive_min_rating=5, negative_max_rating=3)
    queries, _ = collect_judgements(store.cursor(), strict, known_ids=set(DOCS), task="retriever")
    a = queries[0]
    assert sorted(a.positives) == ["3"]  # thumbs up counts as 5; a 4 no longer does
    assert sorted(a.negatives) == ["1", "4"]  # a 3 now counts as negative
    assert a.neutral == {"2"}
    with pytest.raises(ValueError, match="must be below"):
        RetrieverPairSettings(positive_min_rating=3, negative_max_rating=3)
