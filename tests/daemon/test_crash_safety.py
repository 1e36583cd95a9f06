"""Crash safety: every published event is stored exactly once across a `kill -9` of the
daemon and across a restart of nats-server, both in the middle of ingesting 50,000 events."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import nats
import pytest
from kaizend.daemon.nats_server import EmbeddedNats
from kaizend.handlers.publish import publish_events

from tests.conftest import event, eventually, make_settings, outgoing, run_daemon

ROOT = Path(__file__).resolve().parents[2]
N = 50_000
KINDS = (
    "query",
    "query",
    "query",
    "query",
    "query",
    "query",
    "feedback",
    "feedback",
    "feedback",
    "correction",
)


def events(n: int) -> list:
    return [outgoing(KINDS[i % 10], event(KINDS[i % 10], f"e{i}", f"q{i // 10}")) for i in range(n)]


def start_daemon(data_dir: Path, url: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "KAIZEND_NATS__URL": url,
        "KAIZEND_DAEMON__DATA_DIR": str(data_dir),
        "KAIZEND_DAEMON__LOG_LEVEL": "WARNING",
        "KAIZEND_INGEST__ACK_WAIT_S": "2",
        "KAIZEND_STORAGE__EXPORT_INTERVAL_S": "0",
        "KAIZEND_METRICS__PORT": "0",
    }
    return subprocess.Popen([sys.executable, "-m", "kaizend.daemon", "run"], cwd=ROOT, env=env)


async def stored_count(nc: nats.NATS) -> int | None:
    """Events stored, asked of the running daemon; None while it does not answer."""
    try:
        reply = await nc.request("kaizen.admin.status", b"{}", timeout=2)
    except Exception:  # noqa: BLE001 - down or restarting
        return None
    counts = json.loads(reply.data)["counts"]
    return counts["query_events"] + counts["feedback_events"] + counts["correction_events"]


async def stored_at_least(nc: nats.NATS, count: int) -> bool:
    stored = await stored_count(nc)
    return stored is not None and stored >= count


async def answers(nc: nats.NATS) -> bool:
    return await stored_count(nc) is not None


async def drain_and_stop(daemon: subprocess.Popen, nc: nats.NATS) -> None:
    """Wait until the daemon has stored all N events, then stop it gracefully."""

    await eventually(lambda: stored_at_least(nc, N), timeout=120)
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(30) == 0


def assert_exactly_once(db_path: Path) -> None:
    with duckdb.connect(str(db_path), read_only=True) as db:
        ids = db.execute(
            "SELECT event_id FROM query_events UNION ALL SELECT event_id FROM feedback_events "
            "UNION ALL SELECT event_id FROM correction_events"
        ).fetchall()
        rejected = db.execute("SELECT count(*) FROM rejected_events").fetchone()[0]
    assert len(ids) == N
    assert {i for (i,) in ids} == {f"e{i}" for i in range(N)}
    assert rejected == 0


async def test_kill_9_mid_ingest_then_restart_stores_every_event_once(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    data_dir = tmp_path / "data"
    nc = await nats.connect(nats_server.url)
    daemon = start_daemon(data_dir, nats_server.url)
    try:
        await eventually(lambda: answers(nc), timeout=30)
        publisher = asyncio.create_task(publish_events(nc.jetstream(), events(N)))

        await eventually(lambda: stored_at_least(nc, 5_000), timeout=60)
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(10)
        await publisher
        with duckdb.connect(str(data_dir / "kaizend.duckdb"), read_only=True) as db:
            at_kill = db.execute("SELECT count(*) FROM query_events").fetchone()[0]
        assert 0 < at_kill < N * 0.6  # killed in the middle, not after the end

        daemon = start_daemon(data_dir, nats_server.url)
        await drain_and_stop(daemon, nc)
    finally:
        if daemon.poll() is None:
            daemon.kill()
        await nc.close()
    assert_exactly_once(data_dir / "kaizend.duckdb")


async def test_nats_server_restart_mid_stream_the_daemon_reconnects_and_catches_up(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    settings = make_settings(tmp_path / "data", nats_server.url, ingest={"ack_wait_s": 2.0})
    async with run_daemon(settings) as daemon:
        publisher_nc = await nats.connect(
            nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.5
        )
        publisher = asyncio.create_task(publish_events(publisher_nc.jetstream(), events(N)))

        await eventually(lambda: stored_at_least(daemon.nc, 5_000), timeout=60)
        await asyncio.to_thread(nats_server.stop)  # same port and store come back below
        await asyncio.sleep(1.0)
        await asyncio.to_thread(nats_server.start)
        await publisher

        await eventually(lambda: stored_at_least(daemon.nc, N), timeout=120)
        await publisher_nc.close()
        assert (await daemon.status())["healthy"]
    assert_exactly_once(settings.db_path)


@pytest.mark.slow
async def test_kill_9_repeatedly_never_loses_or_duplicates(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    """Soak variant: three kills at different points of the stream."""
    data_dir = tmp_path / "data"
    nc = await nats.connect(nats_server.url)
    publisher = asyncio.create_task(publish_events(nc.jetstream(), events(N)))
    try:
        for threshold in (5_000, 20_000, 35_000):
            daemon = start_daemon(data_dir, nats_server.url)

            await eventually(lambda t=threshold: stored_at_least(nc, t), timeout=120)
            daemon.send_signal(signal.SIGKILL)
            daemon.wait(10)
        await publisher
        daemon = start_daemon(data_dir, nats_server.url)
        await drain_and_stop(daemon, nc)
    finally:
        if daemon.poll() is None:
            daemon.kill()
        await nc.close()
    assert_exactly_once(data_dir / "kaizend.duckdb")
