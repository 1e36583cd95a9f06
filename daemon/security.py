"""``kaizend security check``: which of kaizend's subjects the current credentials reach.

Each probe (`handlers.permissions.probes`) is tried with no effect on the system: a publish
is a request carrying ``Nats-Expected-Stream: kaizend-security-check``, so a stream that
captures the subject refuses to store it, and probe subjects nothing subscribes to are
answered by the server's no-responders status; any answer means the server let it through.
A subscription is made and dropped at once. The server reports a refusal asynchronously, as
a permissions violation naming the subject, on the connection's error callback.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Literal

import nats
import nats.errors
from kaizend.core.config import Role, Settings
from kaizend.core.errors import DaemonUnavailable, NotAuthorized
from kaizend.daemon.credentials import missing_credentials_hint, role_credentials
from kaizend.daemon.runtime import daemon_nats_url
from kaizend.handlers.connection import connect_options, is_authorization_error
from kaizend.handlers.permissions import PROBE_TOKEN, Probe, inbox_prefix, probes, role_permissions

PROBE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class ProbeResult:
    probe: Probe
    allowed: bool
    expected: bool
    """What `role_permissions` gives the role: a difference is a misconfigured cluster."""

    @property
    def verdict(self) -> Literal["allowed", "denied"]:
        return "allowed" if self.allowed else "denied"


async def check_role(
    settings: Settings, role: Role, *, url: str | None = None
) -> list[ProbeResult]:
    """Try every probe as ``role`` on ``url`` (default: the daemon's NATS)."""
    url = url or daemon_nats_url(settings)
    if url is None:
        raise DaemonUnavailable("no NATS to check: start the daemon or set nats.url")
    refused: set[str] = set()

    async def on_error(err: Exception) -> None:
        text = str(err).lower()  # nats-py lowers the server's message, subject included
        if "permissions violation" in text:
            refused.add(text.rsplit(" ", 1)[-1].strip("\"'"))

    try:
        nc = await nats.connect(
            url, error_cb=on_error, name=f"kaizend-security-check-{role}", allow_reconnect=False,
            **connect_options(settings.nats, role_credentials(settings, role), inbox_prefix(role)),
        )  # fmt: skip
    except nats.errors.Error as err:
        if is_authorization_error(err):
            raise NotAuthorized(
                f"NATS at {url} refused the {role} role: {missing_credentials_hint(settings, role)}"
            ) from err
        raise DaemonUnavailable(f"cannot connect to NATS at {url}: {err}") from err
    try:
        answered = await asyncio.gather(*(_try(nc, probe) for probe in probes(settings)))
        await nc.flush(timeout=PROBE_TIMEOUT_S)
        await asyncio.sleep(0.2)  # violations of the last subscriptions are still on the way
    finally:
        await nc.close()
    expected = role_permissions(settings)[role]
    return [
        ProbeResult(
            probe,
            allowed=ok and probe.subject.lower() not in refused,
            expected=expected.allows(probe.action, probe.subject),
        )  # fmt: skip
        for probe, ok in zip(probes(settings), answered, strict=True)
    ]


async def _try(nc: nats.NATS, probe: Probe) -> bool:
    """Whether the server let ``probe`` through (before any refusal is reported)."""
    if probe.action == "subscribe":
        sub = await nc.subscribe(probe.subject)
        await nc.flush(timeout=PROBE_TIMEOUT_S)
        await asyncio.sleep(0.2)
        with contextlib.suppress(nats.errors.Error):
            await sub.unsubscribe()
        return True
    try:
        await nc.request(
            probe.subject, b"", timeout=PROBE_TIMEOUT_S,
            headers={"Nats-Expected-Stream": PROBE_TOKEN},
        )  # fmt: skip
    except nats.errors.NoRespondersError:
        return True  # the server passed it on, and nobody listens
    except (nats.errors.TimeoutError, TimeoutError):
        return False  # refused: the server dropped it
    return True
