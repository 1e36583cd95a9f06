"""Who is asking: the daemon on its embedded nats-server with authorization, attacked.

Each role connects with the credentials the daemon generated under its data directory; a
client without them, or with the service role's, tries to reach admin, SQL, jobs and
results. A worker's forged result and a job naming a directory elsewhere are refused.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
from kaizend.core.config import ROLES, NatsCredentials, Role, Settings
from kaizend.core.errors import EmbeddedNatsError, PathOutsideRoot
from kaizend.daemon.app import Daemon
from kaizend.daemon.credentials import credentials_file, role_credentials
from kaizend.daemon.nats_server import EmbeddedNats
from kaizend.daemon.runtime import daemon_nats_url
from kaizend.daemon.security import check_role
from kaizend.daemon.serving import predictor_loader
from kaizend.handlers.connection import connect_options
from kaizend.handlers.jobs import JobResult, result_subject
from kaizend.handlers.permissions import inbox_prefix, role_permissions, subject_matches
from kaizend.handlers.publish import Outgoing, publish_events
from kaizend_client import Producer
from pydantic import SecretStr

from tests.conftest import event, eventually, make_settings, outgoing


def embedded_settings(data_dir: Path, **sections: dict[str, Any]) -> Settings:
    """The defaults a user gets from `make run`: no nats.url, so the embedded server with
    authorization, on a free port."""
    sections.setdefault("nats", {}).update({"embedded_port": 0})
    return make_settings(data_dir, "", **sections)


class Clients:
    """Connections to the running daemon's embedded server, one per role asked for."""

    def __init__(self, settings: Settings, url: str) -> None:
        self.settings = settings
        self.url = url
        self.violations: list[str] = []
        self._open: list[nats.NATS] = []

    async def connect(self, role: Role | None) -> nats.NATS:
        async def on_error(err: Exception) -> None:
            self.violations.append(str(err))

        credentials = role_credentials(self.settings, role) if role else None
        nc = await nats.connect(
            self.url, error_cb=on_error,
            **connect_options(self.settings.nats, credentials, inbox_prefix(role or "service")),
        )  # fmt: skip
        self._open.append(nc)
        return nc

    async def sql(self, query: str) -> dict[str, Any]:
        nc = await self.connect("operator")
        reply = await nc.request(
            f"{self.settings.admin.subject_prefix}.sql", json.dumps({"sql": query}).encode(), 10
        )
        return json.loads(reply.data)

    async def scalar(self, query: str) -> Any:
        result = await self.sql(query)
        assert "error" not in result, result
        return result["rows"][0][0]

    async def close(self) -> None:
        for nc in self._open:
            await nc.close()


@asynccontextmanager
async def embedded_daemon(settings: Settings) -> AsyncIterator[Clients]:
    """The daemon in-process on its own embedded, authorizing nats-server."""
    daemon = Daemon(settings)
    task = asyncio.create_task(daemon.run())

    def ready() -> bool:
        if task.done():
            task.result()
        return daemon_nats_url(settings) is not None

    await eventually(ready, timeout=60)
    clients = Clients(settings, daemon_nats_url(settings) or "")
    try:
        yield clients
    finally:
        await clients.close()
        daemon.request_stop("test")
        assert await asyncio.wait_for(task, 30) == 0


def query_event(i: int) -> Outgoing:
    return outgoing("query", event("query", f"e{i}", f"q{i}"))


async def refused(nc: nats.NATS, subject: str, payload: bytes = b"{}") -> bool:
    """Whether a request on ``subject`` goes unanswered (the server dropped it)."""
    try:
        await nc.request(subject, payload, timeout=1.5)
    except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
        return True
    return False


