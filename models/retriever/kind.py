"""The ``embedder`` task kind: a sentence-transformers retriever over the team's corpus, a
ChromaDB collection per version, trained on pairs from feedback and corrections (registered
in ``pyproject.toml``)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from kaizend.models.kinds import TaskContext
from kaizend.models.retriever.config import EmbedderSettings
from kaizend.models.task import Task


def halved(settings: Any, halve_batch: bool) -> Any:
    """``settings`` with half the training batch, after an out-of-memory error."""
    if not halve_batch:
        return settings
    training = settings.training.model_copy(
        update={"batch_size": max(1, settings.training.batch_size // 2)}
    )
    return settings.model_copy(update={"training": training})


def chroma_dir(context: TaskContext) -> Path:
    """Each task's collections in a directory of its own."""
    return context.path(Path("chroma") / context.name)


def with_serving(task: Any, context: TaskContext) -> Any:
    return task if context.serving is None else replace(task, serving_version=context.serving)


class EmbedderKind:
    name = "embedder"
    summary = "text -> ranked documents of your corpus: fine-tuned embedder, ChromaDB per version"
    settings_model = EmbedderSettings

    def build(self, context: TaskContext) -> Task:
        from kaizend.models.retriever.task import EmbedderTask

        settings: Any = context.settings
        benchmark = settings.benchmark and context.existing_file("benchmark", settings.benchmark)
        task = EmbedderTask(
            halved(settings, context.halve_batch),
            chroma_dir=chroma_dir(context),
            corpus=context.existing_file("corpus", settings.corpus),
            benchmark=benchmark or None,
            name=context.name,
        )
        return with_serving(task, context)


KIND = EmbedderKind()
