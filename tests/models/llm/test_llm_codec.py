"""The llm-json codec: outputs validated against the task's JSON Schema, targets written in
the schema's property order (the only order constrained decoding allows)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kaizend.models.llm.codec import InvalidOutput, JsonSchemaCodec

SCHEMA = {
    "type": "object",
    "properties": {
        "product": {"enum": ["mobile", "web"]},
        "severity": {"enum": ["low", "high"]},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["product", "severity"],
    "additionalProperties": False,
}


def test_targets_follow_the_schema_order_and_decode_back(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps(SCHEMA))
    codec = JsonSchemaCodec(path)
    target = codec.encode({"severity": "high", "product": "web"})
    assert target == ' {"product":"web","severity":"high"}'
    assert codec.decode(target.strip()) == {"product": "web", "severity": "high"}
    assert codec.json_schema() == SCHEMA and codec.fallback("x") is None


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ('{"product":"tv","severity":"low"}', "product"),
        ('{"product":"web"}', "severity"),
        ('{"product":"web","severity":"low","colour":"red"}', "colour"),
        ('{"product":"web","severity":', "not JSON"),
    ],
)
def test_invalid_answers_name_the_problem(raw: str, problem: str) -> None:
    with pytest.raises(InvalidOutput) as caught:
        JsonSchemaCodec(SCHEMA).decode(raw)
    assert any(problem in line for line in caught.value.problems), caught.value.problems


def test_a_fallback_answers_and_is_held_to_the_schema() -> None:
    codec = JsonSchemaCodec(SCHEMA, fallback="json:loads")
    assert codec.fallback('{"product": "web", "severity": "low"}') == {
        "product": "web", "severity": "low",
    }  # fmt: skip
    with pytest.raises(InvalidOutput):
        codec.fallback('{"product": "tv", "severity": "low"}')
