"""The experiment loop on a real DuckDB file and a real routing bucket: ramp, then promote or
roll back, every tick in the decision log."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats
from kaizend.core import metrics
from kaizend.daemon.experiments import ExperimentLoop
from kaizend.handlers.routing import Routing, routing_bucket
from kaizend.storage.events import EventStore
from kaizend.storage.registry import Registry

from tests.conftest import FIT_TASKS_ENV, make_settings


def traffic(store: EventStore, routing: Routing, rates: dict[str, float], n: int, rng) -> None:
    """``n`` users, each routed by the bucket's entry, who like the answer at their arm's rate."""
    now = datetime.now(UTC)
    queries, feedback = [], []
    for _ in range(n):
        unit = f"user-{rng.randrange(10**9)}"
        arm, version = routing.assign(unit)
        qid = f"q-{rng.randrange(10**12)}"
        queries.append({"event_id": f"e-{qid}", "query_id": qid, "ts": now, "task": "parser",
                        "text": "t", "model_version": version, "arm": arm, "unit_id": unit,
                        "latency_ms": 5.0, "schema_version": 1, "ingested_at": now})  # fmt: skip
        liked = rng.random() < rates[arm]
        feedback.append({"event_id": f"f-{qid}", "query_id": qid, "ts": now,
                         "rating": 5 if liked else 2, "schema_version": 1,
                         "ingested_at": now})  # fmt: skip
    store.write({"query_events": queries, "feedback_events": feedback})


async def run_experiment(tmp_path: Path, url: str, rates: dict[str, float]) -> tuple[Any, ...]:
    settings = make_settings(
        tmp_path / "data", url, experiments={"min_units": 300, "attribution_s": 3600}
    )
    store = EventStore(tmp_path / "k.duckdb")
    with store.cursor() as con:
        registry = Registry(con)
        registry.ensure_initial_champion("parser", base_model="rules", reason="v0")
        registry.register("parser", base_model="smollm2", reason="trained")
        registry.make_challenger("parser-v1", "passed the gate")
    nc = await nats.connect(url)
    try:
        kv = await routing_bucket(nc.jetstream(), create=True)
        loop = ExperimentLoop(settings, store, kv)
        await loop.sync_routing(["parser"])
        rng = random.Random(7)
        actions = []
        for _ in range(30):
            decisions = await loop.tick()
            actions += [d.action for d in decisions.values()]
            if actions and actions[-1] in ("promote", "rollback", "inconclusive"):
                break
            entry = Routing.model_validate_json((await kv.get("parser")).value)
            traffic(store, entry, rates, 600, rng)
        final = Routing.model_validate_json((await kv.get("parser")).value)
    finally:
        await nc.close()
    with store.cursor() as con:
        log = con.execute("SELECT step, weight, gate, action, p_value, n_champion, n_challenger "
                          "FROM experiment_decisions ORDER BY decided_at").fetchall()  # fmt: skip
        registry = Registry(con)
        champion = registry.alias("parser", "champion")
        status = con.execute("SELECT status FROM experiments").fetchone()[0]
    return actions, final, log, champion, status


async def test_a_better_challenger_ramps_up_and_is_promoted(tmp_path: Path, nats_server) -> None:
    actions, final, log, champion, status = await run_experiment(
        tmp_path, nats_server.url, {"champion": 0.40, "challenger": 0.70}
    )
    assert actions[-1] == "promote" and status == "promoted" and champion == "parser-v1"
    assert [row[1] for row in log if row[3] == "advance"] == [0.10, 0.25]
    assert log[-1][1] == 0.50 and log[-1][4] < 0.05
    assert (final.champion, final.challenger, final.challenger_weight) == ("parser-v1", None, 0)
    # /metrics: the last step's success per arm, and no experiment running any more.
    sample = metrics.REGISTRY.get_sample_value
    assert 0.6 < sample("kaizend_experiment_success_rate", {"task": "parser", "arm": "challenger"})
    assert 0.3 < sample("kaizend_experiment_success_rate", {"task": "parser", "arm": "champion"})
    assert sample("kaizend_experiment_step", {"task": "parser"}) == 0


def test_the_cli_shows_the_timeline_of_an_experiment(tmp_path: Path) -> None:
    import asyncio
    import json
    import os
    import subprocess
    import sys

    from kaizend.daemon.nats_server import EmbeddedNats

    with EmbeddedNats(tmp_path / "nats") as server:
        asyncio.run(run_experiment(tmp_path, server.url, {"champion": 0.4, "challenger": 0.7}))
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "KAIZEND_DAEMON__DATA_DIR": str(tmp_path),
        **FIT_TASKS_ENV,
        "KAIZEND_STORAGE__DB_FILE": "k.duckdb",
    }

    def kaizend(*args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "kaizend.daemon", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    (listed,) = [
        json.loads(line) for line in kaizend("experiments", "list", "--format", "json").splitlines()
    ]
    assert (listed["status"], listed["step"], listed["challenger_share"]) == ("promoted", 3, 0.5)
    timeline = [
        json.loads(line)
        for line in kaizend(
            "experiments", "show", listed["experiment_id"], "--format", "json"
        ).splitlines()
    ]
    assert [row["action"] for row in timeline][-1] == "promote"
    assert {"p_value", "ci_lower", "ci_upper", "gate", "reason"} <= set(timeline[-1])


async def test_a_worse_challenger_is_rolled_back(tmp_path: Path, nats_server) -> None:
    actions, final, log, champion, status = await run_experiment(
        tmp_path, nats_server.url, {"champion": 0.60, "challenger": 0.20}
    )
    assert actions[-1] == "rollback" and status == "rolled_back" and champion == "parser-v0"
    assert log[-1][2] == "primary" and log[0][3] in ("hold", "rollback")
    assert (final.champion, final.challenger) == ("parser-v0", None)


async def test_a_held_experiment_ends_and_the_next_candidate_takes_the_task(
    tmp_path: Path, nats_server
) -> None:
    # No traffic at all: the first step holds, then ends inconclusive at max_step_s, and the
    # candidate that passed the gate while parser-v1 was the challenger faces traffic next.
    import asyncio
    import json

    settings = make_settings(tmp_path / "data", nats_server.url, experiments={"max_step_s": 1.0})
    store = EventStore(tmp_path / "k.duckdb")
    with store.cursor() as con:
        registry = Registry(con)
        registry.ensure_initial_champion("parser", base_model="rules", reason="v0")
        registry.register("parser", base_model="smollm2", reason="trained")
        registry.make_challenger("parser-v1", "passed the gate")
        registry.register("parser", base_model="smollm2", reason="trained again")
        registry.set_status("parser-v2", "candidate", "waits while parser-v1 is the challenger")
        con.execute(
            "INSERT INTO gate_decisions (version_id, task, champion, decided_at, passed, reason, "
            "checks) VALUES ('parser-v2', 'parser', 'parser-v0', ?, true, 'passed', ?)",
            [datetime.now(UTC), json.dumps({})],
        )
    nc = await nats.connect(nats_server.url)
    try:
        kv = await routing_bucket(nc.jetstream(), create=True)
        loop = ExperimentLoop(settings, store, kv)
        first = list((await loop.tick()).values())
        assert [(d.action, d.gate) for d in first] == [("hold", "traffic")]
        await asyncio.sleep(1.2)
        ended = list((await loop.tick()).values())
        assert [(d.action, d.gate) for d in ended] == [("inconclusive", "traffic")]
        await loop.tick()
        entry = Routing.model_validate_json((await kv.get("parser")).value)
    finally:
        await nc.close()
    assert (entry.challenger, entry.challenger_weight) == ("parser-v2", 0.10)
    with store.cursor() as con:
        experiments = con.execute(
            "SELECT challenger, status FROM experiments ORDER BY created_at"
        ).fetchall()
    assert experiments == [("parser-v1", "inconclusive"), ("parser-v2", "running")]
