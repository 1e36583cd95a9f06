"""A reference production service: FIT search, integrated with kaizend.

What a team's own service does to take part in the loop, in one place:

1. a user's question goes to the inference gateway (``kaizen.infer.parser``), which picks
   the arm from the routing bucket, answers with that arm's version and records the query
   event itself; optionally the retriever ranks sites for the same question;
2. the parse's filters run against the site register (DuckDB) and the user sees the sites;
3. the user's rating and, for a wrong parse, the right one go back as feedback and
   correction events (the producer client), referring to the gateway's ``query_id``.

Nothing here is kaizend-internal: a service in another code base would copy these lines
(or use its own model and `Producer.query` instead of the gateway).

    service = await FitSearch.start(nc)
    answer = await service.search("any wind farms nr taunton over 1mw?", user="u-17")
    await service.rate(answer, rating=5)
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import duckdb
from kaizend.models.fit.schema import ParsedQuery, validate_output
from kaizend.models.fit.sites import load_sites, query_sites
from kaizend_client import Producer, infer
from nats.aio.client import Client as NATS

SERVICE = "fit-search"


@dataclass(frozen=True)
class Answer:
    """What the service showed a user."""

    query_id: str
    text: str
    parse: dict[str, Any]
    arm: str
    version: str
    fallback_used: bool
    rows: list[dict[str, Any]]
    """The matching sites (or the aggregate rows) the parse's filters found."""
    latency_ms: float
    results: list[str] = field(default_factory=list)
    """Site ids the retriever ranked, when asked (`search(..., retrieve=True)`)."""


class FitSearch:
    """The service: parse through the gateway, filter the register, report what users say."""

    def __init__(self, nc: NATS, producer: Producer, register: duckdb.DuckDBPyConnection):
        self.nc = nc
        self.producer = producer
        self.register = register
        self._register_lock = threading.Lock()

    @classmethod
    async def start(
        cls, nc: NATS, *, register: duckdb.DuckDBPyConnection | None = None
    ) -> FitSearch:
        """Connect the producer client; load the site register (40,194 sites) unless given."""
        if register is None:
            register = duckdb.connect()
            await asyncio.to_thread(load_sites, register)
        return cls(nc, await Producer.start(nc, service=SERVICE), register)

    async def stop(self) -> None:
        await self.producer.stop()

    def _sites(self, parsed: ParsedQuery, limit: int) -> list[dict[str, Any]]:
        with self._register_lock:  # one DuckDB connection, used from worker threads
            return query_sites(self.register, parsed, limit=limit)

    async def search(
        self, text: str, *, user: str, limit: int = 10, retrieve: bool = False
    ) -> Answer:
        """Answer a user's question; raises `kaizend_client.InferenceFailed` when the
        gateway could not (the service would show an error page)."""
        started = time.perf_counter()
        reply = await infer(self.nc, "parser", text, unit_id=user, timeout=30, service=SERVICE)
        parsed = validate_output(reply["output"])
        rows = await asyncio.to_thread(self._sites, parsed, limit)
        results: list[str] = []
        if retrieve:
            ranked = await infer(
                self.nc, "retriever", text, unit_id=user, timeout=30, service=SERVICE
            )
            results = [hit["doc_id"] for hit in ranked["output"]["results"]]
        return Answer(
            query_id=reply["query_id"], text=text, parse=reply["output"], arm=reply["arm"],
            version=reply["version"], fallback_used=reply["fallback_used"], rows=rows,
            latency_ms=(time.perf_counter() - started) * 1e3, results=results,
        )  # fmt: skip

    async def rate(
        self, answer: Answer, *, rating: int | None = None, thumbs: str | None = None
    ) -> str:
        """The user's judgement of the answer: stars (1-5) or thumbs."""
        return await self.producer.feedback(answer.query_id, rating=rating, thumbs=thumbs)

    async def correct(self, answer: Answer, parse: dict[str, Any], author: str) -> str:
        """The user (or a reviewer) says what the question meant."""
        return await self.producer.correction(answer.query_id, parse, author=author)
