"""Building the FastStream NATS broker from the configuration (daemon and CLI alike)."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable

from faststream.nats import NatsBroker
from faststream.nats.security import NatsCredentials as FaststreamCreds
from faststream.nats.security import (
    NatsSecurity,
    NatsToken,
    NatsUserPassword,
)
from kaizend.core.config import NatsCredentials, NatsSettings


def configured_credentials(settings: NatsSettings) -> NatsCredentials | None:
    """The top-level ``nats.user`` / ``password`` / ``token`` / ``creds_file``, if any."""
    # The precedence these keys always had: a creds file, else a token, else user/password.
    if settings.creds_file:
        return NatsCredentials(creds_file=settings.creds_file)
    if settings.token:
        return NatsCredentials(token=settings.token)
    if settings.user:
        return NatsCredentials(user=settings.user, password=settings.password)
    return None


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


def _security(settings: NatsSettings, credentials: NatsCredentials | None) -> NatsSecurity | None:
    tls = _ssl_context(settings)
    if credentials is None:
        return NatsSecurity(ssl_context=tls) if tls else None
    if credentials.creds_file:
        return FaststreamCreds(str(credentials.creds_file), ssl_context=tls)
    if credentials.token:
        return NatsToken(credentials.token.get_secret_value(), ssl_context=tls)
    password = credentials.password.get_secret_value() if credentials.password else ""
    return NatsUserPassword(credentials.user or "", password, ssl_context=tls)


def connect_options(
    settings: NatsSettings, credentials: NatsCredentials | None, inbox_prefix: str = "_INBOX"
) -> dict[str, object]:
    """Keyword arguments of ``nats.connect`` for these credentials (a plain nats-py client,
    as ``kaizend security check`` uses)."""
    options: dict[str, object] = {
        "connect_timeout": settings.connect_timeout_s,
        "inbox_prefix": inbox_prefix,
    }
    if (tls := _ssl_context(settings)) is not None:
        options["tls"] = tls
    if credentials is not None:
        if credentials.creds_file:
            options["user_credentials"] = str(credentials.creds_file)
        elif credentials.token:
            options["token"] = credentials.token.get_secret_value()
        else:
            options["user"] = credentials.user
            options["password"] = (
                credentials.password.get_secret_value() if credentials.password else ""
            )
    return options


def is_authorization_error(err: BaseException) -> bool:
    """Whether the server refused the credentials (nats-py raises a plain ``Error`` with the
    server's message on a first connection, ``AuthorizationError`` on later ones)."""
    import nats.errors

    return isinstance(err, nats.errors.AuthorizationError) or (
        "authorization violation" in str(err).lower()
    )


def _error_logger(retrying: bool) -> Callable[[Exception], Awaitable[None]]:
    """nats-py reports every failed (re)connection attempt; say each new problem once."""
    last = ""
    problem = "NATS connection problem (retrying)" if retrying else "NATS connection problem"

    async def log_error(err: Exception) -> None:
        nonlocal last
        text = f"{type(err).__name__}: {err}"
        if text != last:
            last = text
            logging.getLogger(__name__).warning("%s: %s", problem, text)

    return log_error


def make_broker(
    settings: NatsSettings,
    url: str,
    *,
    graceful_timeout: float | None = None,
    reconnect_forever: bool = False,
    name: str = "kaizend",
    closed_cb: Callable[[], Awaitable[None]] | None = None,
    credentials: NatsCredentials | None = None,
    inbox_prefix: str = "_INBOX",
) -> NatsBroker:
    """A broker for ``url`` with ``credentials`` (a role's, see `daemon.credentials`) and
    the configured TLS; replies arrive on inboxes under ``inbox_prefix``.

    The daemon reconnects forever (``reconnect_forever``): a NATS outage must pause ingestion,
    not end it. Command-line clients give up after the connect timeout.
    """
    return NatsBroker(
        [u.strip() for u in url.split(",") if u.strip()],
        name=name,
        security=_security(settings, credentials),
        inbox_prefix=inbox_prefix,
        connect_timeout=settings.connect_timeout_s,
        allow_reconnect=reconnect_forever,
        max_reconnect_attempts=-1 if reconnect_forever else 0,
        reconnect_time_wait=1.0,
        graceful_timeout=graceful_timeout,
        closed_cb=closed_cb,
        error_cb=_error_logger(reconnect_forever),
        logger=logging.getLogger("faststream"),
        log_level=logging.DEBUG,
    )
