"""Asking the inference gateway: NATS request-reply on ``kaizen.infer.<task>``.

The gateway (inside the daemon, or ``kaizend gateway`` on other boxes) routes the request by
the routing bucket, answers with that arm's version and records the query event itself; only
feedback and corrections are left to the service:

    reply = await infer(nc, "parser", text, unit_id=user_id)
    await producer.feedback(reply["query_id"], rating=5)

Errors come back as NATS micro-service errors: the headers ``Nats-Service-Error-Code`` (400 a
bad request, 503 not ready: no routing entry yet or the version cannot be loaded yet, 500 the
version failed on the query) and ``Nats-Service-Error`` (the message); after routing, the body
is an :class:`InferError` naming the query, arm and version.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from nats.aio.client import Client as NATS
from pydantic import BaseModel, ConfigDict, Field

from kaizend_client.errors import KaizendError
from kaizend_client.events import Identifier, Label, Text

SUBJECT_PREFIX = "kaizen.infer"
"""Requests for a task go to ``<prefix>.<task>`` (the daemon's ``gateway.subject_prefix``)."""
ERROR_HEADER = "Nats-Service-Error"
ERROR_CODE_HEADER = "Nats-Service-Error-Code"
ERROR_CODES: dict[str, str] = {
    "400": "bad request: the body is not an InferRequest",
    "503": "not ready: the task has no routing entry yet, or its version cannot be loaded "
    "(yet): try again shortly",
    "500": "the version failed on the query (recorded as the arm's query event with its error)",
}
"""The gateway's error codes (``Nats-Service-Error-Code``) and what each means."""


class InferRequest(BaseModel):
    """A question for the gateway, sent on ``kaizen.infer.<task>``. Its bounds are those of
    the query event the gateway records."""

    model_config = ConfigDict(extra="ignore")

    text: Text = Field(min_length=1, description="The query.")
    unit_id: Label | None = Field(
        None, description="Sticky assignment key (a user or session); default: the query id."
    )
    query_id: Identifier | None = Field(None, description="Default: a new uuid.")
    service: Label | None = Field(
        None, description="The asking service, recorded on the query event."
    )


class _Routed(BaseModel):
    """What every reply after routing names."""

    query_id: str = Field(description="The query's id, on its recorded query event too.")
    task: str
    arm: Literal["champion", "challenger"] = Field(description="The arm the routing assigned.")
    version: str = Field(description="The version that answered (or was to).")


class InferError(_Routed):
    """The body of an error reply after routing (code 500, or 503 while the version loads);
    the headers carry the code and the message."""


class InferReply(_Routed):
    """The gateway's answer; feedback and corrections refer to its ``query_id``."""

    output: Any = Field(description="The version's answer (a parse, ranked documents...).")
    fallback_used: bool = Field(description="A fallback (the parser's rules) answered.")
    latency_ms: float = Field(ge=0, description="Time to answer inside the gateway.")


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
    subject_prefix: str = SUBJECT_PREFIX,
    service: str | None = None,
) -> dict[str, Any]:
    """Ask the gateway for ``task``'s answer to ``text``: an :class:`InferReply` as a dict
    (``{query_id, task, arm, version, output, fallback_used, latency_ms}``); raises
    `InferenceFailed` for an error reply. ``service`` names the asking service on the query
    event the gateway records."""
    request = {"text": text, "unit_id": unit_id, "query_id": query_id, "service": service}
    msg = await nc.request(f"{subject_prefix}.{task}", json.dumps(request).encode(), timeout)
    headers = msg.headers or {}
    if ERROR_CODE_HEADER in headers:
        body = json.loads(msg.data) if msg.data else None
        raise InferenceFailed(headers[ERROR_CODE_HEADER], headers.get(ERROR_HEADER, ""), body)
    return json.loads(msg.data)
