"""The ``fit-retriever`` task kind: a sentence-transformers embedder over the FIT register,
with a ChromaDB collection per version, as a plugin registered in ``pyproject.toml``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from kaizend.models.kinds import TaskContext
from kaizend.models.retriever.config import RetrieverSettings
from kaizend.models.task import Task


class RetrieverKind:
    name = "fit-retriever"
    summary = "FIT question -> ranked register sites: fine-tuned embedder, ChromaDB per version"
    settings_model = RetrieverSettings

    def build(self, context: TaskContext) -> Task:
        from kaizend.models.retriever.task import RetrieverTask

        settings: Any = context.settings
        if context.halve_batch:
            training = settings.training.model_copy(
                update={"batch_size": max(1, settings.training.batch_size // 2)}
            )
            settings = settings.model_copy(update={"training": training})
        task = RetrieverTask(settings, chroma_dir=context.path(Path("chroma")), name=context.name)
        if context.serving is not None:
            task = replace(task, serving_version=context.serving)
        return task


KIND = RetrieverKind()
