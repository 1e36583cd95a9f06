"""The TypeScript producer (clients/typescript) and the AsyncAPI document under Node.js: the
shared routing vectors, the JSON Schemas in ajv, the AsyncAPI project's own parser, and the
example publishing to a running daemon, which stores its events."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

from kaizend.core.config import Settings
from kaizend.handlers.routing import Routing, put_routing, routing_bucket

from tests.clients.conftest import NodePackage
from tests.conftest import eventually, rows, run_daemon


def test_node_tests_pass_the_shared_vectors_and_schemas(typescript: NodePackage) -> None:
    done = subprocess.run([typescript.node, "--test", "dist/"], cwd=typescript.root,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "# fail 0" in done.stdout
    vectors = json.loads((typescript.root / "../../schemas/routing-vectors.json").read_text())
    assert f"routing vectors passed: {len(vectors['vectors'])}" in done.stdout


def test_the_asyncapi_document_passes_the_asyncapi_parser(typescript: NodePackage) -> None:
    done = subprocess.run(
        [typescript.node, "tools/validate-asyncapi.mjs", "../../schemas/asyncapi.json"],
        cwd=typescript.root, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["asyncapi"] == "3.0.0"
    assert report["operations"] == 13
    # Neither errors nor warnings; the one remark allowed is that 3.1 exists.
    assert [d for d in report["diagnostics"] if d["code"] != "asyncapi-latest-version"] == []


def test_the_parser_catches_a_broken_document(typescript: NodePackage, tmp_path: Path) -> None:
    doc = json.loads((typescript.root / "../../schemas/asyncapi.json").read_text())
    # An operation's message that is not in its channel.
    doc["operations"]["answerInference"]["messages"] = [
        {"$ref": "#/channels/routing/messages/routingEntry"}
    ]
    broken = tmp_path / "asyncapi.json"
    broken.write_text(json.dumps(doc))
    done = subprocess.run(
        [typescript.node, "tools/validate-asyncapi.mjs", str(broken)],
        cwd=typescript.root, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert any(d["severity"] == "error" for d in json.loads(done.stdout)["diagnostics"])


async def test_the_typescript_producer_routes_publishes_and_is_stored(
    typescript: NodePackage, settings: Settings
) -> None:
    entry = Routing(task="parser", champion="parser-v0", challenger="parser-v7",
                    challenger_weight=0.5, salt="ts-example-salt")  # fmt: skip
    units = [f"user-{i}" for i in range(12)]
    async with run_daemon(settings) as daemon:
        # A bucket of its own: the daemon's experiment loop owns kaizen_routing.
        kv = await routing_bucket(daemon.js, "ts_routing", create=True)
        await put_routing(kv, entry)
        proc = await asyncio.create_subprocess_exec(
            typescript.node, "dist/example.js", *units, cwd=typescript.root,
            env={**os.environ, "NATS_URL": settings.nats.url, "ROUTING_BUCKET": "ts_routing"},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, err.decode()
        published = [json.loads(line) for line in out.decode().splitlines()]
        assert [p["unitId"] for p in published] == units
        # The same arm as the Python client for every unit, and both arms among them.
        for p in published:
            assert (p["arm"], p["version"]) == entry.assign(p["unitId"]), p
        assert {p["arm"] for p in published} == {"champion", "challenger"}

        async def all_stored() -> bool:
            counts = await rows(daemon, """
                SELECT (SELECT count(*) FROM query_events WHERE service = 'ts-example') AS q,
                       (SELECT count(*) FROM feedback_events) AS f,
                       (SELECT count(*) FROM correction_events) AS c""")  # fmt: skip
            return counts[0] == {"q": 12, "f": 12, "c": 12}

        await eventually(all_stored, timeout=60)
        stored = {
            r["query_id"]: r
            for r in await rows(
                daemon,
                "SELECT query_id, unit_id, arm, model_version, schema_version FROM query_events",
            )  # fmt: skip
        }
        for p in published:
            row = stored[p["queryId"]]
            assert (row["unit_id"], row["arm"], row["model_version"]) == (
                p["unitId"], p["arm"], p["version"]
            )  # fmt: skip
            assert row["schema_version"] == 1
        assert await daemon.scalar("SELECT count(*) FROM rejected_events") == 0
        outcomes = await rows(daemon, "SELECT n_feedback, n_corrections, mean_rating FROM "
                              "query_outcomes WHERE model_version LIKE 'parser-v%'")  # fmt: skip
        assert len(outcomes) == 12
        assert all((o["n_feedback"], o["n_corrections"], o["mean_rating"]) == (1, 1, 4.0)
                   for o in outcomes)  # fmt: skip
