"""A task kind from a pip-installed package (examples/plugin): it appears in `kaizend tasks`,
and a task of its kind, declared with configuration and data files only, goes from users'
corrections through its trigger, training, the offline gate and an experiment through the
gateway to promotion (issue 14, must-show 2).

The package is installed with pip into a directory of the test's own (``--target``), which
the daemon's PYTHONPATH adds, so the shared environment is left as it was.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kaizend_client import Producer, infer

from tests.conftest import ROOT
from tests.examples.harness import DaemonProcess, write_config

LABELS = ("billing", "outage", "account")
SEED = [
    ("I was charged twice this month", "billing"),
    ("question about my invoice", "billing"),
    ("the service is down", "outage"),
    ("nothing loads, is there an outage", "outage"),
    ("how do I change my password", "account"),
    ("please delete my profile", "account"),
]
# What users ask: phrasings the seed examples never use.
TRAFFIC = {
    "billing": ["refund the duplicate payment {n}", "my card got debited {n} times",
                "wrong amount on receipt {n}", "cancel the subscription fee {n}"],
    "outage": ["error 503 on the dashboard {n}", "api timing out since {n} am",
               "cannot reach the website {n}", "servers unreachable in region {n}"],
    "account": ["reset login for user {n}", "update the email on file {n}",
                "two factor code never arrives {n}", "rename the workspace {n}"],
}  # fmt: skip


def install_plugin(tmp_path: Path) -> Path:
    source = tmp_path / "plugin-src"
    shutil.copytree(ROOT / "examples" / "plugin", source)  # pip builds in the source tree
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(source)],
        check=True, timeout=300,
    )  # fmt: skip
    return target


TASKS = f"""
[tasks.tickets]
kind = "tfidf-classifier"
labels = {json.dumps(list(LABELS))}
seed_examples = "seed.jsonl"
[tasks.tickets.triggers]
min_new_signal = 40
cooldown_s = 3600
[tasks.tickets.gate]
min_fresh_examples = 8
[tasks.tickets.experiments]
steps = [0.5]
min_units = 150
attribution_s = 3600
"""


def users(seed: int = 3) -> Any:
    """Ask the gateway; rate a right label 5, correct a wrong one."""
    rng = random.Random(seed)

    async def ask(nc: Any, producer: Producer) -> None:
        label = rng.choice(LABELS)
        text = rng.choice(TRAFFIC[label]).format(n=rng.randrange(1000))
        reply = await infer(nc, "tickets", text, unit_id=f"user-{rng.randrange(10**9)}")
        if reply["output"]["label"] == label:
            await producer.feedback(reply["query_id"], rating=5)
        else:
            await producer.correction(reply["query_id"], {"label": label})

    return ask


async def test_a_plugin_kind_trains_is_gated_and_promoted_through_the_gateway(
    tmp_path: Path, nats_server: Any
) -> None:
    site = install_plugin(tmp_path)
    config = write_config(tmp_path, nats_server.url, TASKS)
    (tmp_path / "data" / "seed.jsonl").write_text(
        "".join(json.dumps({"text": t, "label": label}) + "\n" for t, label in SEED)
    )
    daemon = DaemonProcess(config, nats_server.url, tmp_path / "daemon.log", pythonpath=str(site))
    rows = [json.loads(line) for line in daemon.cli("tasks", "--json").splitlines()]
    assert {"what": "task", "name": "tickets", "kind": "tfidf-classifier",
            "primary_metric": "accuracy",
            "champion": "tickets-v0 (not started yet)"} in rows  # fmt: skip
    assert any(r["what"] == "kind" and r["name"] == "tfidf-classifier" for r in rows)

    async with daemon:
        await daemon.serving("tickets", timeout=120)
        daemon.start_users(users(), service="helpdesk", concurrency=20)
        status, challenger, reason = await daemon.experiment_ended(timeout=400)
        assert (status, challenger) == ("promoted", "tickets-v1"), reason
        # The task's own experiment settings: one step at 50%, decided on >= 150 units.
        [[steps, weight, units]] = await daemon.sql(
            "SELECT count(DISTINCT step), max(weight), max(n_champion + n_challenger) "
            "FROM experiment_decisions"
        )
        assert (steps, weight) == (1, 0.5) and units >= 150
        [[gate]] = await daemon.sql(
            "SELECT passed FROM gate_decisions WHERE version_id = 'tickets-v1'"
        )
        assert gate is True
        [[champion]] = await daemon.sql(
            "SELECT version_id FROM current_aliases WHERE task = 'tickets' AND alias = 'champion'"
        )
        assert champion == "tickets-v1"
        reply = await infer(daemon.nc, "tickets", "refund the duplicate payment 7", unit_id="u")
        assert reply["version"] == "tickets-v1" and reply["output"]["label"] == "billing"
    assert daemon.asked > 150


@pytest.fixture(autouse=True)
def _plugin_source_stays_clean() -> Any:
    yield
    assert not (ROOT / "examples" / "plugin" / "build").exists()
