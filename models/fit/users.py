"""Simulated users of the FIT search service: how they judge an answer and when they correct it.

Every function here is pure given its random generator: a user who asked a
`models.fit.userpool.UserQuery` knows the intended parse, sees what the service answered,
and reacts.

- **Quality** of an answer (`answer_quality`): 1.0 when the parse is the intended one,
  otherwise the share of its fields that are right (`models.fit.scoring.field_matches`);
  when results are shown too, at most the share of them that are relevant.
- **Stars** (`star_rating`, shared with the retrieval users of `models.fit.retrieval`): 4-5
  for a right answer, 2-3 for a mostly right one (quality >= 0.6), 1-2 otherwise; a ``noise``
  share of raters get it backwards (6 - rating).
- **Behaviour** (`UserBehaviour`): a ``feedback_share`` of users judge at all, a
  ``thumbs_share`` of those with thumbs instead of stars (none for a 3), and for a wrong
  parse a ``correction_share`` send the intended parse as a correction, in the shape the
  parser task trains on (`models.llm.task`: a compact `ParsedQuery` dict).

Success as the experiment loop counts it (a rating >= 4 or thumbs up, and no correction;
`storage.experiments`) is then about ``feedback_share * (1 - noise)`` for a right parse and
at most ``feedback_share * noise * (1 - correction_share)`` for a wrong one, so a parser that
gets more questions right gets a higher success rate.

`simulate_parser_traffic` serves pool questions with a parser and writes the query,
feedback and correction events, each with a ``kind``, as ``kaizend publish`` reads them.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kaizend.models.fit.schema import ParsedQuery, to_compact_dict
from kaizend.models.fit.scoring import field_matches
from kaizend.models.fit.userpool import UserQuery
from kaizend.models.llm.serve import Answerer

SERVICE = "fit-search-sim"
"""The ``service`` of every simulated query event."""

# Event ids are uuid5 names under this namespace, so a rerun with the same seed makes the
# same ids (the server drops the duplicates) while another seed or version makes new ones.
_NAMESPACE = uuid.UUID("6f1c8e52-3f4b-4c1e-9a57-0d2b6c7e8a91")


@dataclass(frozen=True)
class UserBehaviour:
    """How simulated users react to answers."""

    feedback_share: float = 0.8
    """Share of answers a user judges at all."""
    noise: float = 0.1
    """Share of judgements from a rater who gets it backwards."""
    thumbs_share: float = 0.3
    """Share of judgements given as thumbs up/down instead of stars."""
    correction_share: float = 0.5
    """Share of wrong parses whose user sends the intended parse back."""
    feedback_delay_s: tuple[float, float] = (5.0, 60.0)
    """A judgement comes this long after the query (uniform)."""
    correction_delay_s: tuple[float, float] = (30.0, 300.0)
    """A correction comes this long after the query (uniform)."""

    def __post_init__(self) -> None:
        for name in ("feedback_share", "noise", "thumbs_share", "correction_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is a share between 0 and 1, got {value}")


def star_rating(rng: random.Random, quality: float, noise: float) -> int:
    """A 1-5 rating for an answer of ``quality`` (1.0 = right); ``noise`` of raters reverse it."""
    if quality >= 1.0:
        rating = rng.choice((4, 5, 5))
    elif quality >= 0.6:
        rating = rng.choice((2, 3, 3))
    else:
        rating = rng.choice((1, 1, 2))
    if rng.random() < noise:
        rating = 6 - rating  # a rater who got it backwards
    return rating


def judgement(rng: random.Random, rating: int, thumbs_share: float) -> dict[str, Any] | None:
    """``{"rating": r}``, or ``{"thumbs": ...}`` for a ``thumbs_share`` of users; None when
    a thumbs user has no opinion (a 3)."""
    if rng.random() < thumbs_share:
        if rating == 3:
            return None
        return {"thumbs": "up" if rating >= 4 else "down"}
    return {"rating": rating}


def answer_quality(
    expected: Mapping[str, Any],
    parsed: ParsedQuery | Mapping[str, Any] | None,
    *,
    results: Sequence[str] | None = None,
    relevant: Collection[str] | None = None,
) -> float:
    """1.0 for the intended parse, else its share of right fields; with ``results`` and the
    ``relevant`` ones among them, at most the share of results that are relevant."""
    quality = 1.0
    if parsed is not None:
        right, total = field_matches(parsed, expected)
        quality = right / total if total else 1.0
    if results is not None and relevant is not None:
        share = sum(doc in relevant for doc in results) / len(results) if results else 0.0
        quality = min(quality, share)
    return quality


def is_right(expected: Mapping[str, Any], parsed: ParsedQuery | Mapping[str, Any]) -> bool:
    """Whether a parse is the intended one (canonical compact dicts equal)."""
    got = to_compact_dict(parsed) if isinstance(parsed, ParsedQuery) else dict(parsed)
    return got == dict(expected)


def _event_id(query_id: str, what: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{query_id}:{what}"))


def react(
    query: UserQuery,
    parsed: ParsedQuery | Mapping[str, Any],
    *,
    rng: random.Random,
    query_id: str,
    ts: datetime,
    behaviour: UserBehaviour = UserBehaviour(),
    results: Sequence[str] | None = None,
    relevant: Collection[str] | None = None,
) -> list[dict[str, Any]]:
    """The feedback and correction events of the user who asked ``query`` and got ``parsed``
    (and saw ``results``, ``relevant`` of them relevant, when given).

    The draws come in a fixed order, so two parsers answering the same question face the
    same user: whether they judge, how they rate, whether they would correct.
    """
    quality = answer_quality(query.expected, parsed, results=results, relevant=relevant)
    judges = rng.random() < behaviour.feedback_share
    rating = star_rating(rng, quality, behaviour.noise)
    said = judgement(rng, rating, behaviour.thumbs_share)
    corrects = rng.random() < behaviour.correction_share
    feedback_delay = rng.uniform(*behaviour.feedback_delay_s)
    correction_delay = rng.uniform(*behaviour.correction_delay_s)
    events: list[dict[str, Any]] = []
    if judges and said is not None:
        events.append({
            "kind": "feedback", "event_id": _event_id(query_id, "feedback"),
            "query_id": query_id, "ts": (ts + timedelta(seconds=feedback_delay)).isoformat(),
            **said,
        })  # fmt: skip
    if corrects and not is_right(query.expected, parsed):
        events.append({
            "kind": "correction", "event_id": _event_id(query_id, "correction"),
            "query_id": query_id, "ts": (ts + timedelta(seconds=correction_delay)).isoformat(),
            "corrected_output": dict(query.expected), "author": "sim-user",
        })  # fmt: skip
    return events


def simulate_parser_traffic(
    queries: Sequence[UserQuery],
    parser: Answerer,
    *,
    seed: int = 0,
    model_version: str = "parser-v0",
    behaviour: UserBehaviour = UserBehaviour(),
    start: datetime = datetime(2026, 11, 1, tzinfo=UTC),
    interval_s: float = 1.0,
    users: int = 500,
    arm: str | None = None,
) -> list[dict[str, Any]]:
    """Query, feedback and correction events for ``queries`` answered by ``parser``.

    Query ``n`` is asked at ``start + n * interval_s`` by one of ``users`` simulated users
    (its ``unit_id``); its event carries the compact parse as ``output``,
    ``fallback_used``, and ``arm`` when given. The user's reaction (`react`) depends on the
    seed and the position only, not on the version, so two versions served the same traffic
    face the same users.
    Query ids depend on the version too, so both runs can be stored side by side.
    """
    events: list[dict[str, Any]] = []
    for number, query in enumerate(queries):
        rng = random.Random(f"{seed}:{number}:{query.id}")
        unit_id = f"sim-user-{rng.randrange(users)}"
        answer = parser.answer(query.text)
        ts = start + timedelta(seconds=number * interval_s)
        digest = hashlib.sha1(f"{model_version}:{seed}:{number}:{query.id}".encode())
        query_id = f"pq-{digest.hexdigest()[:16]}"
        events.append({
            "kind": "query", "event_id": _event_id(query_id, "query"), "query_id": query_id,
            "ts": ts.isoformat(), "task": "parser", "text": query.text,
            "model_version": model_version, "unit_id": unit_id,
            "output": answer.output, "latency_ms": round(answer.latency_ms, 3),
            "service": SERVICE, "fallback_used": answer.fallback_used,
        })  # fmt: skip
        if arm is not None:
            events[-1]["arm"] = arm
        events.extend(
            react(query, answer.output, rng=rng, query_id=query_id, ts=ts, behaviour=behaviour)
        )
    return events
