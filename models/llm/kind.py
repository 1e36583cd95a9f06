"""The ``llm-json`` task kind: text -> JSON valid for a JSON Schema file, a LoRA adapter on a
causal LM (QLoRA on CUDA) trained from corrections and optional seed examples, decoding
held to the schema (registered in ``pyproject.toml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kaizend.core.errors import ConfigError
from kaizend.models.kinds import TaskContext
from kaizend.models.llm.config import LlmJsonSettings
from kaizend.models.task import Task


class LlmJsonKind:
    name = "llm-json"
    summary = "text -> JSON valid for your JSON Schema: LoRA on a causal LM, schema-constrained"
    settings_model = LlmJsonSettings

    def build(self, context: TaskContext) -> Task:
        from kaizend.models.llm.codec import JsonSchemaCodec
        from kaizend.models.llm.task import LlmTask

        settings: Any = context.settings
        schema = context.existing_file("schema", settings.schema_file)
        try:
            codec = JsonSchemaCodec(
                schema, max_new_tokens=settings.max_new_tokens, fallback=settings.fallback,
                key=f"tasks.{context.name}.fallback",
            )  # fmt: skip
            codec.validator  # noqa: B018 -- a broken schema fails here, at start-up
        except ConfigError:
            raise
        except Exception as err:  # json and jsonschema errors
            key = f"tasks.{context.name}.schema"
            raise ConfigError(
                key, f"config key {key!r}: {schema} is not a JSON Schema: {err}"
            ) from err

        def optional(key: str) -> Path | None:
            value = getattr(settings, key)
            return context.existing_file(key, value) if value else None

        return LlmTask(
            name=context.name,
            codec=codec,
            config=settings.training_config(context.name, halve_batch=context.halve_batch),
            base_source=settings.base_model or None,
            data_dir=context.global_settings.daemon.data_dir,
            correction_weight=settings.correction_weight,
            constrained=settings.constrained,
            seed_file=optional("seed_examples"),
            benchmark=optional("benchmark"),
        )


KIND = LlmJsonKind()
