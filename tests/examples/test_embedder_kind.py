"""An `embedder` task over a corpus of the test's own, declared with configuration and data
files only: users' corrections through the gateway -> its trigger -> training (the packaged
all-MiniLM-L6-v2) -> the offline gate -> an experiment through the gateway -> promotion
(issue 14, must-show 1, the embedder half).

The corpus is a team's internal tools, which its users call by code names the base model
cannot know ("ask heron"): the base ranks them poorly, the corrections teach them.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from kaizend_client import Producer, infer

from tests.examples.harness import DaemonProcess, write_config

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


TASKS = """
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
"""


def write_corpus(path: Path) -> None:
    """The tools' descriptions; the code names are nowhere in them."""
    with path.open("w") as corpus:
        for number, text in enumerate(TOOLS.values()):
            document = {"doc_id": f"tool-{number}", "text": text,
                        "metadata": {"owner": f"team-{number % 3}"}}  # fmt: skip
            corpus.write(json.dumps(document) + "\n")


def users(seed: int = 5) -> Any:
    """Ask the gateway; a right first result is rated 5, otherwise the right tool is named
    in a correction."""
    rng = random.Random(seed)

    async def ask(nc: Any, producer: Producer) -> None:
        number, name = rng.choice(list(enumerate(TOOLS)))
        text = rng.choice(ASKS).format(name, rng.randrange(100))
        reply = await infer(nc, "tools", text, unit_id=f"user-{rng.randrange(10**9)}")
        right = f"tool-{number}"
        results = reply["output"]["results"]
        if results and results[0]["doc_id"] == right:
            await producer.feedback(reply["query_id"], rating=5)
        else:
            await producer.correction(reply["query_id"], {"relevant_ids": [right]})

    return ask


async def test_an_embedder_over_the_teams_corpus_learns_and_is_promoted(
    tmp_path: Path, nats_server: Any
) -> None:
    config = write_config(tmp_path, nats_server.url, TASKS)
    write_corpus(tmp_path / "data" / "tools.jsonl")
    async with DaemonProcess(config, nats_server.url, tmp_path / "daemon.log") as daemon:
        await daemon.serving("tools", timeout=180)
        daemon.start_users(users(), service="intranet-search", concurrency=10)
        status, challenger, reason = await daemon.experiment_ended(timeout=800)
        assert (status, challenger) == ("promoted", "tools-v1"), reason
        [[passed, checks]] = await daemon.sql(
            "SELECT passed, checks FROM gate_decisions WHERE version_id = 'tools-v1'"
        )
        assert passed is True, checks
        reply = await infer(daemon.nc, "tools", "osprey login", unit_id="after")
        assert reply["version"] == "tools-v1"
        assert reply["output"]["results"][0]["doc_id"] == "tool-2"
        assert (tmp_path / "data" / "chroma" / "tools").is_dir()  # its own collections
