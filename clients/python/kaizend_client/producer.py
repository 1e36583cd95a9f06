"""The client for production services: route each request, then publish what happened.

    nc = await nats.connect("nats://kaizend-box:4222")
    producer = await Producer.start(nc, service="fit-search")
    arm, version = producer.route("parser", unit_id=user_id)
    ...  # answer the request with `version`
    query_id = await producer.query("parser", text, unit_id=user_id, output=parsed,
                                    latency_ms=12.5, arm=arm, version=version)
    await producer.feedback(query_id, rating=5)
    await producer.correction(query_id, {"technology": "Wind"})
    await producer.stop()

The producer watches the routing bucket, so a new experiment or a promotion reaches it within
moments, without a restart. Until the daemon has written a task's entry, the task routes
everything to ``"champion"`` with version ``"unknown"``.

Every event is checked against its model before it is published: one that the daemon would
reject raises `InvalidEvent` here, at the call, instead of landing in ``rejected_events``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from nats.aio.client import Client as NATS
from nats.js.kv import KeyValue
from pydantic import ValidationError

from kaizend_client.errors import InvalidEvent
from kaizend_client.events import EVENT_TYPES, MSG_ID_HEADER, PATTERN_REASONS, SUBJECT_PREFIX
from kaizend_client.routing import BUCKET, Arm, Routing, open_routing

log = logging.getLogger(__name__)


def _refusal(err: ValidationError) -> InvalidEvent:
    problem = err.errors(include_url=False)[0]
    where = ".".join(str(p) for p in problem["loc"]) or "event"
    message = problem["msg"]
    if problem["type"] == "string_pattern_mismatch":
        message = PATTERN_REASONS.get(problem["ctx"]["pattern"], message)
    return InvalidEvent(where, message)


def encode_event(kind: str, event: dict[str, Any]) -> bytes:
    """``event`` (of ``kind``: query, feedback, correction) as the bytes to publish, checked
    against its model; raises `InvalidEvent` for one the daemon would reject."""
    try:
        EVENT_TYPES[kind].model_validate(event)
    except KeyError:
        raise InvalidEvent("kind", f"unknown kind {kind!r}: one of {sorted(EVENT_TYPES)}") from None
    except ValidationError as err:
        raise _refusal(err) from err
    try:
        return json.dumps(event, default=str, allow_nan=False).encode()
    except ValueError as err:  # NaN or an infinity inside a JSON field
        raise InvalidEvent(kind, f"JSON numbers must be finite ({err})") from err


class Producer:
    """Routes requests by the bucket and publishes query, feedback and correction events."""

    def __init__(
        self, nc: NATS, *, subject_prefix: str = SUBJECT_PREFIX, service: str | None
    ) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.subject_prefix = subject_prefix
        self.service = service
        self.routes: dict[str, Routing] = {}
        self._watching: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    @classmethod
    async def start(
        cls,
        nc: NATS,
        *,
        subject_prefix: str = SUBJECT_PREFIX,
        service: str | None = None,
        bucket: str = BUCKET,
    ) -> Producer:
        """Open the routing bucket (the daemon's ``routing.bucket``) and start watching it;
        wait for the current entries."""
        producer = cls(nc, subject_prefix=subject_prefix, service=service)
        kv = await open_routing(producer.js, bucket)
        producer._watching = asyncio.create_task(producer._watch(kv))
        await asyncio.wait_for(producer._ready.wait(), 10.0)
        return producer

    async def _watch(self, kv: KeyValue) -> None:
        watcher = await kv.watchall()
        try:
            async for entry in watcher:
                if entry is None:  # the initial values have all been delivered
                    self._ready.set()
                    continue
                if entry.operation in ("DEL", "PURGE") or not entry.value:
                    self.routes.pop(entry.key, None)
                    continue
                try:
                    self.routes[entry.key] = Routing.model_validate_json(entry.value)
                except ValidationError as err:
                    log.error("routing entry %s ignored: %s", entry.key, err)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()

    async def stop(self) -> None:
        if self._watching is not None:
            self._watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watching

    def route(self, task: str, unit_id: str) -> tuple[Arm, str]:
        """The arm and model version that should answer ``unit_id`` for ``task``."""
        routing = self.routes.get(task)
        if routing is None:
            return "champion", "unknown"
        return routing.assign(unit_id)

    async def _publish(self, kind: str, event: dict[str, Any]) -> str:
        event = {"event_id": str(uuid.uuid4()), "ts": datetime.now(UTC).isoformat(), **event}
        await self.js.publish(
            f"{self.subject_prefix}.{kind}",
            encode_event(kind, event),
            headers={MSG_ID_HEADER: event["event_id"]},
        )
        return event["event_id"]

    async def query(
        self,
        task: str,
        text: str,
        *,
        unit_id: str,
        output: Any,
        latency_ms: float,
        arm: Arm | Literal["shadow"] | None = None,
        version: str | None = None,
        error: str | None = None,
        query_id: str | None = None,
        fallback_used: bool | None = None,
        extra: dict[str, Any] | None = None,
        service: str | None = None,
    ) -> str:
        """Publish a query event (routing it now unless ``arm`` and ``version`` are given);
        returns its query id for the feedback and corrections that follow. ``arm`` may also
        be ``"shadow"``; ``extra`` fields are stored in the event's ``extra`` column;
        ``service`` (default: the producer's) names who asked."""
        if arm is None or version is None:
            arm, version = self.route(task, unit_id)
        query_id = query_id or str(uuid.uuid4())
        await self._publish("query", {
            **(extra or {}), "query_id": query_id, "task": task, "text": text,
            "model_version": version, "arm": arm, "unit_id": unit_id, "output": output,
            "latency_ms": latency_ms, "error": error, "service": service or self.service,
            "fallback_used": fallback_used,
        })  # fmt: skip
        return query_id

    async def feedback(
        self,
        query_id: str,
        *,
        rating: int | None = None,
        thumbs: str | None = None,
        doc_id: str | None = None,
        comment: str | None = None,
    ) -> str:
        """Publish a user's judgement of a query's answer (or of one result, ``doc_id``)."""
        return await self._publish("feedback", {
            "query_id": query_id, "rating": rating, "thumbs": thumbs, "doc_id": doc_id,
            "comment": comment,
        })  # fmt: skip

    async def correction(
        self, query_id: str, corrected_output: Any, author: str | None = None
    ) -> str:
        """Publish the right answer for a query."""
        return await self._publish("correction", {
            "query_id": query_id, "corrected_output": corrected_output, "author": author,
        })  # fmt: skip
