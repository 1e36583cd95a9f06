"""Resolving a version name from the command line to something a task can load.

A task's built-in version 0 (its kind's ``builtin_version``) and a path to a version
directory are taken as they are; ``champion`` / ``challenger`` and stored version
ids are looked up in the registry, through the running daemon or from the database file when
it is down.
"""

from __future__ import annotations

from pathlib import Path

from kaizend.core.config import Settings
from kaizend.core.errors import KaizendError, StorageError
from kaizend.daemon.client import sql_query
from kaizend.models.tasks import build_task

ALIASES = ("champion", "challenger")


def sql_literal(value: str) -> str:
    """``value`` as a quoted SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def _lookup(settings: Settings, query: str) -> list[list[object]]:
    try:
        return sql_query(settings, query, 10)["rows"]
    except StorageError:
        return []  # no database yet: nothing was ever registered


def _alias_id(settings: Settings, task: str, alias: str) -> str | None:
    """The version id holding ``alias`` now; None for ``champion`` before the first start
    (version 0 is the champion then); `KaizendError` for an alias nobody holds."""
    rows = _lookup(
        settings,
        f"SELECT version_id FROM current_aliases WHERE task = {sql_literal(task)} "
        f"AND alias = {sql_literal(alias)}",
    )
    if rows and rows[0][0] is not None:
        return str(rows[0][0])
    if alias == "champion":
        return None
    raise KaizendError(f"{task} has no {alias} now: see `kaizend models list`")


def builtin_version(settings: Settings, task: str) -> str:
    """The name of ``task``'s built-in version 0 (`ConfigError` for an undeclared task)."""
    return build_task(settings, task).builtin_version


def resolve_version(settings: Settings, task: str, version: str) -> str | Path:
    """The task's built-in name or the directory of the version that ``version`` names."""
    builtin = builtin_version(settings, task)
    if version == builtin:
        return builtin
    if Path(version).is_dir():
        return Path(version)
    version_id = _alias_id(settings, task, version) if version in ALIASES else version
    if version_id is None:
        return builtin
    rows = _lookup(
        settings,
        "SELECT artifact_path FROM model_versions WHERE version_id = " + sql_literal(version_id),
    )
    if not rows:
        raise KaizendError(
            f"unknown {task} version {version!r}: give {builtin}, champion, challenger, a "
            "version id from `kaizend models list`, or a version directory"
        )
    artifact = rows[0][0]
    return builtin if artifact is None else Path(str(artifact))


def version_label(settings: Settings, task: str, version: str) -> str:
    """The registry's id for what ``version`` names, for the ``model_version`` of events.

    ``<task>-v0`` for the built-in version 0 (and for ``champion`` before the first start),
    the alias's current id, a stored id as given, or the id registered for a version
    directory (the directory's name when it was never registered).
    """
    if version == builtin_version(settings, task):
        return f"{task}-v0"
    if Path(version).is_dir():
        rows = _lookup(
            settings,
            "SELECT version_id FROM model_versions WHERE artifact_path = "
            + sql_literal(str(Path(version).resolve())),
        )
        return str(rows[0][0]) if rows else Path(version).resolve().name
    if version in ALIASES:
        return _alias_id(settings, task, version) or f"{task}-v0"
    return version
