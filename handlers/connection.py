"""Building the FastStream NATS broker from the configuration (daemon and CLI alike)."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable

from faststream.nats import NatsBroker
from faststream.nats.security import (
    NatsCredentials,
    NatsSecurity,
    NatsToken,
    NatsUserPassword,
)

from core.config import NatsSettings


def _ssl_context(settings: NatsSettings) -> ssl.SSLContext | None:
    if not (settings.tls_ca_file or settings.tls_cert_file):
        return None
    context = ssl.create_default_context(
        cafile=str(settings.tls_ca_file) if settings.tls_ca_file else None
    )
    if settings.tls_cert_file:
        context.load_cert_chain(
            str(settings.tls_cert_file),
            str(settings.tls_key_file) if settings.tls_key_file else None,
        )
    return context


def _security(settings: NatsSettings) -> NatsSecurity | None:
    tls = _ssl_context(settings)
    if settings.creds_file:
        return NatsCredentials(str(settings.creds_file), ssl_context=tls)
    if settings.token:
        return NatsToken(settings.token.get_secret_value(), ssl_context=tls)
    if settings.user:
        password = settings.password.get_secret_value() if settings.password else ""
        return NatsUserPassword(settings.user, password, ssl_context=tls)
    return NatsSecurity(ssl_context=tls) if tls else None


def _error_logger() -> Callable[[Exception], Awaitable[None]]:
    """nats-py reports every failed (re)connection attempt; say each new problem once."""
    last = ""

    async def log_error(err: Exception) -> None:
        nonlocal last
        text = f"{type(err).__name__}: {err}"
        if text != last:
            last = text
            logging.getLogger(__name__).warning("NATS connection problem (retrying): %s", text)

    return log_error


def make_broker(
    settings: NatsSettings,
    url: str,
    *,
    graceful_timeout: float | None = None,
    reconnect_forever: bool = False,
    name: str = "kaizend",
    closed_cb: Callable[[], Awaitable[None]] | None = None,
) -> NatsBroker:
    """A broker for ``url`` with the configured credentials and TLS.

    The daemon reconnects forever (``reconnect_forever``): a NATS outage must pause ingestion,
    not end it. Command-line clients give up after the connect timeout.
    """
    return NatsBroker(
        [u.strip() for u in url.split(",") if u.strip()],
        name=name,
        security=_security(settings),
        connect_timeout=settings.connect_timeout_s,
        allow_reconnect=reconnect_forever,
        max_reconnect_attempts=-1 if reconnect_forever else 0,
        reconnect_time_wait=1.0,
        graceful_timeout=graceful_timeout,
        closed_cb=closed_cb,
        error_cb=_error_logger(),
        logger=logging.getLogger("faststream"),
        log_level=logging.DEBUG,
    )
