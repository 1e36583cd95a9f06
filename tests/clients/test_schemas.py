"""The committed contract (schemas/) against the code: the JSON Schemas, the AsyncAPI document,
and the schemas' verdicts against the models' on events a producer might send."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from kaizend.core.config import Settings
from kaizend.handlers.asyncapi import (
    FILE_NAME,
    asyncapi_document,
    builtin_settings,
    contract_files,
)
from kaizend_client.events import EVENT_TYPES
from kaizend_client.schemas import json_schema
from pydantic import ValidationError

from tests.conftest import event, kaizend

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
REGENERATE = "regenerate them: kaizend schemas --defaults --out schemas"


@pytest.fixture(scope="module")
def generated() -> dict[str, str]:
    return contract_files(builtin_settings())


def test_the_committed_schemas_are_the_generated_ones(generated: dict[str, str]) -> None:
    committed = {p.name for p in SCHEMAS.glob("*.json")} - {"routing-vectors.json"}
    assert committed == set(generated), (
        f"schemas/ holds other files than the code makes; {REGENERATE}"
    )
    for name, text in generated.items():
        assert (SCHEMAS / name).read_text() == text, (
            f"schemas/{name} differs from the code; {REGENERATE}"
        )


def test_a_changed_model_shows_as_drift(generated: dict[str, str]) -> None:
    # What the drift test compares is the schema of the models as they are: a bound moved in
    # the model moves in its schema.
    schema = json.loads(generated["feedback-event.json"])
    assert schema["properties"]["rating"]["anyOf"][0] == {
        "maximum": 5,
        "minimum": 1,
        "type": "integer",
    }
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_the_asyncapi_document_describes_the_interface() -> None:
    doc = asyncapi_document(builtin_settings())
    channels, operations = doc["channels"], doc["operations"]
    assert doc["asyncapi"].startswith("3.")
    assert {channels[f"{k}Events"]["address"] for k in EVENT_TYPES} == {
        "kaizen.events.query", "kaizen.events.feedback", "kaizen.events.correction"
    }  # fmt: skip
    jetstream = channels["queryEvents"]["x-jetstream"]
    assert (jetstream["stream"], jetstream["duplicateWindowSeconds"]) == ("KAIZEN_EVENTS", 120.0)
    headers = doc["components"]["schemas"]["EventHeaders"]
    assert headers["required"] == ["Nats-Msg-Id"]
    # The gateway's request-reply, with its error codes.
    assert channels["inferRequests"]["address"] == "kaizen.infer.{task}"
    assert operations["answerInference"]["reply"]["channel"] == {"$ref": "#/channels/inferReplies"}
    codes = doc["components"]["schemas"]["InferErrorHeaders"]["properties"]
    assert codes["Nats-Service-Error-Code"]["enum"] == ["400", "503", "500"]
    assert channels["routing"]["address"] == "$KV.kaizen_routing.{task}"
    # Every admin subject FastStream registered is there, operator-only.
    admin = {
        op["channel"]["$ref"] for name, op in operations.items() if name.startswith("answerAdmin")
    }
    assert len(admin) == 8
    for name, op in operations.items():
        operator_only = op.get("tags") == [{"$ref": "#/components/tags/operatorOnly"}]
        assert operator_only == name.startswith("answerAdmin"), name
        if operator_only:
            assert op["security"] == [{"$ref": "#/components/securitySchemes/operator"}]
    # The admin request payloads come from the responders' type hints (FastStream).
    sql = doc["components"]["messages"]["adminSqlRequest"]["payload"]
    assert sql == {"$ref": "#/components/schemas/SqlRequest"}
    assert doc["components"]["schemas"]["SqlRequest"]["required"] == ["sql"]


def test_the_document_follows_the_configuration() -> None:
    settings = Settings.model_validate(
        {"stream": {"subject_prefix": "acme.events", "duplicate_window_s": 30},
         "gateway": {"subject_prefix": "acme.infer", "tasks": ["parser"]},
         "tasks": {"parser": {"kind": "fit-parser"}, "tickets": {"kind": "fit-parser"}},
         "routing": {"bucket": "acme_routing"}, "admin": {"subject_prefix": "acme.admin"},
         "nats": {"url": "nats://svc:secret@nats.acme:4333"}}
    )  # fmt: skip
    doc = asyncapi_document(settings)
    assert doc["channels"]["feedbackEvents"]["address"] == "acme.events.feedback"
    assert doc["channels"]["queryEvents"]["x-jetstream"]["duplicateWindowSeconds"] == 30
    assert doc["channels"]["inferRequests"]["parameters"]["task"]["enum"] == ["parser"]
    assert doc["channels"]["routing"]["address"] == "$KV.acme_routing.{task}"
    assert doc["channels"]["adminSql"]["address"] == "acme.admin.sql"
    assert doc["servers"]["kaizend"]["host"] == "nats.acme:4333"
    assert "secret" not in json.dumps(doc)


async def test_kaizend_schemas_prints_and_writes(tmp_path: Path, settings: Settings) -> None:
    names = (await kaizend(settings, "schemas")).split()
    assert names == [n.removesuffix(".json") for n in contract_files(builtin_settings())]
    printed = await kaizend(settings, "schemas", "--defaults", "routing-entry")
    assert printed == (SCHEMAS / "routing-entry.json").read_text()
    out = await kaizend(settings, "schemas", "--defaults", "--out", str(tmp_path / "out"))
    assert len(out.splitlines()) == len(names)
    assert (tmp_path / "out" / FILE_NAME).read_text() == (SCHEMAS / FILE_NAME).read_text()
    assert "is none of" in await kaizend(settings, "schemas", "nope", ok=False)


# -- the schemas' verdicts against the models' ------------------------------------------------

GOOD: list[tuple[str, dict[str, Any]]] = [
    ("query", event("query", "e1")),
    ("query", event("query", "e2", arm="shadow", unit_id="", error="x", newer_field={"a": 1})),
    ("query", event("query", "e3", output=None, latency_ms=0, schema_version=2**31 - 1)),
    ("feedback", event("feedback", "e4")),
    ("feedback", event("feedback", "e5", rating=None, thumbs="up", doc_id="site-1")),
    ("correction", event("correction", "e6", corrected_output=[1, 2])),
    (
        "query",
        event("query", "e" * 256, text="x" * 10_000, ts="2026-11-23T10:00:00+05:30"),
    ),
]
BAD: list[tuple[str, str, dict[str, Any]]] = [
    ("blank id", "query", event("query", " \t")),
    ("newline in an id", "query", event("query", "e\n1")),
    ("id too long", "query", event("query", "e" * 257)),
    ("empty task", "query", event("query", "e1", task="")),
    ("text too long", "query", event("query", "e1", text="x" * 10_001)),
    ("NUL in text", "query", event("query", "e1", text="a\x00b")),
    ("NUL in error", "query", event("query", "e1", error="a\x00b")),
    ("negative latency", "query", event("query", "e1", latency_ms=-0.5)),
    ("unknown arm", "query", event("query", "e1", arm="treatment")),
    ("schema_version 0", "query", event("query", "e1", schema_version=0)),
    ("schema_version beyond INTEGER", "query", event("query", "e1", schema_version=2**31)),
    (
        "missing latency",
        "query",
        {k: v for k, v in event("query", "e1").items() if k != "latency_ms"},
    ),
    ("rating 6", "feedback", event("feedback", "e1", rating=6)),
    ("rating 0", "feedback", event("feedback", "e1", rating=0)),
    ("no judgement", "feedback", event("feedback", "e1", rating=None)),
    ("bad thumbs", "feedback", event("feedback", "e1", thumbs="sideways")),
    ("comment too long", "feedback", event("feedback", "e1", comment="x" * 10_001)),
    ("corrected output a string", "correction", event("correction", "e1", corrected_output="W")),
    ("author too long", "correction", event("correction", "e1", author="a" * 257)),
]


def _schema_accepts(kind: str, payload: dict[str, Any]) -> bool:
    return Draft202012Validator(json_schema(f"{kind}-event")).is_valid(payload)


def _model_accepts(kind: str, payload: dict[str, Any]) -> bool:
    try:
        EVENT_TYPES[kind].model_validate_json(json.dumps(payload))
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize(("kind", "payload"), GOOD)
def test_what_the_schema_accepts_is_stored(kind: str, payload: dict[str, Any]) -> None:
    assert _schema_accepts(kind, payload)
    assert _model_accepts(kind, payload)


@pytest.mark.parametrize(("what", "kind", "payload"), BAD, ids=[b[0] for b in BAD])
def test_what_ingestion_refuses_the_schema_refuses(
    what: str, kind: str, payload: dict[str, Any]
) -> None:
    assert not _model_accepts(kind, payload), what
    assert not _schema_accepts(kind, payload), what
