"""From stored retrieval feedback to training pairs.

For every retriever query in the event store, the judgements of its results are collected:

- a result rated at least ``positive_min_rating`` (or thumbs up) is a positive, one rated at
  most ``negative_max_rating`` (or thumbs down) a negative; the newest judgement of a result
  wins; a rating of the whole query (no ``doc_id``) counts for its first result;
- a correction (``corrected_output = {"relevant_ids": [...]}``, the newest per query) is the
  truth: its documents are the positives, every other result shown or rated is a negative,
  and the query's positives are *complete*.

Each positive becomes a pair (query text, document text) with ``hard_negatives`` negatives:
the query's own negatives first, then, for complete queries only, documents the serving
index ranks high that are not relevant (its stored ranking, and deeper in the index when a
search function is given), then random documents. Mining stops at complete queries because
an unrated result of an uncorrected query may well be relevant.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb
from kaizend.models.retriever.config import RetrieverPairSettings

log = logging.getLogger(__name__)


_QUERIES = """
SELECT query_id, event_id, ts, text, output FROM query_events WHERE task = ?
QUALIFY row_number() OVER (PARTITION BY query_id ORDER BY ts DESC, event_id DESC) = 1
ORDER BY ts, event_id
"""
_FEEDBACK = """
SELECT f.event_id, f.query_id, f.doc_id, f.rating, f.thumbs
FROM feedback_events f
WHERE f.query_id IN (SELECT query_id FROM query_events WHERE task = ?)
ORDER BY f.ts, f.event_id
"""
_CORRECTIONS = """
SELECT c.event_id, c.query_id, c.corrected_output
FROM correction_events c
WHERE c.query_id IN (SELECT query_id FROM query_events WHERE task = ?)
QUALIFY row_number() OVER (PARTITION BY c.query_id ORDER BY c.ts DESC, c.event_id DESC) = 1
"""

Search = Callable[[Sequence[str]], list[list[tuple[str, float]]]]


@dataclass
class QueryJudgements:
    """What is known about one stored query's results."""

    query_id: str
    text: str
    ts: datetime
    shown: list[str]
    positives: dict[str, str] = field(default_factory=dict)
    """doc_id -> the event that made it a positive."""
    negatives: dict[str, str] = field(default_factory=dict)
    neutral: set[str] = field(default_factory=set)
    complete: bool = False
    """A correction named every relevant document."""
    event_ids: dict[str, list[str]] = field(default_factory=dict)
    """Feedback and correction event ids that went into the judgements, by kind."""

    def example(self) -> dict[str, Any]:
        """The query as an evaluation example ``{id, text, relevant_ids}``."""
        return {"id": self.query_id, "text": self.text, "relevant_ids": sorted(self.positives)}


def _shown(output: Any) -> list[str]:
    try:
        payload = json.loads(output) if isinstance(output, str) else output
        return [str(result["doc_id"]) for result in payload["results"]]
    except (json.JSONDecodeError, KeyError, TypeError):
        return []


