"""The NATS credentials of kaizend's four roles (see `handlers.permissions`).

Embedded nats-server: on first start the daemon generates one random password per role into
``<data_dir>/secrets/nats-<role>.json`` (a 0700 directory, 0600 files); every command run
beside the daemon reads the file of its role, so `kaizend sql` connects as the operator,
`kaizend publish` as a service, `kaizend worker` as a worker. Give another user a role by
giving them that one file (on another box: the same path under its data directory).

External cluster (``nats.url`` set): ``nats.roles.<role>`` when configured, else the
top-level ``nats.user`` / ``password`` / ``token`` / ``creds_file``.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import stat
from pathlib import Path

from kaizend.core.config import ROLES, NatsCredentials, Role, Settings
from kaizend.handlers.connection import configured_credentials
from kaizend.handlers.permissions import user_name
from pydantic import SecretStr

log = logging.getLogger(__name__)


def credentials_file(settings: Settings, role: Role) -> Path:
    return settings.secrets_path / f"nats-{role}.json"


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if stat.S_IMODE(path.stat().st_mode) != 0o700:
        os.chmod(path, 0o700)


def ensure_embedded_credentials(settings: Settings) -> dict[Role, str]:
    """Each role's password for the embedded server, generated on first start (owner-only
    files); an existing file keeps its password, and loses any group or other access."""
    _private_dir(settings.secrets_path)
    passwords: dict[Role, str] = {}
    for role in ROLES:
        path = credentials_file(settings, role)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            if stat.S_IMODE(path.stat().st_mode) & 0o077:
                log.warning("%s was readable by others: made owner-only", path)
                os.chmod(path, 0o600)
            passwords[role] = json.loads(path.read_text())["password"]
            continue
        password = secrets.token_urlsafe(32)
        with os.fdopen(fd, "w") as out:
            json.dump({"role": role, "user": user_name(role), "password": password}, out)
        passwords[role] = password
        log.info("generated the NATS credentials of the %s role in %s", role, path)
    return passwords


def role_credentials(settings: Settings, role: Role) -> NatsCredentials | None:
    """The credentials ``role`` connects with; None when there are none (or, beside an
    embedded server, when this user cannot read the role's file)."""
    if settings.nats.url:
        return getattr(settings.nats.roles, role) or configured_credentials(settings.nats)
    if not settings.nats.embedded_auth:
        return None
    try:
        stored = json.loads(credentials_file(settings, role).read_text())
    except (FileNotFoundError, PermissionError, json.JSONDecodeError):
        return None
    return NatsCredentials(user=stored["user"], password=SecretStr(stored["password"]))


def missing_credentials_hint(settings: Settings, role: Role) -> str:
    """What to do when ``role`` was refused by the server."""
    if settings.nats.url:
        return (
            f"check nats.roles.{role} (or nats.user / nats.password / nats.token / "
            f"nats.creds_file); `kaizend security permissions` shows what the {role} role needs"
        )
    return (
        f"the embedded nats-server requires the {role} role's credentials, read from "
        f"{credentials_file(settings, role)}: run this as the daemon's user, or copy that file"
    )
