"""The tasks kaizend keeps improving, built from the configuration.

Orchestration, the gate and experiments find a task here by name and then speak only to the
`models.task.Task` protocol.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from kaizend.core.config import Settings
from kaizend.core.errors import ConfigError
from kaizend.models.task import Task

TASK_NAMES: tuple[str, ...] = ("parser", "retriever")
"""Every task, in the order the daemon registers their version 0."""


def _parser(settings: Settings, halve_batch: bool) -> Task:
    from kaizend.models.parser.config import ParserTrainingConfig, profile
    from kaizend.models.parser.task import ParserTask
    from pydantic import ValidationError

    fields = {**profile(settings.parser.profile).model_dump(), **settings.parser.training}
    if halve_batch:
        fields["batch_size"] = max(1, int(fields["batch_size"]) // 2)
    try:
        config = ParserTrainingConfig.model_validate(fields)
    except ValidationError as err:
        problem = err.errors()[0]
        key = "parser.training." + ".".join(str(part) for part in problem["loc"])
        raise ConfigError(key, f"config key {key!r}: {problem['msg']}") from err
    return ParserTask(
        config=config,
        base_source=settings.parser.base_model or None,
        data_dir=settings.daemon.data_dir,
        correction_weight=settings.parser.correction_weight,
        constrained=settings.parser.constrained,
    )


def _retriever(settings: Settings, halve_batch: bool, serving: str | Path | None) -> Task:
    from kaizend.models.retriever.task import RetrieverTask

    config = settings.retriever
    if halve_batch:
        training = config.training.model_copy(
            update={"batch_size": max(1, config.training.batch_size // 2)}
        )
        config = config.model_copy(update={"training": training})
    task = RetrieverTask(config, chroma_dir=settings.path(Path("chroma")))
    if serving is not None:
        task = replace(task, serving_version=serving)
    return task


def build_task(
    settings: Settings,
    name: str,
    *,
    serving: str | Path | None = None,
    halve_batch: bool = False,
) -> Task:
    """The task ``name`` as configured.

    ``serving`` is the version production uses now (the retriever mines hard negatives from
    its index); ``halve_batch`` after an out-of-memory error. Cheap: nothing is loaded until
    the task trains or evaluates.
    """
    if name == "parser":
        return _parser(settings, halve_batch)
    if name == "retriever":
        return _retriever(settings, halve_batch, serving)
    raise ConfigError("task", f"unknown task {name!r}; one of {', '.join(TASK_NAMES)}")
