"""The experiment loop end to end in a running daemon: a challenger registered -> experiment
created -> routing bucket updated -> simulated users ask the gateway over NATS and rate the
answers -> promoted (or rolled back), with the decision log filled in; and the operators'
commands (pause, resume, promote, rollback) through the command line.

The simulated users like an answer at a rate that depends only on the arm that gave it (the
quality of a tiny test model means nothing); the real quality loop is the demo's.
"""

from __future__ import annotations

import asyncio
import random
import shutil
from pathlib import Path
from typing import Any

from kaizend.handlers.routing import Routing, routing_bucket
from kaizend.storage.experiments import ExperimentStore, unit_metrics
from kaizend.storage.registry import Registry
from kaizend_client import Producer, infer

from tests.conftest import (
    MEMORISE,
    RunningDaemon,
    eventually,
    kaizend,
    make_settings,
    rows,
    run_daemon,
)


def experiment_settings(tmp_path: Path, url: str) -> Any:
    return make_settings(
        tmp_path / "data", url,
        experiments={"tick_s": 0.5, "min_units": 200, "attribution_s": 3600},
        gateway={"batch_wait_ms": 5.0},
    )  # fmt: skip


def in_runs(daemon: RunningDaemon, artifact: Path) -> Path:
    """A copy of a version under the daemon's runs, the only place the gateway loads from."""
    copy = daemon.daemon.settings.runs_path / "test-run" / "version"
    if not copy.exists():
        shutil.copytree(artifact, copy)
    return copy


def register_challenger(daemon: RunningDaemon, artifact: Path) -> str:
    """A trained version that passed the gate, as the orchestrator would register it."""
    artifact = in_runs(daemon, artifact)
    with daemon.daemon.store.cursor() as con:
        registry = Registry(con)
        record = registry.register(
            "parser", base_model="tiny-llama", reason="trained (test)",
            artifact_path=str(artifact), parent_version="parser-v0",
        )  # fmt: skip
        registry.make_challenger(record.version_id, "offline gate passed (test)")
    return record.version_id


async def entry(daemon: RunningDaemon) -> Routing:
    kv = await routing_bucket(daemon.js)
    return Routing.model_validate_json((await kv.get("parser")).value)


class Users:
    """Simulated users: ask the gateway, then rate the answer 5 (liked) or 2."""

    def __init__(self, daemon: RunningDaemon, like: dict[str, float], seed: int = 1) -> None:
        self.daemon = daemon
        self.like = like
        self.rng = random.Random(seed)
        self.asked = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.producer = await Producer.start(self.daemon.nc, service="fit-search")
        self._task = asyncio.create_task(self._run())

    async def _one(self) -> None:
        unit = f"user-{self.rng.randrange(10**9)}"
        # The question the tiny challenger knows by heart: it answers without falling back
        # (on any other, the fallback-rate guardrail would roll it back at once).
        reply = await infer(self.daemon.nc, "parser", MEMORISE["text"], unit_id=unit)
        liked = self.rng.random() < self.like[reply["arm"]]
        await self.producer.feedback(reply["query_id"], rating=5 if liked else 2)

    async def _run(self) -> None:
        while True:
            await asyncio.gather(*(self._one() for _ in range(40)))
            self.asked += 40

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.producer.stop()


async def finished(daemon: RunningDaemon) -> dict[str, Any]:
    async def done() -> bool:
        found = await rows(daemon, "SELECT status FROM experiments")
        return bool(found) and found[0]["status"] not in ("running", "paused")

    await eventually(done, timeout=180, interval=0.5)
    (experiment,) = await rows(daemon, "SELECT * FROM experiments")
    return experiment


async def test_a_better_challenger_is_promoted_through_the_ramp(
    tmp_path: Path, nats_server: Any, memorised: Any
) -> None:
    async with run_daemon(experiment_settings(tmp_path, nats_server.url)) as daemon:
        version = register_challenger(daemon, memorised.path)
        users = Users(daemon, {"champion": 0.35, "challenger": 0.85})
        await users.start()
        try:
            experiment = await finished(daemon)
        finally:
            await users.stop()
        assert (experiment["status"], experiment["challenger"]) == ("promoted", version)

        log = await rows(daemon, "SELECT * FROM experiment_decisions ORDER BY decided_at")
        assert [row["weight"] for row in log if row["action"] == "advance"] == [0.10, 0.25]
        last = log[-1]
        assert (last["action"], last["gate"], last["weight"]) == ("promote", "primary", 0.5)
        assert last["p_value"] < 0.05 and last["ci_lower"] > 0
        assert last["n_champion"] > 0 and last["n_challenger"] > 0
        steps = await rows(daemon, "SELECT weight FROM experiment_steps ORDER BY step")
        assert [s["weight"] for s in steps] == [0.10, 0.25, 0.50]

        # The registry, the alias history and the routing bucket all say the same.
        champion = await rows(daemon, "SELECT * FROM current_aliases WHERE task = 'parser'")
        assert {row["alias"]: row["version_id"] for row in champion} == {
            "champion": version, "challenger": None,
        }  # fmt: skip
        routing = await entry(daemon)
        assert (routing.champion, routing.challenger) == (version, None)
        assert routing.champion_artifact == str(in_runs(daemon, memorised.path))

        async def served_by_new_champion() -> bool:
            reply = await infer(daemon.nc, "parser", "solar in kent", unit_id="late-user")
            return reply["version"] == version

        await eventually(served_by_new_champion, timeout=10)


