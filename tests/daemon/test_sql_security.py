"""Operator SQL against a running daemon, attacked: it cannot write, read files outside the
export, reach the network, load extensions, change settings or outlast its timeout, and a
runaway query delays neither ingestion nor a SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kaizend.daemon.nats_server import EmbeddedNats
from kaizend.handlers.publish import publish_events

from tests.conftest import RunningDaemon, event, eventually, make_settings, outgoing, run_daemon
from tests.daemon.test_cli import cli_env, kaizend, wait_for
from tests.storage.test_readonly import ATTACKS, RUNAWAY

SECRET = "kaizend-test-secret-51d0e2"
STORED = {"query_events": 10, "feedback_events": 10, "correction_events": 0,
          "rejected_events": 0}  # fmt: skip


async def ask(daemon: RunningDaemon, query: str, timeout: float = 30) -> dict:
    reply = await daemon.nc.request(
        "kaizen.admin.sql", json.dumps({"sql": query}).encode(), timeout=timeout
    )
    return json.loads(reply.data)


async def publish(daemon: RunningDaemon, prefix: str, n: int) -> None:
    events = [outgoing("query", event("query", f"{prefix}q{i}", f"{prefix}{i}")) for i in range(n)]
    events += [outgoing("feedback", event("feedback", f"{prefix}f{i}", f"{prefix}{i}"))
               for i in range(n)]  # fmt: skip
    await publish_events(daemon.js, events)


async def test_every_attack_is_refused_or_harmless_and_no_stored_event_changes(
    tmp_path: Path, nats_server: EmbeddedNats, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A secret in the daemon's environment, as a systemd EnvironmentFile would put it there.
    monkeypatch.setenv("NATS_PASSWORD", SECRET)
    settings = make_settings(tmp_path / "data", nats_server.url, storage={"export_interval_s": 0.3})
    (tmp_path / "outside.parquet").write_bytes(b"PAR1 not exported PAR1")
    export = settings.export_path / "feedback_events.parquet"
    async with run_daemon(settings) as daemon:
        await publish(daemon, "a", 10)

        async def stored() -> bool:
            return (await daemon.status())["counts"] == STORED

        await eventually(stored)
        await eventually(export.exists)  # the daemon's own export works, confined as it is

        attacks = {
            **ATTACKS,
            "read_blob of the database file": f"SELECT * FROM read_blob('{settings.db_path}')",
            "glob of the data directory": f"SELECT * FROM glob('{settings.daemon.data_dir}/*')",
            "read_parquet outside the export": f"SELECT * FROM '{tmp_path / 'outside.parquet'}'",
            "EXPORT DATABASE into the export": f"EXPORT DATABASE '{settings.export_path}/x'",
            "COPY into the export": f"COPY query_events TO '{settings.export_path}/x.csv'",
        }
        replies = {}
        for name, attack in attacks.items():
            replies[name] = await ask(daemon, attack)
            assert "error" in replies[name], (name, replies[name])
        # Reads of settings and the catalog are answered, and show no secret.
        for harmless in (
            "SELECT * FROM duckdb_settings()",
            "SELECT * FROM duckdb_databases()",
            "SELECT current_setting('temp_directory'), current_setting('secret_directory')",
        ):
            replies[harmless] = await ask(daemon, harmless)
            assert "rows" in replies[harmless], replies[harmless]
        assert SECRET not in json.dumps(replies)
        settings_shown = dict(
            (await ask(daemon, "SELECT name, value FROM duckdb_settings()"))["rows"]
        )
        assert settings_shown["enable_external_access"] == "false"
        assert settings_shown["lock_configuration"] == "true"

        assert (await daemon.status())["counts"] == STORED
        exported = await ask(daemon, f"SELECT count(*) FROM read_parquet('{export}')")
        assert exported["rows"] == [[10]]
        # Still ingesting and exporting after all of it.
        await publish(daemon, "b", 1)

        async def more() -> bool:
            counts = (await daemon.status())["counts"]
            return counts["query_events"] == 11 and counts["feedback_events"] == 11

        await eventually(more)
    leftovers = [p.name for p in settings.export_path.iterdir() if not p.name.endswith("parquet")]
    assert leftovers == []
    assert not list(Path.cwd().glob("stolen*"))


async def test_a_runaway_query_is_interrupted_while_ingestion_commits(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    timeout_s = 6
    settings = make_settings(
        tmp_path / "data", nats_server.url, admin={"sql_timeout_s": timeout_s, "sql_concurrency": 2}
    )
    async with run_daemon(settings) as daemon:
        started = time.monotonic()
        runaway = asyncio.create_task(ask(daemon, RUNAWAY, timeout=60))
        await asyncio.sleep(0.5)
        assert not runaway.done()
        await publish(daemon, "c", 10)

        async def stored() -> bool:
            return (await daemon.status())["counts"] == STORED

        await eventually(stored)
        # Committed while the runaway query still ran, and another operator is answered.
        assert not runaway.done(), "the events were stored only after the query ended"
        assert await daemon.scalar("SELECT count(*) FROM feedback_events") == 10
        # admin.sql_concurrency (2) runaway queries at once: one more is refused at once.
        second = asyncio.create_task(ask(daemon, RUNAWAY, timeout=60))
        await asyncio.sleep(0.5)
        busy = await ask(daemon, "SELECT 1", timeout=5)
        assert "admin.sql_concurrency" in busy["error"]
        reply = await runaway
        elapsed = time.monotonic() - started
        assert f"interrupted after {timeout_s} s" in reply["error"]
        assert timeout_s - 0.5 < elapsed < timeout_s + 15
        assert f"interrupted after {timeout_s} s" in (await second)["error"]
        assert await daemon.scalar("SELECT count(*) FROM query_events") == 10


def test_sigterm_during_a_runaway_query_stops_the_daemon_promptly(tmp_path: Path) -> None:
    log = tmp_path / "daemon.log"
    # Only the parser in the gateway: building the retriever's index of 40,194 sites would
    # hold the process after its stop for reasons of its own.
    env = cli_env(tmp_path, KAIZEND_ADMIN__SQL_TIMEOUT_S="600", KAIZEND_GATEWAY__TASKS='["parser"]')
    with log.open("w") as err:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "kaizend.daemon", "run"], cwd=tmp_path, env=env, stderr=err
        )
    try:

        def healthy() -> bool:
            assert daemon.poll() is None, log.read_text()
            return kaizend(tmp_path, "check", env=env).returncode == 0

        wait_for(healthy)
        query = subprocess.Popen(
            [sys.executable, "-m", "kaizend.daemon", "sql", RUNAWAY],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

        def query_running() -> bool:
            return "operator query started" in log.read_text()

        wait_for(query_running)
        time.sleep(0.5)
        started = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0, log.read_text()
        assert time.monotonic() - started < 15, log.read_text()
        _, asked = query.communicate(timeout=30)
        assert query.returncode == 1 and "daemon is stopping" in asked
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()

    # The daemon down, the file itself answers: with the same protections and timeout.
    offline = {**env, "KAIZEND_ADMIN__SQL_TIMEOUT_S": "1"}
    # (tests/storage/test_readonly.py attacks the offline path with every query above.)
    refused = kaizend(tmp_path, "sql", ATTACKS["writable CTE with DELETE"], env=offline)
    assert refused.returncode == 1 and "read-only" in refused.stderr, refused.stderr
    slow = kaizend(tmp_path, "sql", RUNAWAY, env=offline)
    assert slow.returncode == 1 and "interrupted after 1 s" in slow.stderr
    answered = kaizend(tmp_path, "sql", "SELECT count(*) AS n FROM model_versions", env=offline)
    assert answered.returncode == 0 and "2" in answered.stdout
