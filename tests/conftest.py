"""Shared fixtures: a real nats-server on a free port, settings in a temporary directory,
and the daemon running in-process."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import nats
import pytest

from core.config import Settings
from daemon.app import Daemon
from daemon.nats_server import EmbeddedNats
from handlers.publish import Outgoing


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    """A real nats-server with JetStream, on a free port, with a temporary store."""
    with EmbeddedNats(tmp_path / "nats-store") as server:
        yield server


def make_settings(data_dir: Path, nats_url: str, **sections: dict[str, Any]) -> Settings:
    base: dict[str, dict[str, Any]] = {
        "daemon": {"data_dir": data_dir, "shutdown_grace_s": 10},
        "nats": {"url": nats_url, "request_timeout_s": 5},
        "ingest": {"flush_interval_ms": 50, "retry_delay_s": 0.2},
        "storage": {"export_interval_s": 0},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return Settings(**base)


@pytest.fixture
def settings(tmp_path: Path, nats_server: EmbeddedNats) -> Settings:
    return make_settings(tmp_path / "data", nats_server.url)


async def eventually(
    check: Callable[[], Awaitable[bool] | bool], timeout: float = 20.0, interval: float = 0.05
) -> None:
    """Wait until ``check()`` is true; fail the test with a clear message otherwise."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            pytest.fail(
                f"condition not met within {timeout} s: {getattr(check, '__name__', check)}"
            )
        await asyncio.sleep(interval)


class RunningDaemon:
    """The daemon as an asyncio task, with a client connection beside it."""

    def __init__(self, daemon: Daemon, task: asyncio.Task[int], nc: nats.NATS) -> None:
        self.daemon = daemon
        self.task = task
        self.nc = nc
        self.js = nc.jetstream()

    async def status(self) -> dict[str, Any]:
        reply = await self.nc.request("kaizen.admin.status", b"{}", timeout=5)
        return json.loads(reply.data)

    async def sql(self, query: str) -> dict[str, Any]:
        reply = await self.nc.request(
            "kaizen.admin.sql", json.dumps({"sql": query}).encode(), timeout=5
        )
        return json.loads(reply.data)

    async def scalar(self, query: str) -> Any:
        result = await self.sql(query)
        assert "error" not in result, result
        return result["rows"][0][0]

    async def stop(self) -> int:
        self.daemon.request_stop("test")
        return await asyncio.wait_for(self.task, 30)


@asynccontextmanager
async def run_daemon(settings: Settings) -> AsyncIterator[RunningDaemon]:
    """Run the daemon in-process until the block ends; wait until it answers requests."""
    daemon = Daemon(settings)
    task = asyncio.create_task(daemon.run())
    nc = await nats.connect(settings.nats.url)
    running = RunningDaemon(daemon, task, nc)

    async def answers() -> bool:
        if task.done():
            task.result()  # surface a start-up error
        try:
            await running.status()
        except Exception:  # noqa: BLE001 - not ready yet
            return False
        return True

    try:
        await eventually(answers)
        yield running
    finally:
        if not task.done():
            await running.stop()
        await nc.close()


@pytest.fixture
async def running(settings: Settings) -> AsyncIterator[RunningDaemon]:
    async with run_daemon(settings) as daemon:
        yield daemon


def event(kind: str, event_id: str, query_id: str = "q1", **fields: Any) -> dict[str, Any]:
    """A valid event of ``kind`` with ``fields`` overriding the defaults."""
    base: dict[str, Any] = {
        "event_id": event_id,
        "query_id": query_id,
        "ts": "2026-11-23T10:00:00Z",
    }
    if kind == "query":
        base |= {
            "task": "parser",
            "text": "wind sites over 100kw in berkshire",
            "model_version": "v0",
            "output": {"technology": "Wind"},
            "latency_ms": 12.0,
        }
    elif kind == "feedback":
        base |= {"rating": 5}
    elif kind == "correction":
        base |= {"corrected_output": {"technology": "Wind", "capacity_min_kw": 100}}
    return base | fields


def outgoing(kind: str, payload: dict[str, Any], prefix: str = "kaizen.events") -> Outgoing:
    return Outgoing(f"{prefix}.{kind}", json.dumps(payload).encode(), payload.get("event_id"))
