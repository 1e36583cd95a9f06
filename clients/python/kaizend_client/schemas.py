"""The JSON Schemas (draft 2020-12) of the contract, generated from its pydantic models.

The repository commits them in ``schemas/`` (a test fails when a model and its committed
schema differ); ``kaizend schemas`` prints or writes them, with the AsyncAPI document.
Producers in other languages validate their messages against them.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from kaizend_client.events import CorrectionEvent, FeedbackEvent, QueryEvent
from kaizend_client.inference import InferError, InferReply, InferRequest
from kaizend_client.routing import Routing

DIALECT = "https://json-schema.org/draft/2020-12/schema"

MODELS: dict[str, type[BaseModel]] = {
    "query-event": QueryEvent,
    "feedback-event": FeedbackEvent,
    "correction-event": CorrectionEvent,
    "infer-request": InferRequest,
    "infer-reply": InferReply,
    "infer-error": InferError,
    "routing-entry": Routing,
}
"""Each schema's name (its file is ``<name>.json``) and the model it describes."""


def json_schema(name: str) -> dict[str, Any]:
    """The JSON Schema of ``name`` (one of :data:`MODELS`), with its dialect and id."""
    model = MODELS[name]
    # Replies are what the gateway writes: their schema describes the serialised form.
    mode = "serialization" if name in ("infer-reply", "infer-error") else "validation"
    return {"$schema": DIALECT, "$id": f"{name}.json", **model.model_json_schema(mode=mode)}


def json_schemas() -> dict[str, dict[str, Any]]:
    """Every schema by its file name, ``<name>.json``."""
    return {f"{name}.json": json_schema(name) for name in MODELS}


def dumps(document: dict[str, Any]) -> str:
    """A document as the text committed (2-space indents, a final newline)."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
