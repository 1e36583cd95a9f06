"""Ingestion: JetStream pull batches -> validated rows -> one DuckDB commit -> acks.

Delivery is at-least-once: a message is acknowledged only after the transaction holding its
row has committed, and the store's primary keys make a redelivered row a no-op, so the stored
effect is exactly-once. A message that can never become an event (bad JSON, wrong types,
out-of-range values, an unknown subject, an oversized payload) is stored in
``rejected_events`` with its bytes and the reason, in the same transaction, and then
terminated so JetStream does not redeliver it. An event that passed validation but whose
values the database still refuses (a conversion, a constraint) is isolated: the store splits
the batch until it is alone, its neighbours commit, and it goes to ``rejected_events`` with
the database's error. Only a storage fault (I/O, a full disk, a closed database, a missing
table) fails a batch: then the whole batch is negatively acknowledged with a growing delay, up
to the consumer's ``max_deliver``.

Batches come from the durable pull consumer a request at a time (`handlers.pull`).
Committing runs in a worker thread and overlaps with fetching the next batch: the pull loop
hands a validated batch to a single writer task, which commits, then acks. DuckDB's cost per
commit is fixed (a few ms), so under load the writer commits at most once per flush interval,
all the batches that arrived since in one transaction (group commit); a quiet stream still
gets each batch committed as soon as it is fetched.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from faststream.nats import (
    JStream,
    NatsBroker,
    RetentionPolicy,
    StorageType,
)
from kaizend.core import metrics
from kaizend.core.config import IngestSettings, StreamSettings
from kaizend.core.errors import InvalidEvent, StorageError
from kaizend.handlers.events import EVENT_TYPES, PATTERN_REASONS, event_row
from kaizend.handlers.pull import BatchFetcher, PullLoop
from kaizend.storage.events import EVENT_TABLES, REJECTED_TABLE, EventStore
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy as NatsAckPolicy
from nats.js.api import ConsumerConfig, DeliverPolicy
from pydantic import ValidationError
from pydantic_core import PydanticSerializationError, to_json

log = logging.getLogger(__name__)

_MAX_NAK_DELAY_S = 300.0
QUEUED_BATCHES = 4
"""Validated batches waiting for the writer, at most; the subscriber waits beyond that."""
MAX_REASON_CHARS = 2000
"""Longest stored reason of a rejection; a longer one is cut, marked with an ellipsis."""
_KIND_OF_TABLE = {table: kind for kind, table in EVENT_TABLES.items()}


def describe_validation_error(err: ValidationError) -> str:
    """A one-line, readable reason: which field, what was wrong, what was given."""
    parts = []
    for e in err.errors(include_url=False):
        where = ".".join(str(p) for p in e["loc"]) or "payload"
        if e["type"] == "json_invalid":
            error = e["ctx"].get("error", e["msg"])
            parts.append(f"malformed JSON: {error}{_json_hint(error)}")
        elif e["type"] == "missing":
            parts.append(f"missing field '{where}'")
        else:
            given = e.get("input")
            shown = repr(given)[:80] if not isinstance(given, dict) else "an object"
            msg = e["msg"]
            if e["type"] == "string_pattern_mismatch":
                msg = PATTERN_REASONS.get(e["ctx"]["pattern"], msg)
            parts.append(f"field '{where}': {msg} (got {shown})")
    return "; ".join(parts)


def _json_hint(error: str) -> str:
    # The parser's words for two hostile inputs do not name them.
    if "hex escape" in error or "surrogate" in error:
        return " (an escape of a lone surrogate, such as \\ud800, is not text)"
    if "unicode code point" in error:
        return " (the payload is not valid UTF-8)"
    return ""


def _escaped(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode()


def _bounded(reason: str) -> str:
    return reason if len(reason) <= MAX_REASON_CHARS else reason[: MAX_REASON_CHARS - 1] + "…"


def rejected_row(
    msg: Msg, reason: str, now: datetime, max_payload_bytes: int, safe: bool = False
) -> dict[str, Any]:
    """The row of ``rejected_events`` keeping ``msg``'s bytes and why it was not stored.

    ``safe`` builds one that cannot fail to store, for a message whose first rejected row the
    database refused: what is not text in subject and reason escaped, no headers.
    """
    subject, headers = msg.subject, None
    if safe:
        subject, reason = _escaped(subject), _escaped(reason)
    elif msg.headers:
        try:
            headers = to_json(msg.headers).decode()
        except PydanticSerializationError:  # not text (a lone surrogate)
            headers = to_json({_escaped(k): _escaped(str(v)) for k, v in msg.headers.items()})
            headers = headers.decode()
    return {
        # Parsing the ack subject costs as much as validating an event, so only rejected
        # messages pay for it: their stream sequence is their key.
        "stream_seq": msg.metadata.sequence.stream,
        "subject": subject,
        "reason": _bounded(reason),
        "raw": bytes(msg.data[:max_payload_bytes]),
        "raw_size": len(msg.data),
        "headers": headers,
        "received_at": now,
    }


@dataclass
class Classified:
    """A fetched batch split into storable rows and the messages to ack or terminate.

    ``msgs[table][i]`` is the message of ``rows[table][i]``: those of event tables are acked
    once committed, those of ``rejected_events`` terminated.
    """

    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    msgs: dict[str, list[Msg]] = field(default_factory=dict)
    kinds: Counter[str] = field(default_factory=Counter)

    @property
    def accepted(self) -> list[Msg]:
        return [m for table, msgs in self.msgs.items() if table != REJECTED_TABLE for m in msgs]

    @property
    def rejected(self) -> list[Msg]:
        return self.msgs.get(REJECTED_TABLE, [])

    @property
    def size(self) -> int:
        """Messages in the batch."""
        return sum(len(msgs) for msgs in self.msgs.values())

    def absorb(self, other: Classified) -> None:
        """Append ``other``'s rows and messages, to commit both in one transaction."""
        for table, rows in other.rows.items():
            self.rows.setdefault(table, []).extend(rows)
        for table, msgs in other.msgs.items():
            self.msgs.setdefault(table, []).extend(msgs)
        self.kinds.update(other.kinds)


