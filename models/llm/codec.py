"""How a task's outputs become the text a causal LM writes, and back: the codec.

A codec is everything task-specific about an LLM task: the prompt around a question, the
target text the model is trained to write for an output, how a generated answer turns back
into a validated output, the grammar or JSON Schema that constrained decoding holds it to,
and what answers when the model's answer is invalid. The training loop, the decoder and the
evaluator are written once against this protocol; `JsonSchemaCodec` is the codec of the
``llm-json`` kind (any JSON Schema), and a domain can bring its own (the FIT parser's slot
code, `models.fit.prompt`).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

from kaizend.core.errors import ConfigError, KaizendError
from kaizend.models.llm.constrained import Constraint


class InvalidOutput(KaizendError, ValueError):
    """A model answer (or a stored output) that is not valid for the task.

    `problems` lists one "field: message" line per violation, so a caller can log why an
    answer was rejected before falling back.
    """

    def __init__(self, problems: list[str], output: Any = None) -> None:
        self.problems = problems
        self.output = output
        super().__init__(
            "invalid output (fall back, or fix the training target): " + "; ".join(problems)
        )


class Codec(Protocol):
    """What an LLM task reads and writes (see the module docstring)."""

    max_new_tokens: int
    """Tokens the model may generate per answer."""
    drafts: bool
    """Whether `draft` gives drafts (then serving verifies prompt drafts by default)."""

    def prompt(self, text: str) -> str:
        """The prompt for one question; the target follows it directly."""
        ...

    def draft(self, text: str) -> str | None:
        """A likely answer the prompt already contains (a rule draft), which the decoder
        verifies several tokens per pass; None when the prompt holds none."""
        ...

    def encode(self, output: Mapping[str, Any]) -> str:
        """The target text for an output (without the end token)."""
        ...

    def decode(self, raw: str) -> dict[str, Any]:
        """The canonical output of a generated answer; `InvalidOutput` when it is not valid."""
        ...

    def canonical(self, output: Any) -> dict[str, Any]:
        """An output in the form answers are compared in; `InvalidOutput` when invalid."""
        ...

    def is_complete(self, raw: str) -> bool:
        """Whether generation can stop (unconstrained decoding; a constraint knows)."""
        ...

    def constraint(self) -> Constraint:
        """The grammar or JSON Schema every constrained answer is held to."""
        ...

    def json_schema(self) -> dict[str, Any] | None:
        """The JSON Schema of the answers when they are JSON (None for another notation):
        what a server's structured outputs (Ollama's ``format``) can hold sampling to."""
        ...

    def fallback(self, text: str) -> dict[str, Any] | None:
        """The answer when the model's is invalid; None when there is no fallback."""
        ...

    def describe(self) -> dict[str, Any]:
        """The codec's options, recorded in each version it trains (``codec.json``)."""
        ...


def json_complete(raw: str) -> bool:
    """Whether `raw` holds a complete top-level JSON object (its closing brace came)."""
    depth = 0
    in_string = escaped = seen_open = False
    for char in raw:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "{":
            depth += 1
            seen_open = True
        elif char == "}":
            depth -= 1
            if seen_open and depth == 0:
                return True
    return False


def compact_json(output: Mapping[str, Any]) -> str:
    """The JSON text of an output with minimal separators, keys in their given order."""
    return json.dumps(dict(output), separators=(",", ":"), ensure_ascii=False)


def schema_ordered(value: Any, schema: Mapping[str, Any]) -> Any:
    """`value` with every object's keys in the order its schema's ``properties`` list them
    (keys the schema does not name last, as they came), recursively through items."""
    if isinstance(value, Mapping):
        properties = schema.get("properties") or {}
        names = [*(n for n in properties if n in value), *(n for n in value if n not in properties)]
        return {n: schema_ordered(value[n], properties.get(n) or {}) for n in names}
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [schema_ordered(item, schema["items"]) for item in value]
    return value


def load_callable(spec: str, key: str) -> Callable[[str], Any]:
    """``"package.module:function"`` imported; `ConfigError` naming `key` when it fails."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigError(key, f"config key {key!r}: expected 'module:function', got {spec!r}")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as err:
        raise ConfigError(key, f"config key {key!r}: cannot import {spec!r}: {err}") from err
    if not callable(target):
        raise ConfigError(key, f"config key {key!r}: {spec!r} is not callable")
    return target


class JsonSchemaCodec:
    """Text -> JSON valid against a JSON Schema: the ``llm-json`` kind's codec.

    The prompt is ``"Q: <text>\\nA:"`` (a fine-tuned model needs no instructions, and every
    prompt token is prefill time); the target is the output's compact JSON after one space.
    Outputs are validated with `jsonschema` against the schema; constrained decoding holds
    the model to the same schema through llguidance. `fallback`, a function of the text
    returning an output (`load_callable` imports one named ``module:function``), answers
    when the model's answer is invalid.
    """

    def __init__(
        self,
        schema: Mapping[str, Any] | str | Path,
        *,
        max_new_tokens: int = 256,
        fallback: str = "",
        key: str = "fallback",
    ) -> None:
        self.schema: dict[str, Any] = (
            json.loads(Path(schema).read_text()) if isinstance(schema, str | Path) else dict(schema)
        )
        self.max_new_tokens = max_new_tokens
        self.drafts = False
        self.fallback_spec = fallback
        self._fallback = load_callable(fallback, key) if fallback else None

    @cached_property
    def validator(self) -> Any:
        import jsonschema

        cls = jsonschema.validators.validator_for(self.schema)
        cls.check_schema(self.schema)
        return cls(self.schema)

    def prompt(self, text: str) -> str:
        return f"Q: {' '.join(text.split())}\nA:"

    def draft(self, text: str) -> str | None:
        return None

    def encode(self, output: Mapping[str, Any]) -> str:
        # Properties in the schema's order: the only order constrained decoding allows.
        return " " + compact_json(schema_ordered(self.canonical(output), self.schema))

    def canonical(self, output: Any) -> dict[str, Any]:
        if not isinstance(output, Mapping):
            raise InvalidOutput([f"expected a JSON object, got {type(output).__name__}"], output)
        problems = [
            f"{'/'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
            for error in self.validator.iter_errors(dict(output))
        ]
        if problems:
            raise InvalidOutput(sorted(problems), output)
        return dict(output)

    def decode(self, raw: str) -> dict[str, Any]:
        try:
            output = json.loads(raw)
        except json.JSONDecodeError as err:
            raise InvalidOutput([f"not JSON: {err}"], raw) from err
        return self.canonical(output)

    def is_complete(self, raw: str) -> bool:
        return json_complete(raw)

    def constraint(self) -> Constraint:
        return Constraint.json_schema(self.schema, prefix=" ")

    def json_schema(self) -> dict[str, Any]:
        return self.schema

    def fallback(self, text: str) -> dict[str, Any] | None:
        if self._fallback is None:
            return None
        return self.canonical(self._fallback(text))

    def describe(self) -> dict[str, Any]:
        return {"codec": "json-schema", "schema": self.schema, "fallback": self.fallback_spec}
