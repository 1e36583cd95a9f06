"""Ingestion through a real nats-server into a real DuckDB file."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace
from typing import Any

import duckdb
from kaizend.core.config import IngestSettings
from kaizend.handlers.ingest import Ingestor, classify
from kaizend.handlers.publish import publish_events
from kaizend.storage.events import EventStore, apply_schema, stored_summary

from tests.conftest import (
    RunningDaemon,
    event,
    eventually,
    make_settings,
    outgoing,
    rows,
    run_daemon,
)

TOTAL = (
    "SELECT (SELECT count(*) FROM query_events) + (SELECT count(*) FROM feedback_events)"
    " + (SELECT count(*) FROM correction_events)"
)


async def test_every_kind_is_stored_once_with_its_fields(running: RunningDaemon) -> None:
    events = [
        outgoing(
            "query", event("query", "e1", arm="champion", unit_id="u1", future_field={"x": 1})
        ),
        outgoing("feedback", event("feedback", "e2", thumbs="up", doc_id="FIT-4004")),
        outgoing("correction", event("correction", "e3", author="reviewer")),
    ]
    report = await publish_events(running.js, events)
    # Producers re-publishing the same event ids: the server drops them.
    again = await publish_events(running.js, events)
    assert (report.duplicates, again.duplicates) == (0, 3)

    async def stored() -> bool:
        return await running.scalar(TOTAL) == 3

    await eventually(stored)
    row = (
        await running.sql(
            "SELECT task, arm, unit_id, output->>'technology', extra->>'future_field' "
            "FROM query_events WHERE event_id = 'e1'"
        )
    )["rows"][0]
    assert row == ["parser", "champion", "u1", "Wind", '{"x":1}']
    assert await running.scalar("SELECT doc_id FROM feedback_events") == "FIT-4004"
    assert (
        await running.scalar("SELECT corrected_output->>'capacity_min_kw' FROM correction_events")
        == "100"
    )
    status = await running.status()
    assert status["lag"]["num_ack_pending"] == 0 and status["lag"]["num_pending"] == 0


async def test_a_burst_commits_in_few_transactions_and_a_lone_event_at_once(
    tmp_path, nats_server
) -> None:
    settings = make_settings(
        tmp_path / "data", nats_server.url, ingest={"batch_size": 100, "flush_interval_ms": 1000}
    )
    async with run_daemon(settings) as daemon:
        lone = [outgoing("query", event("query", "lone"))]
        started = time.monotonic()
        await publish_events(daemon.js, lone)

        async def lone_stored() -> bool:
            return await daemon.scalar(TOTAL) == 1

        await eventually(lone_stored)
        # One flush interval for the fetch to give up waiting for a full batch; no more.
        assert time.monotonic() - started < 2.5
        burst = [outgoing("feedback", event("feedback", f"b{i}")) for i in range(2000)]
        await publish_events(daemon.js, burst)

        async def burst_stored() -> bool:
            return await daemon.scalar(TOTAL) == 2001

        await eventually(burst_stored, timeout=60)
        status = await daemon.status()
    # 21 fetched batches; a commit at least a flush interval after the previous one takes
    # every batch that arrived meanwhile (at most 5 of them).
    assert 1 + 2000 // 500 <= status["batches"] < 12
    assert status["lag"]["num_ack_pending"] == 0


async def test_feedback_before_its_query_links_up_when_it_arrives(running: RunningDaemon) -> None:
    await publish_events(
        running.js, [outgoing("feedback", event("feedback", "f1", "late", rating=2))]
    )

    async def unlinked() -> bool:
        return await running.scalar("SELECT count(*) FROM unlinked_signals") == 1

    await eventually(unlinked)
    await publish_events(running.js, [outgoing("query", event("query", "q-late", "late"))])

    async def linked() -> bool:
        return await running.scalar("SELECT count(*) FROM unlinked_signals") == 0

    await eventually(linked)
    outcome = (
        await running.sql(
            "SELECT n_feedback, mean_rating FROM query_outcomes WHERE query_id = 'late'"
        )
    )["rows"]
    assert outcome == [[1, 2.0]]


BAD_INPUTS = {
    # name: (subject suffix, raw payload, words the stored reason must contain)
    "malformed json": ("query", b'{"event_id": "b1", "query_id":', "malformed JSON"),
    "not an object": ("feedback", b"[1, 2, 3]", "invalid feedback event"),
    "wrong type": (
        "query",
        json.dumps(event("query", "b3", latency_ms="fast")).encode(),
        "latency_ms",
    ),
    "missing field": (
        "correction",
        json.dumps({"event_id": "b4", "query_id": "q", "ts": "2026-11-23T10:00:00Z"}).encode(),
        "missing field 'corrected_output'",
    ),
    "rating out of range": (
        "feedback",
        json.dumps(event("feedback", "b5", rating=6)).encode(),
        "rating",
    ),
    "no judgement": (
        "feedback",
        json.dumps(event("feedback", "b6", rating=None)).encode(),
        "needs a rating",
    ),
    "unknown subject": ("clicks", json.dumps(event("query", "b7")).encode(), "unknown subject"),
    "oversized": (
        "query",
        json.dumps(event("query", "b8", text="x" * 70_000)).encode(),
        "oversized payload",
    ),
}


async def test_bad_input_is_rejected_with_a_reason_and_good_events_keep_flowing(
    running: RunningDaemon,
) -> None:
    good = 0
    for i, (name, (suffix, payload, _)) in enumerate(BAD_INPUTS.items()):
        await running.js.publish(f"kaizen.events.{suffix}", payload)
        # A good event after each bad one, in the same stream.
        await publish_events(running.js, [outgoing("query", event("query", f"good{i}", text=name))])
        good += 1

    async def all_settled() -> bool:
        rejected = await running.scalar("SELECT count(*) FROM rejected_events")
        return rejected == len(BAD_INPUTS) and await running.scalar(TOTAL) == good

    await eventually(all_settled)
    rows = (
        await running.sql(
            "SELECT subject, reason, raw_size FROM rejected_events ORDER BY stream_seq"
        )
    )["rows"]
    for (name, (suffix, payload, words)), (subject, reason, raw_size) in zip(
        BAD_INPUTS.items(), rows, strict=True
    ):
        assert subject == f"kaizen.events.{suffix}", name
        assert words in reason, (name, reason)
        assert raw_size == len(payload), name
    stored_raw = await running.scalar(
        "SELECT decode(raw) FROM rejected_events ORDER BY stream_seq LIMIT 1"
    )
    assert stored_raw == BAD_INPUTS["malformed json"][1].decode()
    # Terminated, not left for redelivery: nothing pending, nothing redelivered.
    status = await running.status()
    assert status["lag"] == {"num_pending": 0, "num_ack_pending": 0, "num_redelivered": 0}
    assert status["healthy"]


async def test_storage_failure_is_retried_until_the_batch_commits(running: RunningDaemon) -> None:
    cursor = running.daemon.store.cursor()
    # A real DuckDB failure: the table the batch goes to is missing for a while.
    cursor.execute("ALTER TABLE correction_events RENAME TO correction_events_away")
    await publish_events(running.js, [outgoing("correction", event("correction", "c1"))])

    async def failed_twice() -> bool:
        return (await running.status())["storage_failures"] >= 2

    await eventually(failed_twice)
    assert (await running.status())["lag"]["num_redelivered"] >= 1
    cursor.execute("ALTER TABLE correction_events_away RENAME TO correction_events")

    async def committed() -> bool:
        return await running.scalar("SELECT count(*) FROM correction_events") == 1

    await eventually(committed)


async def test_graceful_stop_commits_the_open_batch_and_a_restart_stores_the_rest(
    tmp_path, nats_server
) -> None:
    settings = make_settings(tmp_path / "data", nats_server.url, ingest={"ack_wait_s": 2.0})
    events = [outgoing("query", event("query", f"s{i}")) for i in range(5000)]
    async with run_daemon(settings) as first:
        await publish_events(first.js, events)
        assert await first.stop() == 0
        with duckdb.connect(str(settings.db_path), read_only=True) as db:
            stored = db.execute("SELECT count(*) FROM query_events").fetchone()[0]
        info = await first.js.consumer_info("KAIZEN_EVENTS", "kaizend-ingest")
    # Every batch handed to the writer was committed and acknowledged before exit. At most the
    # one batch being fetched at the instant of the stop is left unacknowledged; JetStream
    # redelivers it after ack_wait.
    assert 0 < stored
    assert info.num_ack_pending <= settings.ingest.batch_size
    assert stored + info.num_pending + info.num_ack_pending == 5000
    async with run_daemon(settings) as second:

        async def all_stored() -> bool:
            return await second.scalar("SELECT count(DISTINCT event_id) FROM query_events") == 5000

        await eventually(all_stored)
        assert await second.scalar("SELECT count(*) FROM query_events") == 5000


async def test_an_event_past_max_deliver_is_reported_not_silently_dropped(
    tmp_path, nats_server
) -> None:
    settings = make_settings(tmp_path / "data", nats_server.url, ingest={"max_deliver": 2})
    async with run_daemon(settings) as daemon:
        daemon.daemon.store.cursor().execute("DROP TABLE correction_events CASCADE")
        ack = await daemon.js.publish(
            "kaizen.events.correction", json.dumps(event("correction", "lost")).encode()
        )

        async def reported() -> bool:
            return (await daemon.status())["abandoned_stream_seqs"] == [ack.seq]

        await eventually(reported)


async def test_a_changed_consumer_setting_takes_effect_on_restart(tmp_path, nats_server) -> None:
    for ack_wait, max_deliver in ((30.0, 10), (7.0, 4)):
        settings = make_settings(
            tmp_path / "data",
            nats_server.url,
            ingest={"ack_wait_s": ack_wait, "max_deliver": max_deliver},
        )
        async with run_daemon(settings) as daemon:
            info = await daemon.js.consumer_info("KAIZEN_EVENTS", "kaizend-ingest")
            assert (info.config.ack_wait, info.config.max_deliver) == (ack_wait, max_deliver)


def _raw(kind: str, event_id: str, **fields: Any) -> bytes:
    return json.dumps(event(kind, event_id, **fields)).encode()


def _spliced(kind: str, event_id: str, name: str | bytes, raw_value: bytes) -> bytes:
    """A valid event with ``"<name>": <raw_value>`` spliced in as raw JSON (non-standard
    literals, invalid UTF-8, surrogate escapes that json.dumps cannot write)."""
    body = _raw(kind, event_id)
    name = name.encode() if isinstance(name, str) else name
    return body[:-1] + b', "' + name + b'": ' + raw_value + b"}"


def _nested(depth: int) -> bytes:
    return b"[" * depth + b'"leaf"' + b"]" * depth


# name: (subject suffix, payload, None if it must be stored harmlessly, else the words its
# reason in rejected_events must contain). Each is published between two good events.
HOSTILE: dict[str, tuple[str, bytes, str | None]] = {
    # The integers of every integer column, past what the column holds.
    "query schema_version 3e9": ("query", _raw("query", "h1", schema_version=3_000_000_000),
                                 "schema_version"),
    "feedback schema_version 2**63": ("feedback", _raw("feedback", "h2", schema_version=2**63),
                                      "schema_version"),
    "correction schema_version 10**40": ("correction",
                                         _raw("correction", "h3", schema_version=10**40),
                                         "schema_version"),
    "negative schema_version": ("query", _raw("query", "h4", schema_version=-(2**40)),
                                "schema_version"),
    "rating 2**31": ("feedback", _raw("feedback", "h5", rating=2**31), "rating"),
    "rating 10**400": ("feedback", _spliced("feedback", "h6", "rating", b"1" + b"0" * 400),
                       "rating"),
    # Infinities and NaN, in float fields and inside JSON values.
    "latency 1e999": ("query", _spliced("query", "h7", "latency_ms", b"1e999"), "latency_ms"),
    "latency NaN": ("query", _spliced("query", "h8", "latency_ms", b"NaN"), "latency_ms"),
    "latency -Infinity": ("query", _spliced("query", "h9", "latency_ms", b"-Infinity"),
                          "latency_ms"),
    "output NaN": ("query", _spliced("query", "h10", "output", b'{"score": NaN}'),
                   "field 'output': JSON numbers must be finite"),
    "corrected Infinity": ("correction",
                           _spliced("correction", "h11", "corrected_output", b"[Infinity]"),
                           "field 'corrected_output'"),
    "unknown field 1e999": ("feedback", _spliced("feedback", "h12", "weight", b"1e999"),
                            "field 'weight'"),
    # Timestamps outside what can be stored, or not timestamps.
    "ts past 9999 in UTC": ("query", _raw("query", "h13", ts="9999-12-31T23:59:59-05:00"),
                            "outside the years 1-9999"),
    "ts before year 1 in UTC": ("feedback",
                                _raw("feedback", "h14", ts="0001-01-01T00:00:00+05:00"),
                                "outside the years 1-9999"),
    "ts month 13": ("query", _raw("query", "h15", ts="2026-13-01T00:00:00Z"), "field 'ts'"),
    "ts words": ("correction", _raw("correction", "h16", ts="yesterday"), "field 'ts'"),
    "ts 1e20": ("query", _raw("query", "h17", ts=1e20), "field 'ts'"),
    "ts year 10000": ("query", _raw("query", "h18", ts="10000-01-01T00:00:00Z"), "field 'ts'"),
    "ts offset +25:00": ("query", _raw("query", "h19", ts="2026-11-23T10:00:00+25:00"),
                         "field 'ts'"),
    "ts offset +23:59": ("query", _raw("query", "h20", ts="2026-11-23T10:00:00+23:59"), None),
    # NUL characters: refused in string columns, kept escaped inside JSON.
    "NUL in event_id": ("query", _raw("query", "h21\x00x"), "control characters"),
    "NUL in text": ("query", _raw("query", "h22", text="wind\x00sites"), "NUL"),
    "NUL in comment": ("feedback", _raw("feedback", "h23", comment="ok\x00"), "NUL"),
    "NUL in output": ("query", _raw("query", "h24", output={"k": "a\x00b"}), None),
    # Bytes that are not UTF-8, and lone surrogates.
    "invalid UTF-8 in text": ("query", _spliced("query", "h25", "text", b'"wind \xff\xfe"'),
                              "malformed JSON"),
    "invalid UTF-8 key": ("feedback", _spliced("feedback", "h26", b"k\xc3", b"1"),
                          "malformed JSON"),
    "lone surrogate in text": ("query", _spliced("query", "h27", "text", b'"a\\ud800b"'),
                               "malformed JSON"),
    "lone low surrogate in output": ("query",
                                     _spliced("query", "h28", "output", b'["\\udfff"]'),
                                     "malformed JSON"),
    "surrogate in a key": ("correction", _spliced("correction", "h29", "\\ud83d", b"1"),
                           "malformed JSON"),
    "binary garbage": ("query", bytes(range(256)), "malformed JSON"),
    # Deep nesting: within the parser's limit it is stored; past it, refused.
    "output nested 150": ("query", _spliced("query", "h30", "output", _nested(150)), None),
    "output nested 5000": ("query", _spliced("query", "h31", "output", _nested(5000)),
                           "recursion limit"),
    "unknown field nested 5000": ("feedback", _spliced("feedback", "h32", "deep", _nested(5000)),
                                  "recursion limit"),
    # Oversized strings.
    "text of 10,001 characters": ("query", _raw("query", "h33", text="x" * 10_001),
                                  "field 'text'"),
    "event_id of 257 characters": ("feedback", _raw("feedback", "h" * 257), "field 'event_id'"),
    "NUL in error": ("query", _raw("query", "h34", error="boom\x00"), "NUL"),
    "oversized payload": ("correction", _raw("correction", "h35", author="a", pad="p" * 70_000),
                          "oversized payload"),
    # Empty identifiers.
    "empty event_id": ("query", _raw("query", ""), "field 'event_id'"),
    "blank event_id": ("feedback", _raw("feedback", "   "), "must not be blank"),
    "empty query_id": ("correction", _raw("correction", "h36", query_id=""), "field 'query_id'"),
    "empty task": ("query", _raw("query", "h37", task=""), "field 'task'"),
    "newline model_version": ("query", _raw("query", "h38", model_version="v0\n"),
                              "control characters"),
}  # fmt: skip


async def test_hostile_payloads_are_kept_harmlessly_and_every_good_event_is_stored_once(
    running: RunningDaemon,
) -> None:
    seqs: dict[str, int] = {}
    good: list[str] = []
    for i, (name, (suffix, payload, _)) in enumerate(HOSTILE.items()):
        await publish_events(running.js, [outgoing("query", event("query", f"g{i}", f"gq{i}"))])
        good.append(f"g{i}")
        seqs[name] = (await running.js.publish(f"kaizen.events.{suffix}", payload)).seq
    await publish_events(running.js, [outgoing("feedback", event("feedback", "g-last"))])
    good.append("g-last")
    harmless = [name for name, (_, _, words) in HOSTILE.items() if words is None]

    async def all_settled() -> bool:
        rejected = await running.scalar("SELECT count(*) FROM rejected_events")
        return rejected + len(harmless) == len(HOSTILE) and await running.scalar(TOTAL) == len(
            good
        ) + len(harmless)

    await eventually(all_settled)
    stored = await rows(
        running,
        "SELECT event_id, count(*) AS n FROM (SELECT event_id FROM query_events UNION ALL "
        "SELECT event_id FROM feedback_events UNION ALL SELECT event_id FROM correction_events)"
        " GROUP BY event_id",
    )
    assert {r["event_id"]: r["n"] for r in stored if r["event_id"].startswith("g")} == {
        g: 1 for g in good
    }
    rejected = {
        r["stream_seq"]: r
        for r in await rows(
            running, "SELECT stream_seq, subject, reason, raw_size, hex(raw) AS raw FROM "
            "rejected_events"
        )
    }  # fmt: skip
    for name, (suffix, payload, words) in HOSTILE.items():
        if words is None:
            assert seqs[name] not in rejected, (name, rejected.get(seqs[name]))
            continue
        row = rejected[seqs[name]]
        assert words in row["reason"], (name, row["reason"])
        assert row["subject"] == f"kaizen.events.{suffix}", name
        assert row["raw_size"] == len(payload), name
        kept = payload[: running.daemon.settings.ingest.max_payload_bytes]
        assert bytes.fromhex(row["raw"]) == kept, name
    # Stored harmlessly: a +23:59 offset as its UTC instant, a NUL escaped inside JSON, a
    # 150-deep value that DuckDB's JSON functions read.
    assert (
        await running.scalar(
            "SELECT strftime(timezone('UTC', ts), '%Y-%m-%d %H:%M') FROM query_events "
            "WHERE event_id = 'h20'"
        )
        == "2026-11-22 10:01"
    )
    assert await running.scalar(
        "SELECT output->>'k' = 'a' || chr(0) || 'b' FROM query_events WHERE event_id = 'h24'"
    )
    assert (
        await running.scalar(
            "SELECT json_array_length(output) FROM query_events WHERE event_id = 'h30'"
        )
        == 1
    )
    status = await running.status()
    assert status["lag"] == {"num_pending": 0, "num_ack_pending": 0, "num_redelivered": 0}
    assert status["storage_failures"] == 0


async def test_an_event_the_database_refuses_is_isolated_and_its_batch_commits(
    tmp_path, nats_server
) -> None:
    # Validation lets every storable value through, so the database must refuse something it
    # alone checks: this file's query_events has a CHECK constraint (kept by the daemon's
    # CREATE TABLE IF NOT EXISTS), as an operator's own rule would be.
    # The events wait in the stream while no daemon runs; the next one fetches them in one
    # batch (a fetch waits flush_interval_ms for the batch to fill).
    settings = make_settings(
        tmp_path / "data", nats_server.url, ingest={"batch_size": 500, "flush_interval_ms": 2000}
    )
    settings.db_path.parent.mkdir(parents=True)
    with duckdb.connect() as scratch:
        apply_schema(scratch)
        ddl = scratch.execute(
            "SELECT sql FROM duckdb_tables() WHERE table_name = 'query_events'"
        ).fetchone()[0]
    with duckdb.connect(str(settings.db_path)) as db:
        db.execute(ddl.rstrip(");") + ", CHECK (text NOT LIKE '%poison%'))")
    poison = json.dumps(event("query", "bad", text="a poison query")).encode()
    async with run_daemon(settings) as first:  # creates the stream and the consumer
        await first.stop()
        before = [outgoing("query", event("query", f"a{i}")) for i in range(150)]
        after = [outgoing("feedback", event("feedback", f"b{i}")) for i in range(150)]
        await publish_events(first.js, before)
        seq = (await first.js.publish("kaizen.events.query", poison)).seq
        await publish_events(first.js, after)
    async with run_daemon(settings) as daemon:

        async def settled() -> bool:
            return await daemon.scalar(TOTAL) == 300 and (
                await daemon.scalar("SELECT count(*) FROM rejected_events") == 1
            )

        await eventually(settled)
        row = (await rows(daemon, "SELECT stream_seq, reason, decode(raw) AS raw FROM "
                                  "rejected_events"))[0]  # fmt: skip
        assert row["stream_seq"] == seq
        assert "query event refused by the database" in row["reason"]
        assert "CHECK constraint failed" in row["reason"], row["reason"]
        assert row["raw"].encode() == poison
        status = await daemon.status()
        assert status["batches"] == 1  # the poison shared its batch with the 300 good events
        assert status["storage_failures"] == 0
        assert status["lag"] == {"num_pending": 0, "num_ack_pending": 0, "num_redelivered": 0}
        assert status["abandoned_stream_seqs"] == []


def test_the_rejected_events_path_keeps_a_message_it_cannot_store_as_is(tmp_path) -> None:
    # A subject and headers that are not text (nats-py would not hand these over, but the path
    # must not depend on it): headers are kept escaped; the row of a subject that is not text
    # is refused by the store, and a plainer one kept.
    def msg(seq: int, subject: str, data: bytes, headers: dict | None = None) -> Any:
        meta = SimpleNamespace(sequence=SimpleNamespace(stream=seq))
        return SimpleNamespace(subject=subject, data=data, headers=headers, metadata=meta)

    msgs = [
        msg(1, "kaizen.events.query", json.dumps(event("query", "ok1")).encode()),
        msg(2, "kaizen.events.\udcff", b"\xff\x00 not json"),
        msg(3, "kaizen.events.feedback", b"{", {"X-Trace": "\ud800"}),
        msg(4, "kaizen.events.feedback", json.dumps(event("feedback", "ok2")).encode()),
    ]
    store = EventStore(tmp_path / "k.duckdb")
    ingestor = Ingestor(store, IngestSettings(), "kaizen.events")
    batch = classify(msgs, "kaizen.events", 65536)  # type: ignore[arg-type]
    ingestor._store(batch)
    assert [m.metadata.sequence.stream for m in batch.accepted] == [1, 4]
    assert [m.metadata.sequence.stream for m in batch.rejected] == [2, 3]
    got = (
        store.cursor()
        .execute("SELECT stream_seq, subject, reason, raw, headers FROM rejected_events ORDER BY 1")
        .fetchall()
    )
    assert got[0][:2] == (2, "kaizen.events.\\udcff")
    assert "unknown subject" in got[0][2] and "kept plainly" in got[0][2]
    assert (got[0][3], got[0][4]) == (b"\xff\x00 not json", None)
    assert got[1][:2] == (3, "kaizen.events.feedback")
    assert json.loads(got[1][4]) == {"X-Trace": "\\ud800"}
    assert stored_summary(store.cursor())["counts"]["query_events"] == 1
