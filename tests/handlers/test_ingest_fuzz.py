"""Property-based fuzzing of ingestion: hostile payloads, structured and raw.

Every payload is either stored as an event or kept in ``rejected_events`` with a reason; the
two add up to what was published, nothing is left pending on the consumer, and a payload that
passes validation always commits (the bounds of the event models match what the columns hold).

The default suite runs a bounded number of examples (profile ``ingest-fuzz``); the ``slow``
tests run many more (``ingest-fuzz-long``): ``pytest -m slow tests/handlers/test_ingest_fuzz.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from kaizend.handlers.ingest import classify
from kaizend.storage.events import EVENT_TABLES, REJECTED_TABLE, EventStore

from tests.conftest import RunningDaemon, event, eventually

settings.register_profile(
    "ingest-fuzz",
    max_examples=25,
    deadline=None,
    database=None,  # nothing written into the checkout
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("ingest-fuzz-long", settings.get_profile("ingest-fuzz"), max_examples=400)
QUICK = settings.get_profile("ingest-fuzz")
LONG = settings.get_profile("ingest-fuzz-long")
# Through the daemon a failing example costs the settling timeout: no shrinking there (the
# failure names the payloads that went missing).
NO_SHRINK = [Phase.explicit, Phase.reuse, Phase.generate]

PREFIX = "kaizen.events"
MAX_PAYLOAD = 65536
# Strategies write this where the event id begins; each run replaces it with a prefix no other
# payload has (outside the strategies, which must not depend on state), so that no payload is
# a duplicate of another, which the store would rightly skip.
ID = "@fuzz-id@"
_ids = itertools.count()

# --- Hostile values, as JSON text fragments (so that NaN, 1e999, deep nesting, invalid UTF-8
# and surrogate escapes, which json.dumps will not write, can be spliced in).


def _dumps(value: Any, ascii_only: bool) -> bytes:
    if ascii_only:  # lone surrogates become \udXXX escapes
        return json.dumps(value).encode()
    # Raw UTF-8; a lone surrogate becomes bytes that are not UTF-8.
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


_TEXT = st.one_of(
    st.text(st.characters(codec=None, exclude_categories=()), max_size=40),  # surrogates too
    st.sampled_from(["", " ", "\x00", "a\x00b", "\n", "v0\n", "\ud800", "\udfff", "\ud83d\ude00"]),
    st.builds(lambda c, n: c * n, st.sampled_from("xé😀\x00"),
              st.sampled_from([255, 256, 257, 9_999, 10_000, 10_001])),
)  # fmt: skip
_INTS = st.one_of(
    st.integers(),
    st.sampled_from([0, 1, 5, 6, -1, 127, 128, 2**31 - 1, 2**31, -(2**31) - 1, 2**63, 10**40]),
)
_FLOATS = st.floats(allow_nan=True, allow_infinity=True)
_TIMES = st.one_of(
    st.datetimes(
        min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59),
        timezones=st.one_of(
            st.none(), st.just(UTC),
            st.builds(lambda m: timezone(timedelta(minutes=m)), st.integers(-1439, 1439)),
        ),
    ).map(datetime.isoformat),
    st.sampled_from(["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00",
                     "2026-13-01T00:00:00Z", "10000-01-01T00:00:00Z", "2026-11-23T10:00:00+25:00",
                     "yesterday", "", "2026-11-23"]),
    _INTS, _FLOATS,
)  # fmt: skip
_JSON = st.recursive(
    st.none() | st.booleans() | _INTS | _FLOATS | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=12,
)
_RAW = st.sampled_from(
    [b"1e999", b"-1e999", b"NaN", b"Infinity", b"-Infinity", b"1" + b"0" * 400, b'"\\ud800"',
     b'"a\\udc00"', b'"\xff\xfe"', b'"\xc3"', b"[" * 199 + b"]" * 199, b"[" * 201 + b"]" * 201,
     b"[" * 5000 + b"]" * 5000, b"{}", b"[]", b"null", b"true", b'"\\u0000"']
)  # fmt: skip


@st.composite
def _fragment(draw: st.DrawFn, value: st.SearchStrategy[Any]) -> bytes:
    if draw(st.integers(0, 4)) == 0:
        return draw(_RAW)
    return _dumps(draw(value), ascii_only=draw(st.booleans()))


FIELDS: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "query": {"task": _TEXT, "text": _TEXT, "model_version": _TEXT, "latency_ms": _FLOATS,
              "output": _JSON, "arm": _TEXT, "unit_id": _TEXT, "error": _TEXT,
              "service": _TEXT, "fallback_used": _JSON},
    "feedback": {"rating": _INTS, "thumbs": _TEXT, "doc_id": _TEXT, "comment": _TEXT},
    "correction": {"corrected_output": _JSON, "author": _TEXT},
}  # fmt: skip
COMMON = {"schema_version": _INTS, "query_id": _TEXT, "ts": _TIMES}


# Ids no event may have.
_BAD_IDS = st.sampled_from(["", " ", "\t", "\x00", "x" * 257, 0, None, [], {"a": 1}])


@st.composite
def structured(draw: st.DrawFn) -> tuple[str, bytes, str | None]:
    """A valid event with up to two fields made hostile (or dropped), a hostile id perhaps,
    and perhaps unknown fields: (subject, payload, its event id if it is a string)."""
    kind = draw(st.sampled_from(sorted(FIELDS)))
    event_id: str | None = ID
    if draw(st.integers(0, 4)) == 0:
        event_id += draw(_TEXT)
    fields = {k: _dumps(v, True) for k, v in event(kind, event_id).items()}
    fields["event_id"] = _dumps(event_id, ascii_only=draw(st.booleans()))
    if kind == "feedback" and draw(st.booleans()):
        fields["thumbs"] = b'"up"'
    strategies = FIELDS[kind] | COMMON
    for name in draw(st.sets(st.sampled_from(sorted(strategies)), max_size=2)):
        if draw(st.integers(0, 5)) == 0:
            fields.pop(name, None)
        else:
            fields[name] = draw(_fragment(strategies[name]))
    if draw(st.integers(0, 9)) == 0:
        fields["event_id"] = _dumps(draw(_BAD_IDS), ascii_only=True)
        event_id = None
    for _ in range(draw(st.integers(0, 2))):
        name = draw(_TEXT)
        if name not in fields:
            fields[_dumps(name, True)] = draw(_fragment(_JSON))
    body = (
        b"{"
        + b", ".join(
            (k if isinstance(k, bytes) else _dumps(k, True)) + b": " + v for k, v in fields.items()
        )
        + b"}"
    )
    return f"{PREFIX}.{kind}", body, event_id


@st.composite
def raw(draw: st.DrawFn) -> tuple[str, bytes, str | None]:
    """Bytes: random, or a valid event with bytes inserted or cut after its id (which may
    leave it valid); perhaps an odd subject."""
    subject = f"{PREFIX}.{draw(st.sampled_from(['query', 'feedback', 'correction', 'clicks']))}"
    if draw(st.booleans()):
        return subject, draw(st.binary(max_size=200)), None
    kind = subject.rsplit(".", 1)[1]
    event_id = ID
    body = json.dumps(event(kind if kind in FIELDS else "query", event_id)).encode()
    at = draw(st.integers(body.index(event_id.encode()) + len(event_id) + 1, len(body) - 1))
    cut = draw(st.integers(0, 3))
    mutated = body[:at] + draw(st.binary(min_size=1, max_size=8)) + body[at + cut :]
    return subject, mutated, event_id


PAYLOADS = st.lists(st.one_of(structured(), raw()), min_size=1, max_size=12)


def unique(payloads: list[tuple[str, bytes, str | None]]) -> list[tuple[str, bytes, str | None]]:
    """The payloads with ids of their own."""
    out = []
    for subject, body, event_id in payloads:
        prefix = f"fz{next(_ids)}-"
        body = body.replace(ID.encode(), prefix.encode())
        out.append((subject, body, None if event_id is None else event_id.replace(ID, prefix)))
    return out


# --- Against the store alone: a payload that validates always commits.


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EventStore]:
    store = EventStore(tmp_path_factory.mktemp("fuzz-store") / "k.duckdb")
    yield store
    store.close()


_seqs = itertools.count(1)


def _settle_in_store(store: EventStore, payloads: list[tuple[str, bytes, str | None]]) -> None:
    msgs = [
        SimpleNamespace(subject=subject, data=data, headers=None,
                        metadata=SimpleNamespace(sequence=SimpleNamespace(stream=next(_seqs))))
        for subject, data, _ in payloads
    ]  # fmt: skip
    batch = classify(msgs, PREFIX, MAX_PAYLOAD)  # type: ignore[arg-type]
    assert sum(len(m) for m in batch.msgs.values()) == len(payloads)
    for row in batch.rows[REJECTED_TABLE]:
        assert row["reason"], row
    refused = store.write_isolating(batch.rows)
    assert refused == [], [(r.error, batch.rows[r.table][r.index]) for r in refused]
    # What was stored reads back (timestamps, JSON and text all convert to Python).
    con = store.cursor()
    for table in (*EVENT_TABLES.values(), REJECTED_TABLE):
        key = "stream_seq" if table == REJECTED_TABLE else "event_id"
        keys = [row[key] for row in batch.rows[table]]
        if keys:
            got = con.execute(f"SELECT * FROM {table} WHERE {key} IN (SELECT unnest(?))", [keys])
            assert len(got.fetchall()) == len(keys)


@QUICK
@given(PAYLOADS)
def test_every_payload_that_validates_commits(store: EventStore, payloads: list) -> None:
    _settle_in_store(store, unique(payloads))


@pytest.mark.slow
@LONG
@given(PAYLOADS)
def test_every_payload_that_validates_commits_long(store: EventStore, payloads: list) -> None:
    _settle_in_store(store, unique(payloads))


# --- Through a real nats-server and the running daemon.


SETTLE_S = 30.0
"""A batch commits within milliseconds (flush_interval_ms is 50 ms in the tests): generous."""


def _hex(event_id: str) -> str:
    """The UTF-8 of ``event_id`` as DuckDB's hex() writes it. A JSON parser joins the escapes of
    a surrogate pair ("\\ud83d\\ude00") into one character: so does this."""
    joined = event_id.encode("utf-16", "surrogatepass").decode("utf-16", "surrogatepass")
    return joined.encode("utf-8", "surrogatepass").hex().upper()


async def _publish_and_settle(d: RunningDaemon, payloads: list) -> None:
    seqs = [(await d.js.publish(subject, data)).seq for subject, data, _ in payloads]
    ids = [_hex(event_id) for _, _, event_id in payloads if event_id is not None]
    # Ids compared in hex: any text goes into the query safely.
    where = f"hex(event_id) IN ({', '.join(map(repr, ids)) or 'NULL'})"
    events = " UNION ALL ".join(
        f"SELECT hex(event_id) AS h FROM {t} WHERE {where}" for t in EVENT_TABLES.values()
    )
    placed: dict[str, Any] = {}

    async def settled() -> bool:
        stored = (await d.sql(f"SELECT h, count(*) FROM ({events}) GROUP BY h"))["rows"]
        rejected = (
            await d.sql(
                "SELECT stream_seq FROM rejected_events WHERE reason <> '' AND stream_seq IN "
                f"({', '.join(map(str, seqs))})"
            )
        )["rows"]
        placed["stored"] = dict(stored)
        placed["rejected"] = {seq for (seq,) in rejected}
        return len(stored) + len(rejected) >= len(payloads)

    try:
        await eventually(settled, timeout=SETTLE_S)
    except pytest.fail.Exception:
        missing = [
            data[:300]
            for (_, data, event_id), seq in zip(payloads, seqs, strict=True)
            if seq not in placed["rejected"]
            and (event_id is None or _hex(event_id) not in placed["stored"])
        ]
        pytest.fail(f"neither stored nor rejected within {SETTLE_S} s: {missing}")
    # Each payload in exactly one place, and stored once.
    for (_, data, event_id), seq in zip(payloads, seqs, strict=True):
        stored = placed["stored"].get(_hex(event_id), 0) if event_id is not None else 0
        assert stored + (seq in placed["rejected"]) == 1, (data[:200], stored, seq)
    assert len(placed["stored"]) + len(placed["rejected"]) == len(payloads)
    # What was stored reads back whole through the daemon's SQL.
    for t in EVENT_TABLES.values():
        result = await d.sql(f"SELECT * FROM {t} WHERE {where}")
        assert "error" not in result, result

    async def nothing_pending() -> bool:
        lag = (await d.status())["lag"]
        return lag["num_pending"] == 0 and lag["num_ack_pending"] == 0

    await eventually(nothing_pending)
    status = await d.status()
    assert status["lag"]["num_redelivered"] == 0
    assert status["storage_failures"] == 0


async def _fuzz_daemon(d: RunningDaemon, profile: settings) -> None:
    """Run the examples in a thread, each against the daemon on this test's event loop, which
    keeps running between examples as a daemon's would."""
    loop = asyncio.get_running_loop()

    @settings(profile, phases=NO_SHRINK)
    @given(PAYLOADS)
    def example(payloads: list) -> None:
        asyncio.run_coroutine_threadsafe(_publish_and_settle(d, unique(payloads)), loop).result()

    await asyncio.to_thread(example)


async def test_every_published_payload_is_stored_or_rejected(running: RunningDaemon) -> None:
    await _fuzz_daemon(running, QUICK)


@pytest.mark.slow
async def test_every_published_payload_is_stored_or_rejected_long(running: RunningDaemon) -> None:
    await _fuzz_daemon(running, LONG)
