"""Publishing events to JetStream: the producer side, for replay, tests and benchmarks.

Each event is published with ``Nats-Msg-Id`` set to its ``event_id``, so the server drops a
re-published copy inside the stream's duplicate window. Events go out in windows of
asynchronous publishes; a window whose acks do not all arrive (a server restart, a timeout)
is published again, which the duplicate window makes safe.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice

from nats.js import JetStreamContext

log = logging.getLogger(__name__)

KINDS = ("query", "feedback", "correction")


@dataclass(frozen=True)
class Outgoing:
    """One message to publish: ``subject`` under the events prefix, its id and its bytes."""

    subject: str
    payload: bytes
    event_id: str | None = None


@dataclass
class PublishReport:
    published: int = 0
    duplicates: int = 0
    retried_windows: int = 0


def _windows(items: Iterable[Outgoing], size: int) -> Iterator[list[Outgoing]]:
    iterator = iter(items)
    while window := list(islice(iterator, size)):
        yield window


async def publish_events(
    js: JetStreamContext,
    events: Iterable[Outgoing],
    *,
    window: int = 1000,
    ack_timeout_s: float = 10.0,
    max_attempts: int = 10,
    on_progress: Callable[[int], None] | None = None,
) -> PublishReport:
    """Publish ``events`` and wait until the server has acknowledged every one of them.

    Raises the last error if a window still fails after ``max_attempts``.
    """
    report = PublishReport()
    for chunk in _windows(events, window):
        for attempt in range(1, max_attempts + 1):
            futures: list[asyncio.Future] = []
            try:
                for e in chunk:
                    headers = {"Nats-Msg-Id": e.event_id} if e.event_id else None
                    futures.append(await js.publish_async(e.subject, e.payload, headers=headers))
                acks = await asyncio.wait_for(asyncio.gather(*futures), ack_timeout_s)
                break
            except Exception as err:  # noqa: BLE001 - any failure: publish the window again
                # Unresolved futures hold the client's pending-publish slots: free them.
                for future in futures:
                    future.cancel()
                if attempt == max_attempts:
                    raise
                report.retried_windows += 1
                delay = min(0.2 * 2**attempt, 5.0)
                log.warning("publish window failed (%s); retrying in %.1f s", repr(err), delay)
                await asyncio.sleep(delay)
        report.published += len(chunk)
        report.duplicates += sum(1 for ack in acks if ack.duplicate)
        if on_progress is not None:
            on_progress(len(chunk))
    return report
