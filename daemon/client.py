"""The command line's side of talking to the daemon: requests over NATS, or the file offline."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from contextlib import asynccontextmanager
from typing import Any

import duckdb
import nats.errors
from faststream.nats import NatsBroker
from kaizend.core.config import Role, Settings
from kaizend.core.errors import (
    DaemonTimeout,
    DaemonUnavailable,
    KaizendError,
    NotAuthorized,
    StorageError,
)
from kaizend.daemon.credentials import missing_credentials_hint, role_credentials
from kaizend.daemon.runtime import daemon_nats_url
from kaizend.handlers.connection import is_authorization_error, make_broker
from kaizend.handlers.permissions import inbox_prefix
from kaizend.handlers.publish import Outgoing, PublishReport, publish_events
from kaizend.storage.events import stored_summary
from kaizend.storage.readonly import CONNECT_CONFIG, confine, run_read_only


@asynccontextmanager
async def _connected(settings: Settings, url: str, role: Role):  # noqa: ANN202
    """A connection as ``role`` (its credentials and inbox prefix)."""
    broker: NatsBroker = make_broker(
        settings.nats, url, name=f"kaizend-cli-{role}",
        credentials=role_credentials(settings, role), inbox_prefix=inbox_prefix(role),
    )  # fmt: skip
    try:
        await broker.connect()
    except Exception as err:  # noqa: BLE001 - any connection failure means the same here
        if is_authorization_error(err):
            raise NotAuthorized(
                f"NATS at {url} refused the {role} role's credentials: "
                f"{missing_credentials_hint(settings, role)}"
            ) from err
        raise DaemonUnavailable(f"cannot connect to NATS at {url}: {err}") from err
    try:
        yield broker.connection
    finally:
        await broker.stop()


async def request_daemon(
    settings: Settings, what: str, payload: dict[str, Any], *, timeout: float | None = None
) -> dict[str, Any]:
    """Send a request to the running daemon's ``<admin prefix>.<what>`` and decode the reply
    (waiting ``timeout`` seconds, default ``nats.request_timeout_s``)."""
    url = daemon_nats_url(settings)
    if url is None:
        raise DaemonUnavailable(f"no running daemon (no {settings.runtime_file})")
    subject = f"{settings.admin.subject_prefix}.{what}"
    timeout = timeout or settings.nats.request_timeout_s
    async with _connected(settings, url, "operator") as nc:
        try:
            reply = await nc.request(subject, json.dumps(payload).encode(), timeout=timeout)
        except nats.errors.NoRespondersError as err:
            raise DaemonUnavailable(f"no daemon answers on {subject} at {url}") from err
        except (TimeoutError, nats.errors.TimeoutError) as err:
            raise DaemonTimeout(
                f"the daemon did not answer {subject} within {timeout} s;"
                " for a long query raise nats.request_timeout_s (KAIZEND_NATS__REQUEST_TIMEOUT_S)"
            ) from err
    return json.loads(reply.data)


def open_offline(settings: Settings) -> duckdb.DuckDBPyConnection:
    """The database file opened read-only while the daemon is down, confined like the daemon's
    (files only under the Parquet export, no network, no extensions, settings locked)."""
    path = settings.db_path
    if not path.exists():
        raise StorageError(f"no database at {path}: has the daemon ever run with this config?")
    try:
        con = duckdb.connect(str(path), read_only=True, config=CONNECT_CONFIG)
    except duckdb.IOException as err:
        raise StorageError(
            f"{path} is locked by a running process that does not answer requests: {err}"
        ) from err
    confine(con, [settings.export_path])
    return con


def read_status_offline(settings: Settings) -> dict[str, Any]:
    with open_offline(settings) as con:
        return stored_summary(con)


def sql_query(settings: Settings, query: str, max_rows: int | None) -> dict[str, Any]:
    """Answer ``query`` through the daemon if it runs, else from the file, read-only."""
    admin = settings.admin
    # The daemon interrupts a query after admin.sql_timeout_s: wait for it to say so.
    timeout = max(settings.nats.request_timeout_s, admin.sql_timeout_s + 5)
    try:
        reply = asyncio.run(
            request_daemon(settings, "sql", {"sql": query, "max_rows": max_rows}, timeout=timeout)
        )
    except DaemonUnavailable:
        with open_offline(settings) as con:
            limit = min(max_rows or admin.sql_max_rows, admin.sql_max_rows)
            try:
                result = run_read_only(con, query, limit, timeout_s=admin.sql_timeout_s)
            except duckdb.Error as err:
                raise KaizendError(str(err)) from err
            return {
                "columns": result.columns,
                "rows": [list(r) for r in result.rows],
                "truncated": result.truncated,
            }
    if "error" in reply:
        raise KaizendError(reply["error"])
    return reply


def current_champions(settings: Settings) -> dict[str, str]:
    """Each task's champion version id now (none before the daemon's first start)."""
    try:
        result = sql_query(
            settings,
            "SELECT task, version_id FROM current_aliases WHERE alias = 'champion'",
            None,
        )
    except StorageError:
        return {}
    return {str(task): str(version) for task, version in result["rows"]}


async def infer(settings: Settings, task: str, text: str, unit_id: str | None) -> dict[str, Any]:
    """``kaizend infer``: one request to the inference gateway, as a service would send it."""
    from kaizend_client import infer as ask

    url = daemon_nats_url(settings)
    if url is None:
        raise DaemonUnavailable("no NATS to ask: start the daemon or set nats.url")
    async with _connected(settings, url, "service") as nc:
        try:
            return await ask(
                nc, task, text, unit_id=unit_id, timeout=settings.nats.request_timeout_s,
                subject_prefix=settings.gateway.subject_prefix,
            )  # fmt: skip
        except nats.errors.NoRespondersError as err:
            raise DaemonUnavailable(
                f"no inference gateway answers on {settings.gateway.subject_prefix}.{task} at "
                f"{url} (gateway.enabled, or `kaizend gateway`)"
            ) from err


async def publish_file(settings: Settings, events: Sequence[Outgoing]) -> PublishReport:
    """Publish ``events`` with a progress bar; needs a reachable NATS (the daemon's)."""
    from rich.progress import Progress

    url = daemon_nats_url(settings)
    if url is None:
        raise DaemonUnavailable("no NATS to publish to: start the daemon or set nats.url")
    async with _connected(settings, url, "service") as nc:
        with Progress(transient=True) as progress:
            bar = progress.add_task("publishing", total=len(events))
            return await publish_events(
                nc.jetstream(), events, on_progress=lambda n: progress.advance(bar, n)
            )


DRIFT_REQUEST_TIMEOUT_S = 1800.0
"""A report embeds thousands of query texts: minutes on a CPU."""


def drift_now(settings: Settings, task: str | None) -> tuple[list[dict[str, Any]], bool]:
    """Compute a drift report now: ``([{"report", "checks"}], stored)``.

    The running daemon computes, stores and acts on it; when it is down, it is computed here
    from the database file (read-only) and only returned.
    """
    try:
        reply = asyncio.run(
            request_daemon(
                settings,
                "drift",
                {"task": task},
                timeout=max(DRIFT_REQUEST_TIMEOUT_S, settings.nats.request_timeout_s),
            )
        )
    except DaemonUnavailable:
        from kaizend.daemon.drift import report_offline

        with open_offline(settings) as con:
            reports = report_offline(con, settings, [task] if task else list(settings.tasks))
        return [
            {"report": r.report_row("manual"), "checks": r.check_rows()} for r in reports
        ], False
    if "error" in reply:
        raise KaizendError(reply["error"])
    return reply["reports"], True
