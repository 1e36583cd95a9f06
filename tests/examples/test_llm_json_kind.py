"""An ``llm-json`` task on a schema the FIT code has never seen (support tickets ->
``{product, severity, category}``), declared with configuration and data files only, goes
from users' corrections through its trigger, training (the tiny test Llama), the offline
gate and an experiment through the gateway to promotion (issue 14, must-show 1), every
answer valid for the schema (must-show 3).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from kaizend_client import Producer, infer

from tests.examples.harness import DaemonProcess, write_config

SCHEMA = {
    "type": "object",
    "properties": {
        "product": {"enum": ["mobile", "web", "api"]},
        "severity": {"enum": ["low", "high"]},
        "category": {"enum": ["bug", "billing", "question"]},
    },
    "required": ["product", "severity", "category"],
    "additionalProperties": False,
}
WORDS = {
    "product": {"mobile": "phone app", "web": "website", "api": "rest api"},
    "severity": {"low": "when you can", "high": "urgent"},
    "category": {"bug": "crashes", "billing": "charged twice", "question": "how do i"},
}


def ticket(rng: random.Random) -> tuple[str, dict[str, str]]:
    """A ticket text and the output that describes it."""
    expected = {field: rng.choice(list(words)) for field, words in WORDS.items()}
    parts = [WORDS[field][value] for field, value in expected.items()]
    rng.shuffle(parts)
    return f"ticket {rng.randrange(100)}: " + " ".join(parts), expected


def tasks(base: Path) -> str:
    return f"""
[tasks.tickets]
kind = "llm-json"
schema = "tickets.schema.json"
base_model = "{base}"
max_new_tokens = 160
correction_weight = 2
[tasks.tickets.training]
max_steps = 80
batch_size = 8
learning_rate = 0.01
lora_top_layers = 2
lora_dropout = 0.0
warmup_ratio = 0.0
checkpoint_every = 1000
[tasks.tickets.triggers]
min_new_signal = 60
cooldown_s = 3600
[tasks.tickets.gate]
min_fresh_examples = 8
# The fresh set's confirmed answers are the few the untrained base got right by chance (one
# or two): "no regression there" on one example would decide by luck, so it is off here.
tolerance = 1.0
[tasks.tickets.experiments]
steps = [0.5]
min_units = 150
attribution_s = 3600
"""


def users(validator: Any, invalid: list[Any], seed: int = 5) -> Any:
    """Ask the gateway; rate a right answer 5, correct a wrong one; keep invalid answers."""
    rng = random.Random(seed)

    async def ask(nc: Any, producer: Producer) -> None:
        text, expected = ticket(rng)
        reply = await infer(
            nc, "tickets", text, unit_id=f"user-{rng.randrange(10**9)}", timeout=120
        )
        if not validator.is_valid(reply["output"]):
            invalid.append(reply["output"])
        if reply["output"] == expected:
            await producer.feedback(reply["query_id"], rating=5)
        else:
            await producer.correction(reply["query_id"], expected)

    return ask


@pytest.mark.slow  # about 4-6 minutes on 2 cores: a training, a gate and an experiment
@pytest.mark.timeout(1200)
async def test_an_llm_json_task_on_a_new_schema_is_trained_gated_and_promoted(
    tmp_path: Path, nats_server: Any, tiny_base: Path
) -> None:
    config = write_config(tmp_path, nats_server.url, tasks(tiny_base))
    (tmp_path / "data" / "tickets.schema.json").write_text(json.dumps(SCHEMA))
    daemon = DaemonProcess(config, nats_server.url, tmp_path / "daemon.log")
    rows = [json.loads(line) for line in daemon.cli("tasks", "--json").splitlines()]
    assert any(r["what"] == "kind" and r["name"] == "llm-json" for r in rows)
    assert any(r["what"] == "task" and r["name"] == "tickets" for r in rows)

    invalid: list[Any] = []
    validator = jsonschema.Draft202012Validator(SCHEMA)
    async with daemon:
        await daemon.serving("tickets", timeout=180)
        daemon.start_users(users(validator, invalid), service="helpdesk", concurrency=5)
        status, challenger, reason = await daemon.experiment_ended(timeout=600)
        assert (status, challenger) == ("promoted", "tickets-v1"), reason
        [[gate]] = await daemon.sql(
            "SELECT passed FROM gate_decisions WHERE version_id = 'tickets-v1'"
        )
        assert gate is True
        [[champion]] = await daemon.sql(
            "SELECT version_id FROM current_aliases WHERE task = 'tickets' AND alias = 'champion'"
        )
        assert champion == "tickets-v1"
    assert daemon.asked > 150
    assert invalid == []  # the base and the trained version: every answer valid
