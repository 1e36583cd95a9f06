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

A service that would rather not run a model itself asks the inference gateway, which routes,
answers and records the query event; only feedback and corrections are left to send:

    reply = await infer(nc, "parser", text, unit_id=user_id)
    await producer.feedback(reply["query_id"], rating=5)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from kaizend.core.errors import KaizendError
from kaizend.handlers.routing import BUCKET, Arm, Routing, routing_bucket
from nats.aio.client import Client as NATS
from nats.js.kv import KeyValue
from pydantic import ValidationError

log = logging.getLogger(__name__)

ERROR_HEADER = "Nats-Service-Error"
ERROR_CODE_HEADER = "Nats-Service-Error-Code"


class InferenceFailed(KaizendError, RuntimeError):
    """The gateway answered with an error: ``code`` 400 (bad request), 503 (not ready: no
    routing entry, or the version cannot be loaded) or 500 (the version failed)."""

    def __init__(self, code: str, message: str, reply: dict[str, Any] | None) -> None:
        super().__init__(f"inference gateway error {code}: {message}")
        self.code = code
        self.reply = reply or {}


async def infer(
    nc: NATS,
    task: str,
    text: str,
    *,
    unit_id: str | None = None,
    query_id: str | None = None,
    timeout: float = 10.0,
    subject_prefix: str = "kaizen.infer",
    service: str | None = None,
) -> dict[str, Any]:
    """Ask the gateway for ``task``'s answer to ``text``: ``{query_id, task, arm, version,
    output, fallback_used, latency_ms}``; raises `InferenceFailed` for an error reply.
    ``service`` names the asking service on the query event the gateway records."""
    request = {"text": text, "unit_id": unit_id, "query_id": query_id, "service": service}
    msg = await nc.request(f"{subject_prefix}.{task}", json.dumps(request).encode(), timeout)
    headers = msg.headers or {}
    if ERROR_CODE_HEADER in headers:
        body = json.loads(msg.data) if msg.data else None
        raise InferenceFailed(headers[ERROR_CODE_HEADER], headers.get(ERROR_HEADER, ""), body)
    return json.loads(msg.data)


class Producer:
    """Routes requests by the bucket and publishes query, feedback and correction events."""

    def __init__(self, nc: NATS, *, subject_prefix: str = "kaizen.events", service: str | None):
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
        subject_prefix: str = "kaizen.events",
        service: str | None = None,
        bucket: str = BUCKET,
    ) -> Producer:
        """Open the routing bucket (the daemon's ``routing.bucket``) and start watching it;
        wait for the current entries."""
        producer = cls(nc, subject_prefix=subject_prefix, service=service)
        kv = await routing_bucket(producer.js, bucket)
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
            json.dumps(event, default=str).encode(),
            headers={"Nats-Msg-Id": event["event_id"]},
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
