"""A durable JetStream pull consumer fetched a whole batch at a time, and the loop that runs it.

nats-py's ``PullSubscription.fetch`` waits for each message of a batch on its own (a task, a
timer and a uuid per message): about 30 µs of CPU per message, more than validating and storing
the event costs. :class:`BatchFetcher` asks for a batch with one lingering pull request
(``$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>``) and collects the deliveries in the callback
of one plain subscription on its own inbox: a list append per message, one wake-up per batch.

One request is outstanding at a time. A fetch ends when the batch is full, when the server ends
the request (a status message: 408 once ``expires`` passed, 404 when a no-wait request found
nothing more, 409 when the consumer cannot serve it), when :meth:`BatchFetcher.interrupt` is
called, or shortly after the expiry when the server's answer was lost (a reconnect). A delivery
that arrives after its fetch ended is kept for the next one.

:class:`PullLoop` fetches batches and hands each to a handler until stopped; a batch fetched
when the stop comes is still handed over, so a graceful stop leaves only the deliveries in
flight at that instant unacknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable

import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

log = logging.getLogger(__name__)

LOST_ANSWER_GRACE_S = 1.0
"""How long past its expiry a request may stay unanswered before the fetch gives up on it."""
_MIN_EXPIRES_NS = 1_000_000
_CONTROL = "100"  # an idle heartbeat: not the end of the request


class BatchFetcher:
    """``fetch(batch, timeout)`` for one durable pull consumer, a request per batch."""

    def __init__(
        self, nc: NATS, stream: str, consumer: str, *, api_prefix: str = "$JS.API"
    ) -> None:
        self.nc = nc
        self.next_subject = f"{api_prefix}.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._inbox = ""
        self._sub: Subscription | None = None
        self._arrived: list[Msg] = []
        self._wanted = 0  # deliveries the open request may still bring
        self._done: asyncio.Event = asyncio.Event()
        self._done.set()
        self.last_status: str | None = None
        """The status that ended the last request early (``"409 Consumer Deleted"``), if any."""

    async def start(self) -> None:
        self._inbox = self.nc.new_inbox()
        self._sub = await self.nc.subscribe(self._inbox, cb=self._on_message)

    async def stop(self) -> None:
        self.interrupt()
        if self._sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._sub.unsubscribe()
            self._sub = None

    def interrupt(self) -> None:
        """End the fetch in progress now, with what it has collected."""
        self._done.set()

    async def _on_message(self, msg: Msg) -> None:
        if msg.reply:  # a delivery: JetStream gives each one its ack subject
            self._arrived.append(msg)
            self._wanted -= 1
            if self._wanted <= 0:
                self._done.set()
            return
        status = msg.headers.get("Status") if msg.headers else None
        if status is None or status == _CONTROL:
            return
        if status not in ("404", "408"):
            # 409 Consumer Deleted, 409 Exceeded MaxWaiting, 503 (no consumer answers), ...
            # (nats-py files the headers that follow a bare status under its description.)
            line = next(iter((msg.headers.get("Description") or "").strip().splitlines()), "")
            name, colon, _ = line.partition(":")
            description = "" if colon and " " not in name else line.strip()
            self.last_status = f"{status} {description}".strip()
        self._wanted = 0
        self._done.set()

    def _take(self, batch: int) -> list[Msg]:
        taken, self._arrived = self._arrived[:batch], self._arrived[batch:]
        return taken

    async def fetch(self, batch: int, timeout: float) -> list[Msg]:
        """Up to ``batch`` messages, waiting at most ``timeout`` seconds for the first ones.

        Returns an empty list when nothing came. Raises ``nats.errors.ConnectionClosedError``
        once the connection is closed for good.
        """
        if self._sub is None:
            raise RuntimeError("BatchFetcher.fetch before start()")
        if self.nc.is_closed:
            raise nats.errors.ConnectionClosedError
        msgs = self._take(batch)
        if len(msgs) == batch:
            return msgs
        want = batch - len(msgs)
        request: dict[str, object] = {"batch": want}
        if msgs:
            # Late deliveries are in hand: add only what is there already, without waiting.
            request["no_wait"] = True
        else:
            request["expires"] = max(int(timeout * 1e9) - 100_000, _MIN_EXPIRES_NS)
        self.last_status = None
        self._wanted = want
        self._done.clear()
        await self.nc.publish(self.next_subject, json.dumps(request).encode(), self._inbox)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout + LOST_ANSWER_GRACE_S):
                await self._done.wait()
        self._done.set()
        return msgs + self._take(want)


class PullLoop:
    """Fetches batches with a :class:`BatchFetcher` and awaits ``handler`` on each, in turn."""

    def __init__(
        self,
        fetcher: BatchFetcher,
        handler: Callable[[list[Msg]], Awaitable[None]],
        *,
        batch: int,
        timeout_s: float,
    ) -> None:
        self.fetcher = fetcher
        self.handler = handler
        self.batch = batch
        self.timeout_s = timeout_s
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"pull {self.fetcher.next_subject}")

    async def _run(self) -> None:
        warned: str | None = None
        while not self._stopping:
            try:
                msgs = await self.fetcher.fetch(self.batch, self.timeout_s)
            except nats.errors.ConnectionClosedError:
                break
            except Exception:  # noqa: BLE001 - keep fetching; what was delivered comes back
                log.exception("fetching from %s failed", self.fetcher.next_subject)
                await asyncio.sleep(self.timeout_s)
                continue
            if msgs:
                try:
                    await self.handler(msgs)
                except Exception:  # noqa: BLE001 - unacknowledged: JetStream redelivers them
                    log.exception("could not handle a batch of %d messages", len(msgs))
            status = self.fetcher.last_status
            if status is not None and not msgs:
                if status != warned:
                    log.warning("JetStream refused a pull request: %s; retrying", status)
                    warned = status
                # Do not spin on a refusal: wait as long as a quiet request would have.
                await asyncio.sleep(self.timeout_s)

    async def stop(self) -> None:
        """Stop fetching; the batch in hand is still handed over. Waits for the loop."""
        started = time.perf_counter()
        self._stopping = True
        self.fetcher.interrupt()
        if self._task is not None:
            await self._task
            self._task = None
        log.debug("pull loop stopped in %.0f ms", (time.perf_counter() - started) * 1e3)