def classify(
    msgs: list[Msg], subject_prefix: str, max_payload_bytes: int, now: datetime | None = None
) -> Classified:
    """Validate each message and turn it into a row of its event table or of rejected_events."""
    now = now or datetime.now(UTC)
    tables = (*EVENT_TABLES.values(), REJECTED_TABLE)
    out = Classified(rows={t: [] for t in tables}, msgs={t: [] for t in tables})
    dot_prefix = subject_prefix + "."
    for msg in msgs:
        data = msg.data
        kind = msg.subject[len(dot_prefix) :] if msg.subject.startswith(dot_prefix) else None
        event_type = EVENT_TYPES.get(kind) if kind else None
        reason: str | None = None
        if event_type is None:
            reason = f"unknown subject {msg.subject!r}: expected {dot_prefix}" + "|".join(
                EVENT_TYPES
            )
        elif len(data) > max_payload_bytes:
            reason = (
                f"oversized payload: {len(data)} bytes > "
                f"ingest.max_payload_bytes={max_payload_bytes}"
            )
        else:
            try:
                row = event_row(event_type.model_validate_json(data))
            except ValidationError as err:
                reason = f"invalid {kind} event: {describe_validation_error(err)}"
            except InvalidEvent as err:
                reason = f"invalid {kind} event: {err}"
            else:
                row["ingested_at"] = now
                table = EVENT_TABLES[kind]
                out.rows[table].append(row)
                out.msgs[table].append(msg)
                out.kinds[kind] += 1
                continue
        out.rows[REJECTED_TABLE].append(rejected_row(msg, reason, now, max_payload_bytes))
        out.msgs[REJECTED_TABLE].append(msg)
        out.kinds["rejected"] += 1
    return out


@dataclass
class IngestStats:
    """What the health check and `kaizend status` report about ingestion."""

    committed: Counter[str] = field(default_factory=Counter)
    batches: int = 0
    storage_failures: int = 0
    abandoned: list[int] = field(default_factory=list)  # stream sequences past max_deliver
    last_commit_at: float | None = None  # time.time()
    last_commit_ms: float = 0.0
    started_at: float = field(default_factory=time.time)