async def test_only_the_operator_reaches_admin_and_sql_and_the_service_publishes_and_asks(
    tmp_path: Path,
) -> None:
    settings = embedded_settings(tmp_path / "data", training={"local_worker": False})
    async with embedded_daemon(settings) as clients:
        # Credentials: owner-only files in an owner-only directory, never in a repr.
        assert stat.S_IMODE(settings.secrets_path.stat().st_mode) == 0o700
        for role in ROLES:
            path = credentials_file(settings, role)
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            password = json.loads(path.read_text())["password"]
            assert password not in repr(role_credentials(settings, role))
        conf = settings.path(Path("nats")) / "nats-server.conf"
        assert stat.S_IMODE(conf.stat().st_mode) == 0o600

        # No credentials: no connection at all.
        with pytest.raises((nats.errors.Error, OSError)):
            await nats.connect(clients.url, allow_reconnect=False, connect_timeout=2)

        service = await clients.connect("service")
        admin = settings.admin.subject_prefix
        attempts = [
            refused(service, f"{admin}.{what}", b'{"task": "parser", "version": "parser-v0"}')
            for what in ("status", "promote", "challenge", "rollback", "train", "drift")
        ]
        attempts.append(refused(service, f"{admin}.sql", b'{"sql": "DELETE FROM query_events"}'))
        assert all(await asyncio.gather(*attempts))
        # Jobs and results: neither publish (the JetStream ack never comes) nor consume.
        js = service.jetstream(timeout=1.5)
        with pytest.raises(nats.errors.TimeoutError):
            await js.publish(settings.training.subject_prefix + ".train", b"{}")
        with pytest.raises(nats.errors.TimeoutError):
            await js.publish(result_subject(settings.training), b"{}")
        with pytest.raises(nats.errors.TimeoutError):
            await js.pull_subscribe(
                settings.training.subject_prefix + ".train", durable="kaizen-workers",
                stream=settings.training.stream,
            )  # fmt: skip
        routing = await js.key_value("kaizen_routing")  # readable, for client-side routing
        assert (await routing.get("parser")).value
        producer = await Producer.start(service, service="test")  # watches the bucket
        assert producer.routes["parser"].champion == "parser-v0"
        await producer.stop()
        with pytest.raises(nats.errors.TimeoutError):
            await routing.put("parser", b'{"task": "parser", "champion": "parser-v666"}')
        # ... nor listen in on the operator's replies or impersonate the daemon.
        overheard: list[bytes] = []

        async def overhear(msg: Any) -> None:
            overheard.append(msg.data)

        await service.subscribe("_INBOX.>", cb=overhear)
        await service.subscribe(f"{admin}.>", cb=overhear)
        await service.flush()

        # The service's own business: events are stored, the gateway answers.
        report = await publish_events(service.jetstream(), [query_event(i) for i in range(20)])
        assert report.published == 20

        async def stored() -> bool:
            return await clients.scalar("SELECT count(*) FROM query_events") >= 20

        await eventually(stored, timeout=30)
        reply = await service.request(
            f"{settings.gateway.subject_prefix}.parser",
            json.dumps({"text": "wind farms in wales", "unit_id": "u1"}).encode(),
            timeout=30,
        )
        assert json.loads(reply.data)["output"]["technology"] == "Wind"
        assert await clients.scalar("SELECT count(*) FROM training_jobs") == 0
        assert not any(b"query_events" in data or b"rows" in data for data in overheard)
        assert any("permissions violation" in v.lower() for v in clients.violations)

        # The server enforces exactly what `kaizend security permissions` documents.
        for role in ROLES:
            results = await check_role(settings, role, url=clients.url)
            wrong = [(r.probe.what, r.verdict) for r in results if r.allowed != r.expected]
            assert not wrong, (role, wrong)
            allowed = {r.probe.what for r in results if r.allowed}
            if role == "service":
                assert allowed == {
                    "publish events", "ask the inference gateway", "read the routing bucket",
                }  # fmt: skip
            if role == "worker":
                assert "send admin requests and SQL" not in allowed
                assert {"take jobs", "publish training results"} <= allowed


async def test_a_forged_result_is_refused_logged_and_registers_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = embedded_settings(tmp_path / "data", training={"local_worker": False})
    evil = tmp_path / "evil"
    evil.mkdir()
    async with embedded_daemon(settings) as clients:
        operator = await clients.connect("operator")
        reply = await operator.request(
            f"{settings.admin.subject_prefix}.train",
            json.dumps({"task": "parser", "reason": "test"}).encode(), timeout=30,
        )  # fmt: skip
        job = json.loads(reply.data)["job"]
        # A symlink inside the run directory that leads out of it counts as outside.
        Path(job["run_dir"], "version").symlink_to(evil, target_is_directory=True)
        snapshot = job["snapshot"]
        worker = await clients.connect("worker")
        js = worker.jetstream()
        forged = [
            ("elsewhere", job["job_id"], 1, snapshot, str(evil)),
            ("symlinked", job["job_id"], 1, snapshot, str(Path(job["run_dir"], "version"))),
            ("wrong attempt", job["job_id"], 2, snapshot, f"{job['run_dir']}/version"),
            ("wrong snapshot", job["job_id"], 1, {"query_events": 999}, job["run_dir"]),
            ("unknown job", "parser-made-up.1", 1, snapshot, f"{job['run_dir']}/version"),
        ]
        caplog.set_level(logging.WARNING, logger="kaizend.daemon.orchestrator")
        for name, job_id, attempt, snap, version_dir in forged:
            result = JobResult(
                job_id=job_id, task="parser", worker="mallory", succeeded=True,
                attempt=attempt, snapshot=snap,
                result={"version_dir": version_dir, "reports": {}, "training": {}},
            )  # fmt: skip
            await js.publish(
                result_subject(settings.training), result.model_dump_json().encode(),
                headers={"Nats-Msg-Id": name},
            )  # fmt: skip

        def refusals() -> list[logging.LogRecord]:
            return [
                r for r in caplog.records
                if r.name == "kaizend.daemon.orchestrator" and "refused" in r.getMessage()
            ]  # fmt: skip

        await eventually(lambda: len(refusals()) >= len(forged), timeout=30)
        assert {r.levelno for r in refusals()} == {logging.WARNING}
        messages = [r.getMessage() for r in refusals()]
        assert sum(job["job_id"] in m for m in messages) == 4, messages
        assert any("does not lie under" in m for m in messages)
        assert any("parser-made-up.1" in m for m in messages)
        assert await clients.scalar("SELECT count(*) FROM model_versions") == 2  # the v0s
        assert await clients.scalar(
            f"SELECT state FROM training_jobs WHERE job_id = '{job['job_id']}'"
        ) == "queued"  # fmt: skip


