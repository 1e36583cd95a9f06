"""The runtime file: how command-line clients find the running daemon.

The daemon writes ``<data_dir>/run/daemon.json`` (its pid and NATS URL) once it is ready and
removes it on a clean exit. A file left by a killed daemon is recognised by its dead pid.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats.errors
from kaizend.core.config import Role, Settings


def write_runtime(settings: Settings, nats_url: str) -> None:
    path = settings.runtime_file
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps({"pid": os.getpid(), "nats_url": nats_url}))
    os.replace(partial, path)


def remove_runtime(settings: Settings) -> None:
    settings.runtime_file.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user (the systemd unit's)
        return True
    return True


def daemon_nats_url(settings: Settings) -> str | None:
    """The URL to reach the daemon at: the configured one, else the running daemon's own."""
    if settings.nats.url:
        return settings.nats.url
    path: Path = settings.runtime_file
    try:
        info = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return info["nats_url"] if _alive(int(info["pid"])) else None


async def connect_beside_daemon(
    settings: Settings, name: str, purpose: str, role: Role
) -> Any | None:
    """A started FastStream NATS broker on the daemon's NATS for a helper process (``kaizend
    worker``, ``kaizend gateway``) with ``role``'s credentials, reconnecting forever; None,
    logged, when there is none. SIGTERM and SIGINT are the caller's to handle
    (`on_stop_signals`)."""
    from kaizend.daemon.credentials import missing_credentials_hint, role_credentials
    from kaizend.handlers.connection import make_broker
    from kaizend.handlers.permissions import inbox_prefix

    url = daemon_nats_url(settings)
    if url is None:
        logging.getLogger(__name__).error(
            "no NATS to %s: set nats.url, or run it beside a running daemon", purpose
        )
        return None
    credentials = role_credentials(settings, role)
    broker = make_broker(
        settings.nats, url, name=name, reconnect_forever=True, credentials=credentials,
        inbox_prefix=inbox_prefix(role),
    )  # fmt: skip
    try:
        await broker.connect()
    except nats.errors.Error as err:
        logging.getLogger(__name__).error(
            "cannot connect to NATS at %s as the %s role: %s; %s",
            url, role, err, missing_credentials_hint(settings, role),
        )  # fmt: skip
        return None
    return broker


def on_stop_signals(stop: Callable[[], Any]) -> None:
    """Call ``stop`` on SIGTERM or SIGINT (in the running event loop)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
