"""The `kaizend` command line against a real `kaizend run` on its embedded nats-server."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FIT_TASKS_ENV

ROOT = Path(__file__).resolve().parents[2]


def kaizend(
    cwd: Path,
    *args: str,
    env: dict[str, str] | None = None,
    check: bool = False,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "kaizend.daemon", *args],
        cwd=cwd,
        env=env or cli_env(cwd),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def cli_env(cwd: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "KAIZEND_DAEMON__DATA_DIR": str(cwd / "var"),
        **FIT_TASKS_ENV,
        "KAIZEND_NATS__EMBEDDED_PORT": "0",  # a free port: tests may run side by side
        "KAIZEND_STORAGE__EXPORT_INTERVAL_S": "0.5",
        "KAIZEND_METRICS__PORT": "0",
        **extra,
    }


def wait_for(predicate, timeout: float = 30.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {predicate.__name__}"
        time.sleep(0.1)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """`kaizend run` with the embedded defaults, in a temporary working directory."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "kaizend.daemon", "run"],
        cwd=tmp_path,
        env=cli_env(tmp_path),
        stderr=subprocess.PIPE,
        text=True,
    )

    def healthy() -> bool:
        assert proc.poll() is None, proc.stderr.read()
        return kaizend(tmp_path, "check").returncode == 0

    wait_for(healthy)
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def write_events(path: Path, n: int) -> None:
    with path.open("w") as out:
        for i in range(n):
            kind = ("query", "feedback", "correction")[i % 3]
            body = {
                "query": {
                    "task": "parser",
                    "text": f"hydro in wales {i}",
                    "model_version": "v0",
                    "output": {"technology": "Hydro"},
                    "latency_ms": 30.0,
                },
                "feedback": {"rating": 1 + i % 5},
                "correction": {"corrected_output": {"technology": "Hydro"}},
            }[kind]
            out.write(
                json.dumps(
                    {
                        "kind": kind,
                        "event_id": f"e{i}",
                        "query_id": f"q{i // 3}",
                        "ts": "2026-11-23T10:00:00Z",
                        **body,
                    }
                )
                + "\n"
            )


