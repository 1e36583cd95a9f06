"""Task kinds: the plugins that turn a task declared in configuration into a `Task`.

A kind is an object with a ``name``, a one-line ``summary``, the pydantic model of its own
settings (``settings_model``: the keys of a ``[tasks.<name>]`` table other than ``kind``,
``triggers``, ``gate`` and ``experiments``) and ``build(context) -> Task``. Kinds are found
through the Python entry-point group ``kaizend.task_kinds``: a pip-installed package adds one
with

    [project.entry-points."kaizend.task_kinds"]
    my-kind = "my_package.kind:KIND"

and kaizend's own kinds register the same way (``pyproject.toml``). Nothing here knows any
kind or any task by name.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol

from kaizend.core.config import Settings, TaskDeclaration
from kaizend.core.errors import ConfigError
from kaizend.models.task import Task
from pydantic import BaseModel, ValidationError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "kaizend.task_kinds"


@dataclass(frozen=True)
class TaskContext:
    """What a kind builds a task from."""

    name: str
    """The task's name: the key of its ``[tasks.<name>]`` table, the ``task`` of its events."""
    settings: BaseModel
    """The kind's own settings, validated with its ``settings_model``."""
    global_settings: Settings
    """The whole configuration (the data directory, the gate's and the drift's settings)."""
    serving: str | Path | None = None
    """The version production uses now (None: not known to the caller)."""
    halve_batch: bool = False
    """Train with half the configured batch size: the retry after an out-of-memory error."""

    def path(self, relative: Path) -> Path:
        """A path of the task's own under the data directory."""
        return self.global_settings.path(relative)

    def existing_file(self, key: str, path: Path | str) -> Path:
        """The file a setting names (relative: under the data directory); `ConfigError`
        naming ``tasks.<name>.<key>`` when there is none."""
        resolved = self.path(Path(path))
        if not resolved.is_file():
            name = f"tasks.{self.name}.{key}"
            raise ConfigError(name, f"config key {name!r}: no file {resolved}")
        return resolved


class TaskKind(Protocol):
    """A plugin that builds tasks of one kind."""

    name: str
    summary: str
    settings_model: type[BaseModel]

    def build(self, context: TaskContext) -> Task:
        """The task ``context.name`` as configured. Cheap: nothing is loaded until the task
        trains, evaluates or serves."""
        ...


class UnknownKind(ConfigError):
    """A declared kind no installed package provides."""


@cache
def installed_kinds() -> dict[str, TaskKind]:
    """Every kind the installed packages register, by name (loaded once per process).

    A kind whose entry point fails to load is left out with a logged error naming the
    package, so one broken plugin does not take the others down.
    """
    kinds: dict[str, TaskKind] = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            kind = point.load()
        except Exception as err:  # noqa: BLE001 - a plugin's import error, reported
            log.error("task kind %r (%s) cannot be loaded: %s", point.name, point.value, err)
            continue
        if getattr(kind, "name", None) != point.name:
            log.error(
                "task kind entry point %r loads an object named %r: the names must match",
                point.name,
                getattr(kind, "name", None),
            )
            continue
        kinds[point.name] = kind
    return kinds


def kind_of(declaration: TaskDeclaration, task: str) -> TaskKind:
    """The installed kind a task declares; `UnknownKind` saying which kinds there are."""
    kinds = installed_kinds()
    if declaration.kind not in kinds:
        known = ", ".join(sorted(kinds)) or "none (is kaizend installed? `pip install -e .`)"
        raise UnknownKind(
            f"tasks.{task}.kind",
            f"config key 'tasks.{task}.kind': no installed task kind {declaration.kind!r}; "
            f"installed kinds: {known}",
        )
    return kinds[declaration.kind]


def kind_settings(declaration: TaskDeclaration, task: str) -> BaseModel:
    """The kind's own settings of a declared task, validated; `ConfigError` naming the key."""
    kind = kind_of(declaration, task)
    try:
        return kind.settings_model.model_validate(declaration.kind_settings())
    except ValidationError as err:
        problems = "; ".join(
            f"config key 'tasks.{task}.{'.'.join(str(p) for p in e['loc'])}': {e['msg']}"
            for e in err.errors()
        )
        first = ".".join(str(p) for p in err.errors()[0]["loc"])
        raise ConfigError(f"tasks.{task}.{first}", problems) from err