class Ingestor:
    """Validates fetched batches and commits them through a single writer task."""

    def __init__(self, store: EventStore, settings: IngestSettings, subject_prefix: str) -> None:
        self.store = store
        self.settings = settings
        self.subject_prefix = subject_prefix
        self.stats = IngestStats()
        self._queue: asyncio.Queue[Classified | None] = asyncio.Queue(maxsize=QUEUED_BATCHES)
        self._writer: asyncio.Task[None] | None = None
        self.on_commit: Callable[[Counter[str]], None] | None = None
        """Called with the events committed per kind after every commit (must be quick)."""

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_loop(), name="ingest-writer")

    @property
    def running(self) -> bool:
        return self._writer is not None and not self._writer.done()

    async def handle(self, msgs: list[Msg]) -> None:
        """The subscriber's handler: validate, then queue for the writer (waits if it is busy)."""
        batch = classify(msgs, self.subject_prefix, self.settings.max_payload_bytes)
        await self._queue.put(batch)

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        spacing = self.settings.flush_interval_ms / 1000
        group_limit = (QUEUED_BATCHES + 1) * self.settings.batch_size
        last_commit = -spacing
        stopping = False
        while not stopping:
            batch = await self._queue.get()
            if batch is None:
                break
            # Group commit: a DuckDB commit costs a few ms whatever its size, so a commit
            # follows the previous one by at least a flush interval, and the batches that
            # arrive meanwhile join it (up to the writer's share of max_ack_pending). A quiet
            # stream, a batch per interval or less, still gets each one committed at once.
            deadline = last_commit + spacing
            while batch.size < group_limit:
                try:
                    more = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    try:
                        more = await asyncio.wait_for(self._queue.get(), left)
                    except TimeoutError:
                        break
                if more is None:
                    stopping = True
                    break
                batch.absorb(more)
            last_commit = loop.time()
            try:
                await self._commit(batch)
            except Exception:
                # Never let the writer die: the batch stays unacknowledged and is redelivered.
                log.exception("could not settle a batch of %d messages", batch.size)

    def _store(self, batch: Classified) -> None:
        """Commit the batch (in the writer's thread); move each event the database refuses
        into ``rejected_events``, with the database's error. Raises :class:`StorageError`."""
        refused = self.store.write_isolating(batch.rows)
        if not refused:
            return
        now = datetime.now(UTC)
        max_bytes = self.settings.max_payload_bytes
        kept: dict[tuple[str, int], dict[str, Any]] = {}  # (table, index) -> rejected row
        for r in refused:
            msg = batch.msgs[r.table][r.index]
            if r.table == REJECTED_TABLE:  # its rejected row itself: keep a plainer one
                reason = f"{batch.rows[r.table][r.index]['reason']} (kept plainly: {r.error})"
                kept[r.table, r.index] = rejected_row(msg, reason, now, max_bytes, safe=True)
                continue
            log.warning(
                "event refused by the database, kept in rejected_events: stream sequence %d "
                "on %s: %s",
                msg.metadata.sequence.stream,
                msg.subject,
                r.error,
            )
            reason = f"{_KIND_OF_TABLE[r.table]} event refused by the database: {r.error}"
            kept[r.table, r.index] = rejected_row(msg, reason, now, max_bytes)
        keys = list(kept)
        for again in self.store.write_isolating({REJECTED_TABLE: list(kept.values())}):
            key = keys[again.index]
            msg = batch.msgs[key[0]][key[1]]
            kept[key] = rejected_row(msg, kept[key]["reason"], now, max_bytes, safe=True)
            if self.store.write_isolating({REJECTED_TABLE: [kept[key]]}):
                raise StorageError(f"could not keep a refused event in rejected_events: {again}")
        # The batch as stored: refused events move to the messages to terminate.
        gone: dict[str, set[int]] = {}
        for (table, index), row in kept.items():
            if table == REJECTED_TABLE:
                batch.rows[table][index] = row
                continue
            gone.setdefault(table, set()).add(index)
            batch.rows[REJECTED_TABLE].append(row)
            batch.msgs[REJECTED_TABLE].append(batch.msgs[table][index])
            batch.kinds[_KIND_OF_TABLE[table]] -= 1
            batch.kinds["rejected"] += 1
        for table, indexes in gone.items():
            keep = [i for i in range(len(batch.msgs[table])) if i not in indexes]
            batch.msgs[table] = [batch.msgs[table][i] for i in keep]
            batch.rows[table] = [batch.rows[table][i] for i in keep]

    async def _commit(self, batch: Classified) -> None:
        started = time.perf_counter()
        try:
            await asyncio.to_thread(self._store, batch)
        except StorageError as err:
            self.stats.storage_failures += 1
            metrics.STORAGE_FAILURES.inc()
            msgs = batch.accepted + batch.rejected
            delivered = max(m.metadata.num_delivered for m in msgs)
            delay = min(self.settings.retry_delay_s * 2 ** (delivered - 1), _MAX_NAK_DELAY_S)
            log.error(
                "STORAGE FAILURE: %s; %d messages will be redelivered in %.1f s "
                "(delivery %d of %d)",
                err,
                len(msgs),
                delay,
                delivered,
                self.settings.max_deliver,
            )
            for msg in msgs:
                await msg.nak(delay=delay)
            return
        metrics.BATCH_COMMIT_SECONDS.observe(time.perf_counter() - started)
        for msg in batch.accepted:
            await msg.ack()
        for msg in batch.rejected:
            await msg.term()
        elapsed_ms = (time.perf_counter() - started) * 1e3
        self._count(batch)
        self.stats.committed.update(batch.kinds)
        self.stats.batches += 1
        self.stats.last_commit_at = time.time()
        self.stats.last_commit_ms = elapsed_ms
        if batch.rejected:
            log.warning("rejected %d malformed events (see rejected_events)", len(batch.rejected))
        log.debug("committed %s in %.1f ms", dict(batch.kinds), elapsed_ms)
        if self.on_commit is not None:
            self.on_commit(batch.kinds)

    def _count(self, batch: Classified) -> None:
        """Events ingested per kind, and rejected ones per the kind their subject names."""
        for kind, n in batch.kinds.items():
            if kind != "rejected":
                metrics.EVENTS_INGESTED.labels(kind).inc(n)
        if batch.rejected:
            dot_prefix = self.subject_prefix + "."
            rejected = Counter(
                kind if (kind := msg.subject.removeprefix(dot_prefix)) in EVENT_TYPES
                else "unknown"
                for msg in batch.rejected
            )  # fmt: skip
            for kind, n in rejected.items():
                metrics.EVENTS_REJECTED.labels(kind).inc(n)

    async def drain(self) -> None:
        """Commit and ack what is queued, then stop the writer. Call after fetching stopped."""
        if self._writer is None:
            return
        await self._queue.put(None)
        await self._writer
        self._writer = None


