"""The batch fetcher and its loop against a real nats-server: a request per batch, partial
batches at the deadline, refusals that do not spin, and a stop that keeps the batch in hand."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from kaizend.daemon.nats_server import EmbeddedNats
from kaizend.handlers.pull import BatchFetcher, PullLoop
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

STREAM, CONSUMER = "PULLTEST", "puller"


@pytest.fixture
async def nc(nats_server: EmbeddedNats) -> AsyncIterator[nats.NATS]:
    client = await nats.connect(nats_server.url)
    js = client.jetstream()
    await js.add_stream(StreamConfig(name=STREAM, subjects=["pt.>"]))
    await js.add_consumer(
        STREAM,
        ConsumerConfig(durable_name=CONSUMER, ack_policy=AckPolicy.EXPLICIT, max_ack_pending=-1),
    )
    yield client
    await client.close()


async def publish(nc: nats.NATS, n: int, start: int = 0) -> None:
    js = nc.jetstream()
    acks = [await js.publish_async(f"pt.{i}", str(i).encode()) for i in range(start, start + n)]
    await asyncio.gather(*acks)


async def fetcher(nc: nats.NATS, consumer: str = CONSUMER) -> BatchFetcher:
    fetcher = BatchFetcher(nc, STREAM, consumer)
    await fetcher.start()
    return fetcher


async def watch_requests(nats_server: EmbeddedNats) -> tuple[nats.NATS, list[dict[str, Any]]]:
    """Every pull request sent to the consumer, as another client sees it."""
    watcher = await nats.connect(nats_server.url)
    seen: list[dict[str, Any]] = []

    async def record(msg: Msg) -> None:
        seen.append(json.loads(msg.data))

    await watcher.subscribe(f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{CONSUMER}", cb=record)
    await watcher.flush()
    return watcher, seen


async def test_a_batch_is_one_request_and_every_message_comes_once(
    nc: nats.NATS, nats_server: EmbeddedNats
) -> None:
    await publish(nc, 5000)
    watcher, requests = await watch_requests(nats_server)
    fetch = await fetcher(nc)
    got: list[Msg] = []
    while len(got) < 5000:
        batch = await fetch.fetch(1000, timeout=5)
        assert len(batch) == 1000  # the stream holds them: no partial batch
        got += batch
    await watcher.flush()
    await asyncio.sleep(0.2)
    assert sorted(int(m.data) for m in got) == list(range(5000))
    assert len(requests) == 5
    assert all(r["batch"] == 1000 for r in requests)
    for msg in got:
        await msg.ack()
    info = await nc.jetstream().consumer_info(STREAM, CONSUMER)
    await watcher.close()
    assert (info.num_pending, info.num_redelivered) == (0, 0)


async def test_a_partial_batch_comes_at_the_deadline_and_nothing_is_an_empty_list(
    nc: nats.NATS,
) -> None:
    fetch = await fetcher(nc)
    started = time.monotonic()
    assert await fetch.fetch(100, timeout=0.3) == []
    waited = time.monotonic() - started
    assert 0.25 < waited < 0.3 + 1.5  # the server's 408, or the grace for a lost answer
    await publish(nc, 7)
    started = time.monotonic()
    batch = await fetch.fetch(100, timeout=0.3)
    assert sorted(int(m.data) for m in batch) == list(range(7))
    assert time.monotonic() - started < 0.3 + 1.5


async def test_messages_published_during_the_wait_fill_the_batch(nc: nats.NATS) -> None:
    fetch = await fetcher(nc)
    pending = asyncio.ensure_future(fetch.fetch(50, timeout=10))
    await asyncio.sleep(0.1)
    await publish(nc, 50)
    started = time.monotonic()
    batch = await pending
    assert len(batch) == 50
    assert time.monotonic() - started < 5  # full: it did not wait for the expiry


async def test_a_refused_request_ends_at_once_and_says_why(nc: nats.NATS) -> None:
    fetch = await fetcher(nc, consumer="no-such-consumer")
    started = time.monotonic()
    assert await fetch.fetch(10, timeout=5) == []
    assert time.monotonic() - started < 4
    assert fetch.last_status == "503"  # nothing answers that subject


async def test_the_loop_hands_every_batch_over_and_a_stop_keeps_the_one_in_hand(
    nc: nats.NATS,
) -> None:
    handled: list[list[Msg]] = []
    failed_once = asyncio.Event()

    async def handler(msgs: list[Msg]) -> None:
        if not failed_once.is_set():
            failed_once.set()
            raise RuntimeError("a handler that fails must not end the loop")
        handled.append(msgs)
        for msg in msgs:
            await msg.ack()

    # A long flush interval: only a full batch, or the stop, ends a fetch.
    loop = PullLoop(await fetcher(nc), handler, batch=100, timeout_s=30)
    loop.start()
    await publish(nc, 200)
    deadline = time.monotonic() + 20
    while sum(map(len, handled)) < 100 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    # The first batch failed (JetStream redelivers it after ack_wait); the second came.
    assert [len(batch) for batch in handled] == [100]
    await publish(nc, 30, start=200)
    await asyncio.sleep(0.3)  # the 30 arrive while the loop waits for a full batch
    started = time.monotonic()
    await loop.stop()
    assert time.monotonic() - started < 5
    assert sorted(int(m.data) for m in handled[-1]) == list(range(200, 230))
    await loop.fetcher.stop()
