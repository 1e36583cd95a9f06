"""Ingestion through a real nats-server into a real DuckDB file."""

from __future__ import annotations

import json

import duckdb

from handlers.publish import publish_events
from tests.conftest import RunningDaemon, event, eventually, make_settings, outgoing, run_daemon

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
