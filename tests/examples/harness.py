"""A daemon run from a configuration file, as a team would run it, for the end-to-end tests
of declared tasks: ``kaizend --config FILE run`` in a subprocess, a NATS connection beside
it, and simulated users asking its gateway."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import nats
from kaizend_client import Producer, infer

from tests.conftest import ROOT, eventually

BASE_CONFIG = """
[daemon]
data_dir = "{data}"
shutdown_grace_s = 10
# Trainings at full priority: the test waits for them (a nice 19 one starves on a busy box).
background_niceness = 0
[nats]
url = "{nats_url}"
request_timeout_s = 5
[ingest]
flush_interval_ms = 50
[storage]
export_interval_s = 0
[metrics]
port = 0
[training]
check_interval_s = 1
fresh_share = 0.2
[experiments]
tick_s = 0.5
"""
"""Everything but the tasks: a fast-ticking daemon on the test's nats-server."""


def write_config(tmp_path: Path, nats_url: str, tasks: str) -> Path:
    """A configuration file declaring ``tasks`` (TOML), its data directory created."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    config = tmp_path / "kaizend.toml"
    config.write_text(BASE_CONFIG.format(data=data, nats_url=nats_url) + tasks)
    return config


Ask = Callable[[Any, Producer], Awaitable[None]]
"""One simulated user's question and reaction: ``ask(nc, producer)``."""


class DaemonProcess:
    """``kaizend --config FILE run`` until the block ends; `sql` and the users beside it."""

    def __init__(self, config: Path, nats_url: str, log: Path, pythonpath: str = "") -> None:
        self.command = [sys.executable, "-m", "kaizend.daemon", "--config", str(config)]
        paths = [str(ROOT), *([pythonpath] if pythonpath else [])]
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "HF_HUB_OFFLINE": "1"}
        self.nats_url = nats_url
        self.log = log
        self.asked = 0
        self._traffic: asyncio.Task[None] | None = None

    def cli(self, *args: str) -> str:
        """The command line on the same configuration; its stdout."""
        done = subprocess.run([*self.command, *args], env=self.env, capture_output=True,
                              text=True, timeout=120, check=True)  # fmt: skip
        return done.stdout

    async def __aenter__(self) -> DaemonProcess:
        self.process = subprocess.Popen([*self.command, "run"], env=self.env,
                                        stderr=self.log.open("w"))  # fmt: skip
        self.nc = await nats.connect(self.nats_url)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._traffic is not None:
            self._traffic.cancel()
            await asyncio.gather(self._traffic, return_exceptions=True)
        await self.nc.close()
        self.process.terminate()
        self.process.wait(30)

    def alive(self) -> None:
        assert self.process.poll() is None, self.log.read_text()[-3000:]
        if self._traffic is not None and self._traffic.done():
            self._traffic.result()  # a user's failure, raised here

    async def sql(self, query: str) -> list[list[Any]]:
        reply = await self.nc.request("kaizen.admin.sql", json.dumps({"sql": query}).encode(), 10)
        answer = json.loads(reply.data)
        assert "error" not in answer, answer
        return answer["rows"]

    async def serving(self, task: str, timeout: float) -> None:
        """Wait until the gateway answers for ``task``."""

        async def answers() -> bool:
            self.alive()
            try:
                await infer(self.nc, task, "hello", unit_id="probe", timeout=5)
            except Exception:  # noqa: BLE001 - not serving yet
                return False
            return True

        await eventually(answers, timeout=timeout, interval=0.5)

    def start_users(self, ask: Ask, service: str, concurrency: int) -> None:
        """Simulated users, ``concurrency`` at a time, until the block ends."""

        async def run() -> None:
            producer = await Producer.start(self.nc, service=service)
            try:
                while True:
                    await asyncio.gather(*(ask(self.nc, producer) for _ in range(concurrency)))
                    self.asked += concurrency
                    await asyncio.sleep(0.05)
            finally:
                await producer.stop()

        self._traffic = asyncio.create_task(run())

    async def experiment_ended(self, timeout: float) -> tuple[str, str, str]:
        """(status, challenger, reason) of the first experiment, once it has ended."""

        async def ended() -> bool:
            self.alive()
            found = await self.sql("SELECT status FROM experiments")
            return bool(found) and found[0][0] not in ("running", "paused")

        await eventually(ended, timeout=timeout, interval=1)
        [[status, challenger, reason]] = await self.sql(
            "SELECT status, challenger, reason FROM experiments"
        )
        return status, challenger, reason
