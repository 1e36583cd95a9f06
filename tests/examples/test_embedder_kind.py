"""An `embedder` task over a corpus of the test's own, declared with configuration and data
files only: users' corrections through the gateway -> its trigger -> training (the packaged
all-MiniLM-L6-v2) -> the offline gate -> an experiment through the gateway -> promotion
(issue 14, must-show 1, the embedder half).

The corpus is a team's internal tools, which its users call by code names the base model
cannot know ("ask heron"): the base ranks them poorly, the corrections teach them.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import nats
import pytest
from kaizend_client import Producer, infer

from tests.conftest import ROOT, eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

TOOLS = {
    "heron": "Billing export: monthly invoices as CSV files for the finance team.",
    "falcon": "Incident paging: who is on call and how to escalate an outage.",
    "osprey": "Access requests: grant or revoke permissions to internal systems.",
    "wren": "Expense claims: submit receipts and track reimbursement.",
    "kestrel": "Build pipeline: continuous integration jobs and their logs.",
    "plover": "Holiday planner: book leave and see the team calendar.",
    "curlew": "Data warehouse: SQL access to the analytics tables.",
    "dunlin": "Laptop provisioning: order and set up a new work computer.",
}
ASKS = ("how do I use {}", "{} is not working", "where is the {} page", "help with {} {}",
        "{} login", "who owns {}")  # fmt: skip


def write_files(tmp_path: Path, nats_url: str) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    with (data / "tools.jsonl").open("w") as corpus:
        for number, (_name, text) in enumerate(TOOLS.items()):
            corpus.write(
                json.dumps(
                    {
                        "doc_id": f"tool-{number}",
                        "text": text,
                        "metadata": {"owner": f"team-{number % 3}"},
                    }
                )
                + "\n"
            )
    config = tmp_path / "kaizend.toml"
    config.write_text(f"""
[daemon]
data_dir = "{data}"
shutdown_grace_s = 10
# Trainings at full priority: the test waits for them (a nice 19 one starves on a busy box).
background_niceness = 0
[nats]
url = "{nats_url}"
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
[tasks.tools]
kind = "embedder"
corpus = "tools.jsonl"
top_k = 3
[tasks.tools.pairs]
min_positive = 20
min_negative = 10
[tasks.tools.training]
max_steps = 80
batch_size = 16
learning_rate = 3e-4
eval_steps = 40
[tasks.tools.triggers]
min_new_signal = 60
cooldown_s = 3600
[tasks.tools.gate]
min_fresh_examples = 10
[tasks.tools.experiments]
steps = [0.5]
min_units = 150
attribution_s = 3600
""")
    return config


class Users:
    """Ask the gateway; a right first result is rated 5, otherwise the right tool is named
    in a correction."""

    def __init__(self, nc: Any, seed: int = 5) -> None:
        self.nc = nc
        self.rng = random.Random(seed)
        self.asked = 0

    async def one(self, producer: Producer) -> None:
        number, name = self.rng.choice(list(enumerate(TOOLS)))
        text = self.rng.choice(ASKS).format(name, self.rng.randrange(100))
        reply = await infer(self.nc, "tools", text, unit_id=f"user-{self.rng.randrange(10**9)}")
        right = f"tool-{number}"
        results = reply["output"]["results"]
        if results and results[0]["doc_id"] == right:
            await producer.feedback(reply["query_id"], rating=5)
        else:
            await producer.correction(reply["query_id"], {"relevant_ids": [right]})
        self.asked += 1

    async def run(self) -> None:
        producer = await Producer.start(self.nc, service="intranet-search")
        try:
            while True:
                await asyncio.gather(*(self.one(producer) for _ in range(10)))
                await asyncio.sleep(0.05)
        finally:
            await producer.stop()


async def test_an_embedder_over_the_teams_corpus_learns_and_is_promoted(
    tmp_path: Path, nats_server: Any
) -> None:
    config = write_files(tmp_path, nats_server.url)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    log = tmp_path / "daemon.log"
    daemon = subprocess.Popen(
        [sys.executable, "-m", "kaizend.daemon", "--config", str(config), "run"],
        env=env, stderr=log.open("w"),
    )  # fmt: skip
    nc = await nats.connect(nats_server.url)
    users = Users(nc)
    traffic: asyncio.Task[None] | None = None

    async def sql(query: str) -> list[list[Any]]:
        reply = await nc.request("kaizen.admin.sql", json.dumps({"sql": query}).encode(), 10)
        answer = json.loads(reply.data)
        assert "error" not in answer, answer
        return answer["rows"]

    async def serving() -> bool:
        assert daemon.poll() is None, log.read_text()[-3000:]
        try:
            await infer(nc, "tools", "hello", unit_id="probe", timeout=5)
        except Exception:  # noqa: BLE001 - not serving yet
            return False
        return True

    try:
        await eventually(serving, timeout=180, interval=1)
        traffic = asyncio.create_task(users.run())

        async def experiment_over() -> bool:
            assert daemon.poll() is None, log.read_text()[-3000:]
            assert not traffic.done() or traffic.result()
            found = await sql("SELECT status FROM experiments")
            return bool(found) and found[0][0] not in ("running", "paused")

        await eventually(experiment_over, timeout=800, interval=2)
        [[status, challenger, reason]] = await sql(
            "SELECT status, challenger, reason FROM experiments"
        )
        assert (status, challenger) == ("promoted", "tools-v1"), reason
        [[passed, checks]] = await sql(
            "SELECT passed, checks FROM gate_decisions WHERE version_id = 'tools-v1'"
        )
        assert passed is True, checks
        reply = await infer(nc, "tools", "osprey login", unit_id="after")
        assert reply["version"] == "tools-v1"
        assert reply["output"]["results"][0]["doc_id"] == "tool-2"
        assert (tmp_path / "data" / "chroma" / "tools").is_dir()  # its own collections
    finally:
        if traffic is not None:
            traffic.cancel()
            await asyncio.gather(traffic, return_exceptions=True)
        await nc.close()
        daemon.terminate()
        daemon.wait(30)