def events_stream(settings: StreamSettings) -> JStream:
    """The JetStream stream capturing every subject under the events prefix."""
    return JStream(
        name=settings.name,
        subjects=[f"{settings.subject_prefix}.>"],
        storage=StorageType.FILE if settings.storage == "file" else StorageType.MEMORY,
        retention=RetentionPolicy.LIMITS,
        max_age=settings.max_age_days * 86400 or None,
        max_bytes=settings.max_bytes,
        max_msgs=settings.max_msgs,
        duplicate_window=settings.duplicate_window_s,
        num_replicas=settings.replicas,
    )


def consumer_config(stream: StreamSettings, settings: IngestSettings) -> ConsumerConfig:
    """The durable pull consumer's settings, as configured."""
    return ConsumerConfig(
        durable_name=settings.consumer,
        filter_subject=f"{stream.subject_prefix}.>",
        ack_policy=NatsAckPolicy.EXPLICIT,
        ack_wait=settings.ack_wait_s,
        max_deliver=settings.max_deliver,
        # The writer's queue, the group it is committing, and the batch being fetched.
        max_ack_pending=(2 * QUEUED_BATCHES + 2) * settings.batch_size,
        deliver_policy=DeliverPolicy.ALL,
    )


async def start_consuming(
    nc: NATS, stream: StreamSettings, settings: IngestSettings, ingestor: Ingestor
) -> PullLoop:
    """Create the durable consumer, or bring its settings up to date, and start fetching.

    Binding to an existing durable consumer would keep its old settings, so a changed
    ``ack_wait`` or ``max_deliver`` would never take effect: the server updates the editable
    fields in place (create-or-update). Returns the running loop; stop it before
    :meth:`Ingestor.drain`.
    """
    await nc.jetstream().add_consumer(stream.name, config=consumer_config(stream, settings))
    fetcher = BatchFetcher(nc, stream.name, settings.consumer)
    await fetcher.start()
    loop = PullLoop(
        fetcher,
        ingestor.handle,
        batch=settings.batch_size,
        timeout_s=settings.flush_interval_ms / 1000,
    )
    loop.start()
    return loop


def watch_abandoned(
    broker: NatsBroker, stream: StreamSettings, settings: IngestSettings, ingestor: Ingestor
) -> None:
    """Log every event JetStream stops redelivering after ``max_deliver`` failed commits.

    Such an event is still in the stream (until its retention ends) but no longer offered to
    kaizend; the advisory names its stream sequence so an operator can replay it.
    """
    subject = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream.name}.{settings.consumer}"

    async def abandoned(advisory: dict[str, Any]) -> None:
        seq = int(advisory.get("stream_seq", -1))
        ingestor.stats.abandoned.append(seq)
        log.critical(
            "EVENT NOT STORED: stream %s sequence %d failed %s deliveries and will not be "
            "redelivered; fix storage, then replay it from the stream",
            stream.name,
            seq,
            advisory.get("deliveries"),
        )

    broker.subscriber(subject)(abandoned)
