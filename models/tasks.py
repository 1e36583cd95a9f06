"""The tasks kaizend keeps improving, built from their declarations in the configuration.

Orchestration, the gate, experiments, serving, drift and the command line find a task here by
name and then speak only to the `models.task.Task` protocol; the task's kind (a plugin,
`models.kinds`) builds it from its ``[tasks.<name>]`` table.
"""

from __future__ import annotations

from pathlib import Path

from kaizend.core.config import Settings
from kaizend.core.errors import ConfigError
from kaizend.models.kinds import TaskContext, kind_of, kind_settings
from kaizend.models.task import Task


def build_task(
    settings: Settings,
    name: str,
    *,
    serving: str | Path | None = None,
    halve_batch: bool = False,
) -> Task:
    """The task ``name`` as declared.

    ``serving`` is the version production uses now (a retriever mines hard negatives from
    its index); ``halve_batch`` after an out-of-memory error. Cheap: nothing is loaded until
    the task trains or evaluates.
    """
    declaration = settings.tasks.get(name)
    if declaration is None:
        declared = ", ".join(settings.tasks) or "none: add a [tasks.<name>] table"
        raise ConfigError("tasks", f"unknown task {name!r}; declared tasks: {declared}")
    kind = kind_of(declaration, name)
    context = TaskContext(
        name=name,
        settings=kind_settings(declaration, name),
        global_settings=settings,
        serving=serving,
        halve_batch=halve_batch,
    )
    return kind.build(context)


def build_tasks(settings: Settings) -> dict[str, Task]:
    """Every declared task, built: a wrong kind or kind setting fails here, naming its key."""
    return {name: build_task(settings, name) for name in settings.tasks}