async def test_a_worse_challenger_is_rolled_back(
    tmp_path: Path, nats_server: Any, memorised: Any
) -> None:
    async with run_daemon(experiment_settings(tmp_path, nats_server.url)) as daemon:
        version = register_challenger(daemon, memorised.path)
        users = Users(daemon, {"champion": 0.70, "challenger": 0.15}, seed=2)
        await users.start()
        try:
            experiment = await finished(daemon)
        finally:
            await users.stop()
        assert experiment["status"] == "rolled_back"
        (last,) = await rows(
            daemon, "SELECT * FROM experiment_decisions ORDER BY decided_at DESC LIMIT 1"
        )
        assert (last["action"], last["gate"]) == ("rollback", "primary")
        assert last["p_value"] < 0.05 and last["ci_upper"] < 0
        status = await daemon.scalar(
            f"SELECT status FROM model_versions WHERE version_id = '{version}'"
        )
        assert status == "rejected"
        routing = await entry(daemon)
        assert (routing.champion, routing.challenger, routing.challenger_weight) == (
            "parser-v0", None, 0.0,
        )  # fmt: skip


async def test_operators_pause_resume_promote_and_roll_back_from_the_command_line(
    tmp_path: Path, nats_server: Any, memorised: Any
) -> None:
    settings = experiment_settings(tmp_path, nats_server.url)
    async with run_daemon(settings) as daemon:
        version = register_challenger(daemon, memorised.path)

        async def started() -> bool:
            return (await entry(daemon)).challenger_weight == 0.10

        await eventually(started, timeout=10)
        (experiment,) = await rows(daemon, "SELECT experiment_id FROM experiments")
        eid = experiment["experiment_id"]

        out = await kaizend(settings, "experiments", "pause", eid, "--reason", "looks odd")
        assert out.strip() == f"experiment {eid} is paused"
        routing = await entry(daemon)
        assert (routing.challenger, routing.challenger_weight) == (version, 0.0)
        again = await kaizend(settings, "experiments", "pause", eid, ok=False)
        assert "is paused, not running" in again

        out = await kaizend(settings, "experiments", "resume", eid)
        assert out.strip() == f"experiment {eid} is running"
        steps = await rows(daemon, f"SELECT * FROM experiment_steps WHERE experiment_id = '{eid}'")
        assert [(s["step"], s["weight"]) for s in steps] == [(1, 0.10), (2, 0.10)]
        assert steps[0]["ended_at"] is not None and steps[1]["ended_at"] is None
        assert (await entry(daemon)).challenger_weight == 0.10

        unknown = await kaizend(settings, "promote", "parser", "parser-v7", ok=False)
        assert "no parser version 'parser-v7'" in unknown
        out = await kaizend(settings, "promote", "parser", version, "--reason", "trusted")
        assert out.strip() == f"{version} is the parser champion"
        routing = await entry(daemon)
        assert (routing.champion, routing.challenger) == (version, None)
        status = f"SELECT status FROM experiments WHERE experiment_id = '{eid}'"
        assert await daemon.scalar(status) == "promoted"

        # No experiment left: a rollback puts the previous champion back.
        out = await kaizend(settings, "rollback", "parser", "--reason", "regression reported")
        assert out.strip() == "rolled back: parser-v0 serves parser"
        assert (await entry(daemon)).champion == "parser-v0"
        history = await rows(
            daemon, "SELECT version_id, reason FROM alias_history WHERE task = 'parser' "
            "AND alias = 'champion' ORDER BY assigned_at",
        )  # fmt: skip
        assert [h["version_id"] for h in history] == ["parser-v0", version, "parser-v0"]
        assert "regression reported" in history[-1]["reason"]
        rejected = await daemon.scalar(
            f"SELECT status_reason FROM model_versions WHERE version_id = '{version}'"
        )
        assert rejected.startswith("rolled back by an operator")
        # The version rolled back is not brought back by a second rollback.
        nothing = await kaizend(settings, "rollback", "parser", ok=False)
        assert "no experiment and no earlier champion to roll back to" in nothing

        # By hand, any version but the champion can face live traffic again.
        out = await kaizend(settings, "challenge", "parser", version, "--reason", "retest")
        assert out.startswith(f"{version} is the parser challenger")
        await eventually(started, timeout=10)
        second = await rows(daemon, "SELECT status FROM experiments ORDER BY created_at")
        assert [e["status"] for e in second] == ["promoted", "running"]
        busy = await kaizend(settings, "challenge", "parser", "parser-v0", ok=False)
        assert "parser-v0 is already the parser champion" in busy


