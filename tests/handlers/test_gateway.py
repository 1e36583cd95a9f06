"""The inference gateway inside a running daemon: real NATS, routing bucket, DuckDB, models.

Champion: the rule parser (version 0); challenger: a tiny LoRA version trained in the session.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
from kaizend.core import metrics
from kaizend.handlers.routing import Routing, put_routing, routing_bucket
from kaizend.models.fit import rules
from kaizend.models.fit.schema import to_compact_dict
from kaizend_client import InferenceFailed, infer

from tests.conftest import MEMORISE, RunningDaemon, eventually, make_settings, rows, run_daemon

TEXTS = [
    MEMORISE["text"], "solar farms in cornwall", "hydro over 1MW in wales",
    "anaerobic digestion sites in yorkshire", "wind turbines under 50kw near taunton",
]  # fmt: skip


@pytest.fixture
async def gateway_daemon(tmp_path: Path, nats_server: Any) -> Any:
    settings = make_settings(
        tmp_path / "data", nats_server.url, gateway={"batch_wait_ms": 50.0, "load_wait_s": 20}
    )
    async with run_daemon(settings) as daemon:
        yield daemon


async def route(daemon: RunningDaemon, **fields: Any) -> Routing:
    """Write the parser's routing entry and wait until the gateway's producer has it."""
    entry = Routing(task="parser", champion="parser-v0", **fields)
    await put_routing(await routing_bucket(daemon.js), entry)
    gateway = daemon.daemon.gateway
    await eventually(lambda: gateway.producer.routes.get("parser") == entry)
    return entry


def in_runs(daemon: RunningDaemon, version: Any) -> str:
    """A copy of ``version`` under the daemon's runs: the gateway loads only from there."""
    target = daemon.daemon.settings.runs_path / "test-run" / "version"
    if not target.exists():
        shutil.copytree(version.path, target)
    return str(target)


async def stored(daemon: RunningDaemon, count: int, where: str = "true") -> list[dict]:
    query = f"SELECT * FROM query_events WHERE {where} ORDER BY query_id"

    async def arrived() -> bool:
        return len(await rows(daemon, query)) >= count

    await eventually(arrived, timeout=30)
    return await rows(daemon, query)


async def test_requests_are_routed_answered_in_batches_and_recorded(
    gateway_daemon: RunningDaemon, memorised: Any
) -> None:
    entry = await route(
        gateway_daemon, challenger="parser-v1", challenger_weight=0.5, salt="s1",
        challenger_artifact=in_runs(gateway_daemon, memorised),
    )  # fmt: skip
    served = metrics.SERVING_REQUESTS.labels("parser", "parser-v1")
    served_before = served._value.get()  # the registry is the process's: count the difference
    units = [f"user-{i}" for i in range(40)]
    replies = await asyncio.gather(*(
        infer(gateway_daemon.nc, "parser", TEXTS[i % len(TEXTS)], unit_id=unit, timeout=30)
        for i, unit in enumerate(units)
    ))  # fmt: skip
    arms = {reply["arm"] for reply in replies}
    assert arms == {"champion", "challenger"}
    for i, (unit, reply) in enumerate(zip(units, replies, strict=True)):
        assert (reply["arm"], reply["version"]) == entry.assign(unit)
        if reply["arm"] == "champion":
            assert reply["output"] == to_compact_dict(rules.parse(TEXTS[i % len(TEXTS)]))
            assert reply["fallback_used"] is False
    # The memorised question comes out of the model itself, for a challenger unit.
    challenger_unit = next(u for u in units if entry.assign(u)[0] == "challenger")
    again = await infer(gateway_daemon.nc, "parser", MEMORISE["text"], unit_id=challenger_unit)
    assert (again["arm"], again["version"]) == ("challenger", "parser-v1")  # sticky
    assert (again["output"], again["fallback_used"]) == (MEMORISE["expected"], False)

    challenger_replies = sum(r["arm"] == "challenger" for r in [*replies, again])
    assert served._value.get() - served_before == challenger_replies
    stats = gateway_daemon.daemon.gateway.stats()["parser"]
    assert stats["requests"] == 41 and stats["batches"] < 41  # requests met in batches
    assert set(stats["loaded"]) == {"parser-v0", "parser-v1"}

    events = {row["query_id"]: row for row in await stored(gateway_daemon, 41)}
    for reply in [*replies, again]:
        row = events[reply["query_id"]]
        assert (row["arm"], row["model_version"], row["fallback_used"]) == (
            reply["arm"], reply["version"], reply["fallback_used"],
        )  # fmt: skip
        assert row["service"] == "gateway" and row["error"] is None
        assert 0 < row["latency_ms"] and row["unit_id"].startswith("user-")


async def test_bad_requests_and_unloadable_versions_are_clear_errors(
    gateway_daemon: RunningDaemon,
) -> None:
    nc = gateway_daemon.nc
    reply = await nc.request("kaizen.infer.parser", b"not json", timeout=10)
    assert reply.headers["Nats-Service-Error-Code"] == "400"
    with pytest.raises(InferenceFailed, match="400.*text") as missing:
        await infer(nc, "parser", "", unit_id="u")
    assert missing.value.code == "400"

    await route(
        gateway_daemon, challenger="parser-v9", challenger_weight=1.0, salt="s2",
        challenger_artifact=str(gateway_daemon.daemon.settings.runs_path / "gone"),
    )  # fmt: skip
    with pytest.raises(InferenceFailed, match="503.*parser-v9 cannot be loaded") as failed:
        await infer(nc, "parser", "wind in devon", unit_id="u1")
    assert (failed.value.reply["arm"], failed.value.reply["version"]) == (
        "challenger", "parser-v9",
    )  # fmt: skip
    # Recorded against the challenger, so the error-rate guardrail sees it.
    (row,) = await stored(gateway_daemon, 1, "model_version = 'parser-v9'")
    assert row["arm"] == "challenger" and "cannot be loaded" in row["error"]
    assert metrics.SERVING_ERRORS.labels("parser", "parser-v9", "503")._value.get() >= 1


async def test_shadow_mode_runs_the_challenger_unanswered_on_champion_traffic(
    gateway_daemon: RunningDaemon, memorised: Any
) -> None:
    await route(
        gateway_daemon, challenger="parser-v1", challenger_weight=0.0, salt="s3", shadow=True,
        challenger_artifact=in_runs(gateway_daemon, memorised),
    )  # fmt: skip
    replies = [
        await infer(gateway_daemon.nc, "parser", text, unit_id=f"shadow-user-{i}", timeout=30)
        for i, text in enumerate(TEXTS)
    ]
    assert {(r["arm"], r["version"]) for r in replies} == {("champion", "parser-v0")}
    shadows = await stored(gateway_daemon, len(TEXTS), "arm = 'shadow'")
    assert {row["query_id"] for row in shadows} == {f"shadow:{r['query_id']}" for r in replies}
    assert {row["model_version"] for row in shadows} == {"parser-v1"}
    compared = await rows(
        gateway_daemon, "SELECT * FROM shadow_comparisons ORDER BY query_id"
    )  # the view joins each shadow answer to the champion's
    assert sorted(row["query_id"] for row in compared) == sorted(r["query_id"] for r in replies)
    memorised_row = next(row for row in compared if row["text"] == MEMORISE["text"])
    assert memorised_row["same_output"] is True  # both parse it right