def test_sql_works_while_the_daemon_runs_and_refuses_writes(
    tmp_path: Path, daemon: subprocess.Popen[str]
) -> None:
    write_events(tmp_path / "events.jsonl", 300)
    published = kaizend(tmp_path, "publish", "events.jsonl", check=True)
    assert "published 300 events" in published.stdout

    def stored() -> bool:
        out = kaizend(
            tmp_path,
            "sql",
            "SELECT count(*) AS n FROM feedback_events",
            "--format",
            "json",
            check=True,
        ).stdout
        return json.loads(out) == {"n": 100}

    wait_for(stored)
    csv_out = kaizend(
        tmp_path,
        "sql",
        "SELECT rating, count(*) AS n FROM feedback_events GROUP BY ALL ORDER BY rating",
        "--format",
        "csv",
        check=True,
    ).stdout
    assert csv_out.splitlines() == ["rating,n", "1,20", "2,20", "3,20", "4,20", "5,20"]
    table = kaizend(
        tmp_path, "sql", "SELECT task, count(*) AS n FROM query_events GROUP BY task", check=True
    ).stdout
    assert "parser" in table and "100" in table

    refused = kaizend(tmp_path, "sql", "DELETE FROM feedback_events")
    assert refused.returncode == 1
    assert "read-only" in refused.stderr and "DELETE" in refused.stderr
    again = kaizend(tmp_path, "sql", "SELECT count(*) FROM feedback_events", "--format", "csv")
    assert again.stdout.splitlines()[1] == "100"

    # Version 0 of each task is registered as champion on first start and serves by default.
    champion = kaizend(
        tmp_path,
        "sql",
        "SELECT version_id, status FROM model_versions ORDER BY version_id",
        "--format",
        "csv",
        check=True,
    ).stdout
    assert champion.splitlines()[1:] == ["parser-v0,champion", "retriever-v0,champion"]
    listed = kaizend(tmp_path, "models", "list", "--format", "json", check=True).stdout
    versions = [json.loads(line) for line in listed.splitlines()]
    assert [(v["version_id"], v["status"], v["base_model"]) for v in versions] == [
        ("parser-v0", "champion", "rules"),
        ("retriever-v0", "champion", "base"),
    ]
    shown = kaizend(tmp_path, "models", "show", "parser-v0", check=True).stdout
    assert "initial champion: the built-in 'rules'" in shown and "alias history" in shown
    missing = kaizend(tmp_path, "models", "show", "parser-v9")
    assert missing.returncode == 1 and "kaizend models list" in missing.stderr
    parsed = subprocess.run(
        [sys.executable, "-m", "kaizend.daemon", "predict", "parser"],
        cwd=tmp_path,
        env=cli_env(tmp_path),
        input="wind sites over 100kw in berkshire\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    answer = json.loads(parsed.stdout)
    assert answer["output"]["postcode_patterns"] == ["RG", "SL"]
    assert answer["fallback_used"] is False and answer["latency_ms"] > 0

    status = json.loads(kaizend(tmp_path, "status", "--json", check=True).stdout)
    assert status["counts"]["query_events"] == 100 and status["healthy"] is True
    assert status["lag"]["num_pending"] == 0

    # The periodic Parquet export, readable while the daemon holds the database.
    export = tmp_path / "var" / "export" / "feedback_events.parquet"
    wait_for(export.exists)

    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(30) == 0
    # Daemon down: the file answers directly, and the health check fails.
    offline = kaizend(tmp_path, "sql", "SELECT count(*) FROM query_events", "--format", "csv")
    assert offline.stdout.splitlines()[1] == "100"
    down = kaizend(tmp_path, "check")
    assert down.returncode == 1 and "UNHEALTHY" in down.stdout


def test_kill_9_takes_the_embedded_nats_server_with_it(
    tmp_path: Path, daemon: subprocess.Popen[str]
) -> None:
    url = json.loads((tmp_path / "var" / "run" / "daemon.json").read_text())["nats_url"]
    host, port = url.removeprefix("nats://").split(":")
    socket.create_connection((host, int(port)), timeout=2).close()
    daemon.send_signal(signal.SIGKILL)
    daemon.wait()

    def port_closed() -> bool:
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
        except OSError:
            return True
        return False

    wait_for(port_closed, timeout=10)
    # A stale runtime file from the killed daemon is not mistaken for a running one.
    assert kaizend(tmp_path, "check").returncode == 1


def test_version_and_configuration_errors(tmp_path: Path) -> None:
    assert "kaizend, version" in kaizend(tmp_path, "--version", check=True).stdout
    bad = kaizend(tmp_path, "status", env=cli_env(tmp_path, KAIZEND_INGEST__BATCH_SIZE="0"))
    assert bad.returncode == 2
    assert "ingest.batch_size" in bad.stderr
    missing = kaizend(tmp_path, "--config", "nope.toml", "status")
    assert missing.returncode == 2 and "not found" in missing.stderr


def test_the_embedded_server_asks_who_is_asking(
    tmp_path: Path, daemon: subprocess.Popen[str]
) -> None:
    """`kaizend run` starts its nats-server with authorization: the commands above worked
    with the generated credentials; without them nothing gets in."""
    import asyncio

    import nats

    url = json.loads((tmp_path / "var" / "run" / "daemon.json").read_text())["nats_url"]
    with pytest.raises(Exception, match="Authorization Violation"):  # noqa: PT011 - nats-py's
        asyncio.run(nats.connect(url, allow_reconnect=False, connect_timeout=2))
    # The same daemon, addressed as an external cluster without credentials.
    outsider = kaizend(
        tmp_path, "sql", "SELECT count(*) FROM query_events",
        env=cli_env(tmp_path, KAIZEND_NATS__URL=url),
    )  # fmt: skip
    assert outsider.returncode == 1 and "refused the operator role" in outsider.stderr
    assert "nats.roles.operator" in outsider.stderr

    checked = kaizend(tmp_path, "security", "check", "--json")
    assert checked.returncode == 0, checked.stdout
    results = [json.loads(line) for line in checked.stdout.splitlines()]
    allowed = {(r["role"], r["what"]) for r in results if r["result"] == "allowed"}
    assert ("operator", "send admin requests and SQL") in allowed
    assert ("service", "send admin requests and SQL") not in allowed
    assert ("service", "write the routing bucket") not in allowed
    assert ("worker", "queue training jobs") not in allowed

    snippet = kaizend(tmp_path, "security", "permissions", "--role", "service", check=True)
    assert '"user": "kaizend-service"' in snippet.stdout and "kaizen.events.>" in snippet.stdout
    assert "kaizend-operator" not in snippet.stdout
    secrets = tmp_path / "var" / "secrets"
    password = json.loads((secrets / "nats-service.json").read_text())["password"]
    daemon.send_signal(signal.SIGTERM)
    _, log = daemon.communicate(timeout=30)
    assert password not in log  # no secret in a log line