class ClusteredUsers(Users):
    """Users who each like answers at a rate of their own (Beta, mean 0.5, intra-user
    correlation 0.3) whatever the arm, one of them sending 40% of the questions: an A/A
    experiment on traffic where one user's questions are far from independent."""

    def __init__(self, daemon: RunningDaemon, users: int = 60, seed: int = 3) -> None:
        super().__init__(daemon, {}, seed)
        self.rates = {f"user-{i}": self.rng.betavariate(1.1667, 1.1667) for i in range(users)}
        self.rates["heavy-user"] = 0.8

    async def _one(self) -> None:
        if self.rng.random() < 0.4:
            unit = "heavy-user"
        else:
            unit = self.rng.choice([u for u in self.rates if u != "heavy-user"])
        reply = await infer(self.daemon.nc, "parser", MEMORISE["text"], unit_id=unit)
        liked = self.rng.random() < self.rates[unit]
        await self.producer.feedback(reply["query_id"], rating=5 if liked else 2)


async def test_clustered_users_and_a_heavy_user_neither_trip_the_srm_nor_promote_an_aa(
    tmp_path: Path, nats_server: Any, memorised: Any
) -> None:
    settings = make_settings(
        tmp_path / "data", nats_server.url,
        experiments={"tick_s": 0.5, "min_units": 30, "max_step_s": 8, "attribution_s": 3600},
        gateway={"batch_wait_ms": 5.0},
    )  # fmt: skip
    async with run_daemon(settings) as daemon:
        users = ClusteredUsers(daemon)
        await users.start()
        try:
            # Their history first, on the champion alone: the adjustment's covariates.
            async def history() -> bool:
                return await daemon.scalar("SELECT count(*) FROM query_events") >= 120

            await eventually(history, timeout=60, interval=0.2)
            register_challenger(daemon, memorised.path)
            experiment = await finished(daemon)
        finally:
            await users.stop()
        # No sample-ratio alarm, although 40% of the queries come from one unit (in one arm),
        # and no promotion of a challenger that users like exactly as much as the champion.
        assert experiment["status"] == "inconclusive", experiment["reason"]
        log = await rows(daemon, "SELECT * FROM experiment_decisions ORDER BY decided_at")
        # Every step had units in both arms (the units a step moves to the challenger get a
        # few champion answers first, in flight while the gateway had the routing of before;
        # they are challenger units), so the ramp ran through to the last step.
        assert [row["weight"] for row in log if row["action"] == "advance"] == [0.10, 0.25], [
            row["reason"] for row in log[-3:]
        ]
        assert {row["gate"] for row in log} <= {"traffic", "sample", "ramp", "primary",
                                                "duration"}  # fmt: skip
        srm = [row["srm_p_value"] for row in log if row["srm_p_value"] is not None]
        assert srm and min(srm) > 0.001
        every_unit_counted_once(daemon, experiment)
        # The decision log's unit view: units (at most the 61 users) against queries, the
        # design effect of the heavy user, and the history adjustment.
        last = log[-1]
        assert last["n_champion"] + last["n_challenger"] <= 61
        assert last["queries_champion"] + last["queries_challenger"] > 2 * 61
        assert last["design_effect"] > 1.5
        assert any(row["adjusted"] and row["variance_removed"] > 0 for row in log)
        shown = await kaizend(settings, "experiments", "show", experiment["experiment_id"])
        assert "design_effect" in shown and "queries_champion" in shown


def every_unit_counted_once(daemon: RunningDaemon, experiment: dict[str, Any]) -> None:
    """In every step, each unit the two versions answered is one unit of one arm: the
    challenger's if the challenger answered it, the champion's otherwise."""
    champion, challenger = experiment["champion"], experiment["challenger"]
    with daemon.daemon.store.cursor() as con:
        steps = ExperimentStore(con).steps(experiment["experiment_id"])
        assert len(steps) == 3
        for step in steps:
            answered, moved = con.execute(
                "SELECT count(DISTINCT unit_id), "
                "count(DISTINCT unit_id) FILTER (WHERE arm = 'challenger') FROM query_events "
                "WHERE task = 'parser' AND ts >= ? AND ts < ? AND ((arm = 'champion' AND "
                "model_version = ?) OR (arm = 'challenger' AND model_version = ?))",
                [step.started_at, step.ended_at, champion, challenger],
            ).fetchone()
            units = unit_metrics(
                con, task="parser", champion=champion, challenger=challenger,
                start=step.started_at, end=step.ended_at, attribution_s=3600,
            )  # fmt: skip
            counted = {arm: units[arm]["queries"].size for arm in units}
            assert counted == {"champion": answered - moved, "challenger": moved}, step
