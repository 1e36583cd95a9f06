"""Events as rows: the models of what production services publish, and how one is stored.

The models, their bounds and their documentation are the contract, in the slim client
(:mod:`kaizend_client.events`: one definition, for producers and the daemon alike); this module
turns a validated event into a row of its table. The client owns its integer bounds as
constants; a test keeps them equal to the ranges of the columns in the DDL
(:func:`kaizend.storage.events.integer_ranges`), which stays the one definition of storage.
"""

from __future__ import annotations

from typing import Any

from kaizend.core.errors import InvalidEvent
from kaizend_client.events import (
    EVENT_TYPES,
    MAX_ID_CHARS,
    MAX_TEXT_CHARS,
    PATTERN_REASONS,
    SCHEMA_VERSION,
    CorrectionEvent,
    Event,
    FeedbackEvent,
    QueryEvent,
)
from pydantic_core import to_json

__all__ = [
    "EVENT_TYPES",
    "JSON_FIELDS",
    "MAX_ID_CHARS",
    "MAX_TEXT_CHARS",
    "PATTERN_REASONS",
    "SCHEMA_VERSION",
    "CorrectionEvent",
    "Event",
    "FeedbackEvent",
    "QueryEvent",
    "event_row",
]

JSON_FIELDS: dict[str, tuple[str, ...]] = {
    "query": ("output",),
    "correction": ("corrected_output",),
}
"""The fields of each kind stored as JSON text."""


def _json_text(field: str, value: Any) -> str:
    """``value`` as JSON text; refuses non-finite numbers, which are not JSON."""
    text = to_json(value).decode()
    # The second serialisation, which differs only where a float is not finite, runs only
    # when the text holds the letters at all (a string "NaN" also does).
    if "NaN" in text or "Infinity" in text:
        if to_json(value, inf_nan_mode="null").decode() != text:
            raise InvalidEvent(
                field, "JSON numbers must be finite (NaN, Infinity or an overflow such as 1e999)"
            )
    return text


def event_row(event: Event) -> dict[str, Any]:
    """The event as a row of its table: known fields, JSON fields as text, ``extra``."""
    row = dict(event.__dict__)
    for name in JSON_FIELDS.get(event.kind, ()):
        if row[name] is not None:
            row[name] = _json_text(name, row[name])
    extra = event.__pydantic_extra__
    row["extra"] = None
    if extra:
        try:
            row["extra"] = _json_text("extra", extra)
        except InvalidEvent:
            for name, value in extra.items():  # name the culprit
                _json_text(name, value)
            raise
    return row