def _relevant_ids(corrected: Any) -> list[str] | None:
    try:
        payload = json.loads(corrected) if isinstance(corrected, str) else corrected
        ids = payload["relevant_ids"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return None
    if not isinstance(ids, list) or not all(isinstance(i, str | int) for i in ids):
        return None
    return [str(i) for i in ids]


def collect_judgements(
    con: duckdb.DuckDBPyConnection,
    settings: RetrieverPairSettings,
    known_ids: set[str] | frozenset[str] | None = None,
    *,
    task: str,
) -> tuple[list[QueryJudgements], Counter]:
    """Every query of ``task`` with a judgement, oldest first, and skipped signals by reason.

    ``known_ids`` (the corpus's ids) turns judgements of unknown documents into skips.
    """
    skipped: Counter = Counter()
    queries: dict[str, QueryJudgements] = {}
    for query_id, _event_id, ts, text, output in con.execute(_QUERIES, [task]).fetchall():
        queries[query_id] = QueryJudgements(query_id, text, ts, _shown(output))
    latest: dict[tuple[str, str], tuple[int, str]] = {}
    for event_id, query_id, doc_id, rating, thumbs in con.execute(_FEEDBACK, [task]).fetchall():
        query = queries[query_id]
        if doc_id is None:
            if not query.shown:
                skipped["query rating without results"] += 1
                continue
            doc_id = query.shown[0]
        if known_ids is not None and doc_id not in known_ids:
            skipped["unknown doc_id"] += 1
            continue
        value = rating if rating is not None else (5 if thumbs == "up" else 1)
        latest[(query_id, str(doc_id))] = (value, event_id)
    for (query_id, doc_id), (value, event_id) in latest.items():
        query = queries[query_id]
        query.event_ids.setdefault("feedback", []).append(event_id)
        if value >= settings.positive_min_rating:
            query.positives[doc_id] = event_id
        elif value <= settings.negative_max_rating:
            query.negatives[doc_id] = event_id
        else:
            query.neutral.add(doc_id)
    for event_id, query_id, corrected in con.execute(_CORRECTIONS, [task]).fetchall():
        relevant = _relevant_ids(corrected)
        if relevant is None:
            skipped["invalid corrected_output"] += 1
            log.warning("correction %s skipped: no list of relevant_ids", event_id)
            continue
        if known_ids is not None:
            unknown = [doc_id for doc_id in relevant if doc_id not in known_ids]
            skipped["unknown doc_id"] += len(unknown)
            relevant = [doc_id for doc_id in relevant if doc_id in known_ids]
        query = queries[query_id]
        judged = set(query.positives) | set(query.negatives) | query.neutral | set(query.shown)
        query.positives = dict.fromkeys(relevant, event_id)
        query.negatives = {
            doc_id: query.negatives.get(doc_id, event_id)
            for doc_id in sorted(judged - set(relevant))
        }
        query.neutral = set()
        query.complete = True
        query.event_ids.setdefault("correction", []).append(event_id)
    judged = [q for q in queries.values() if q.positives or q.negatives]
    return judged, skipped


def count_signal(queries: Sequence[QueryJudgements]) -> dict[str, int]:
    """Positive and negative judgements, queries and complete (corrected) queries."""
    return {
        "positive": sum(len(q.positives) for q in queries),
        "negative": sum(len(q.negatives) for q in queries),
        "queries": len(queries),
        "corrected_queries": sum(q.complete for q in queries),
    }


def build_pairs(
    queries: Sequence[QueryJudgements],
    documents: Mapping[str, str],
    settings: RetrieverPairSettings,
    *,
    mine: Search | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Training pairs ``{anchor, positive, negatives, ...}`` from judged queries.

    ``documents`` maps every corpus id to its text. ``mine`` searches the serving index
    (texts -> ranked (id, score)) to find hard negatives past the stored results.
    """
    rng = random.Random(seed)
    corpus_ids = sorted(documents)
    mined: dict[str, list[str]] = {}
    complete = [q for q in queries if q.complete and q.positives]
    if mine is not None and complete and settings.hard_negatives:
        ranked = mine([q.text for q in complete])
        mined = {
            q.query_id: [doc_id for doc_id, _ in results[: settings.mine_depth]]
            for q, results in zip(complete, ranked, strict=True)
        }
    pairs: list[dict[str, Any]] = []
    for query in queries:
        if not query.positives:
            continue
        positives = sorted(query.positives)
        if len(positives) > settings.max_positives_per_query:
            positives = sorted(rng.sample(positives, settings.max_positives_per_query))
        own = sorted(query.negatives)
        rng.shuffle(own)
        pool = list(own)
        if query.complete:
            for doc_id in [*query.shown, *mined.get(query.query_id, [])]:
                if doc_id not in query.positives and doc_id not in pool:
                    pool.append(doc_id)
        events = sorted({e for kind in query.event_ids.values() for e in kind})
        for number, positive in enumerate(positives):
            negative_ids: list[str] = []
            for offset in range(len(pool)):
                if len(negative_ids) == settings.hard_negatives:
                    break
                candidate = pool[(number * settings.hard_negatives + offset) % len(pool)]
                if candidate not in negative_ids:
                    negative_ids.append(candidate)
            while len(negative_ids) < settings.hard_negatives:
                candidate = rng.choice(corpus_ids)
                if candidate not in query.positives and candidate not in negative_ids:
                    negative_ids.append(candidate)
            pairs.append(
                {
                    "id": f"{query.query_id}/{positive}",
                    "query_id": query.query_id,
                    "anchor": query.text,
                    "positive_id": positive,
                    "positive": documents[positive],
                    "negative_ids": negative_ids,
                    "negatives": [documents[doc_id] for doc_id in negative_ids],
                    "source": "correction" if query.complete else "rating",
                    "event_ids": events,
                }
            )
    return pairs