async def test_a_worker_refuses_a_job_whose_run_directory_lies_elsewhere(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    from tests.daemon.test_worker import run_one_job

    elsewhere = tmp_path / "elsewhere"
    result = await run_one_job(tmp_path, nats_server.url, "", timeout_s=60, run_dir=elsewhere)
    assert not result.succeeded and not result.retryable
    assert "job.run_dir" in (result.error or "") and "does not lie under" in result.error
    assert not any(elsewhere.iterdir())  # nothing written, nothing started

    # A run directory under the runs that is a symlink to elsewhere is elsewhere too.
    runs = make_settings(tmp_path / "data", nats_server.url).runs_path
    runs.mkdir(parents=True, exist_ok=True)
    (runs / "sneaky").symlink_to(elsewhere, target_is_directory=True)
    sneaky = await run_one_job(
        tmp_path, nats_server.url, "", timeout_s=60, run_dir=runs / "sneaky", job="parser-b.1"
    )
    assert not sneaky.succeeded and "job.run_dir" in (sneaky.error or "")
    assert not any(elsewhere.iterdir())


def test_the_gateway_loads_no_version_from_outside_the_runs(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", "nats://127.0.0.1:1")
    with pytest.raises(PathOutsideRoot, match="routing parser-v7"):
        predictor_loader(settings)("parser", "parser-v7", str(tmp_path / "planted"))


def test_an_unauthorized_embedded_server_off_loopback_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EmbeddedNatsError, match="nats.embedded_auth"):
        EmbeddedNats(tmp_path / "nats", host="0.0.0.0")


def test_permissions_follow_renamed_subjects(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, "", stream={"subject_prefix": "acme.ev"}, admin={"subject_prefix": "acme.ctl"}
    )
    perms = role_permissions(settings)
    assert perms["service"].allows("publish", "acme.ev.query")
    assert not perms["service"].allows("publish", "kaizen.events.query")
    assert perms["operator"].allows("publish", "acme.ctl.sql")
    assert not perms["service"].allows("publish", "acme.ctl.sql")
    assert subject_matches("a.*.c", "a.b.c") and not subject_matches("a.>", "a")


def test_docs_show_every_permission_the_code_grants() -> None:
    """docs/security.md lists, per role, exactly the subjects `role_permissions` grants."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    sections = doc.split("\n### ")[1:]
    for role, perms in role_permissions(Settings()).items():
        (section,) = [s for s in sections if s.startswith(f"{role}\n")]
        rows = [line for line in section.splitlines() if line.startswith(("| publish", "| sub"))]
        shown = set(re.findall(r"`([^`]+)`", "\n".join(rows)))
        assert shown == {*perms.publish, *perms.subscribe, *perms.subscribe_deny}, role


def test_a_role_authenticates_one_way_and_its_secret_stays_hidden() -> None:
    with pytest.raises(ValueError, match="set one of"):
        NatsCredentials(user="u", token=SecretStr("t"))
    with pytest.raises(ValueError, match="password needs a user"):
        NatsCredentials(password=SecretStr("p"))
    settings = Settings(
        nats={"url": "nats://x:4222", "user": "everyone", "password": "shared-secret",
              "roles": {"operator": {"user": "op", "password": "op-secret"}}},
    )  # fmt: skip
    assert role_credentials(settings, "operator").user == "op"
    assert role_credentials(settings, "worker").user == "everyone"  # the top-level fallback
    assert "secret" not in repr(settings) and "secret" not in str(settings.nats)
