"""Daemon lifecycle edge cases."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from kaizend.daemon.app import Daemon

from tests.conftest import make_settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_a_stop_while_waiting_for_nats_exits_promptly(tmp_path: Path) -> None:
    # Nothing listens there: the daemon keeps trying to connect until told to stop.
    settings = make_settings(tmp_path / "data", f"nats://127.0.0.1:{free_port()}")
    daemon = Daemon(settings)
    task = asyncio.create_task(daemon.run())
    await asyncio.sleep(1.5)
    assert not task.done()
    daemon.request_stop("test")
    assert await asyncio.wait_for(task, 5) == 0
    assert not settings.runtime_file.exists()
