"""The ``fit-parser`` task kind: the FIT query parser (a LoRA adapter on a causal LM, over
the rule parser), as a plugin registered in ``pyproject.toml``."""

from __future__ import annotations

from typing import Any

from kaizend.core.errors import ConfigError
from kaizend.models.kinds import TaskContext
from kaizend.models.parser.config import ParserSettings, ParserTrainingConfig, profile
from kaizend.models.task import Task
from pydantic import ValidationError


class ParserKind:
    name = "fit-parser"
    summary = "FIT question -> search filters (JSON): LoRA on a causal LM, rules as fallback"
    settings_model = ParserSettings

    def build(self, context: TaskContext) -> Task:
        from kaizend.models.parser.task import ParserTask

        settings: Any = context.settings
        fields = {**profile(settings.profile).model_dump(), **settings.training}
        if context.halve_batch:
            fields["batch_size"] = max(1, int(fields["batch_size"]) // 2)
        try:
            config = ParserTrainingConfig.model_validate(fields)
        except ValidationError as err:
            problem = err.errors()[0]
            key = f"tasks.{context.name}.training." + ".".join(str(p) for p in problem["loc"])
            raise ConfigError(key, f"config key {key!r}: {problem['msg']}") from err
        return ParserTask(
            config=config,
            base_source=settings.base_model or None,
            data_dir=context.global_settings.daemon.data_dir,
            correction_weight=settings.correction_weight,
            constrained=settings.constrained,
            name=context.name,
        )


KIND = ParserKind()
