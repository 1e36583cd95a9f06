"""Event schemas: what production services publish on ``kaizen.events.<kind>``.

Every event is a pydantic model with a ``schema_version``. Unknown fields are kept (they end up
in the ``extra`` JSON column), so a newer producer never breaks an older daemon.

Every value is bounded to what its column stores, so a valid event always commits (and a
hostile one is rejected with a reason, its bytes kept in ``rejected_events``):

- integers: within the range of the column's type, read from the DDL
  (:func:`storage.events.integer_ranges`; ``schema_version`` is an INTEGER);
- floats: finite. NaN, Infinity and numbers that overflow a double (``1e999``) are refused,
  inside the JSON fields (``output``, ``corrected_output``, unknown fields) too;
- timestamps: stored as their instant in UTC (one without a zone is taken as UTC), which must
  fall within the years 1-9999: what DuckDB's TIMESTAMPTZ stores and Python reads back;
- strings: identifiers (``event_id``, ``query_id``, ``task``, ``model_version``) are 1 to
  :data:`MAX_ID_CHARS` characters, not blank, without control characters; other labels are at
  most :data:`MAX_ID_CHARS`, free text (``text``, ``comment``) at most :data:`MAX_TEXT_CHARS`,
  and a query's ``error`` (the gateway copies it from an exception) only by the payload's size,
  ``ingest.max_payload_bytes``. No string column holds a NUL character: C-string consumers of
  the data and its exports would cut it there. Inside JSON values a NUL stays escaped
  (``\\u0000``) and is harmless;
- JSON: nesting deeper than the parser's limit (200 levels) is malformed JSON, and so are bytes
  that are not UTF-8 and escapes of lone surrogates (``"\\ud800"``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

from kaizend.core.errors import InvalidEvent
from kaizend.storage.events import EVENT_TABLES, integer_ranges
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import to_json

SCHEMA_VERSION = 1
MAX_ID_CHARS = 256
"""Longest identifier or label (ids, task, model version, unit, service, document, author)."""
MAX_TEXT_CHARS = 10_000
"""Longest free text (a query's text, a feedback comment)."""

_ID_PATTERN = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
_NO_NUL_PATTERN = r"^[^\x00]*$"
PATTERN_REASONS = {
    _ID_PATTERN: "an identifier must not be blank nor hold control characters (NUL, newline...)",
    _NO_NUL_PATTERN: "text must not hold NUL characters",
}
"""What each string pattern means, for the reason of a rejection."""

Identifier = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS, pattern=_ID_PATTERN)]
Label = Annotated[str, Field(max_length=MAX_ID_CHARS, pattern=_NO_NUL_PATTERN)]
Text = Annotated[str, Field(max_length=MAX_TEXT_CHARS, pattern=_NO_NUL_PATTERN)]
NoNul = Annotated[str, Field(pattern=_NO_NUL_PATTERN)]


def _column_max(column: str) -> int:
    """The largest value ``column`` holds in every event table (one definition: the DDL)."""
    return min(integer_ranges()[table][column][1] for table in EVENT_TABLES.values())


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


class Event(BaseModel):
    """Fields every event carries."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)
    kind: ClassVar[str]

    schema_version: int = Field(SCHEMA_VERSION, ge=1, le=_column_max("schema_version"))
    event_id: Identifier
    query_id: Identifier
    ts: datetime

    @field_validator("ts")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        # A timestamp without a zone is taken as UTC rather than as the daemon's local time.
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        # The store converts to UTC; only the first and last year can overflow doing so.
        if 1 < value.year < 9999:
            return value
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValueError("in UTC it falls outside the years 1-9999, which are stored") from None

    #: Fields stored as JSON text.
    json_fields: ClassVar[tuple[str, ...]] = ()

    def to_row(self) -> dict[str, Any]:
        """The event as a row of its table: known fields, JSON fields as text, ``extra``."""
        row = dict(self.__dict__)
        for name in self.json_fields:
            if row[name] is not None:
                row[name] = _json_text(name, row[name])
        extra = self.__pydantic_extra__
        row["extra"] = None
        if extra:
            try:
                row["extra"] = _json_text("extra", extra)
            except InvalidEvent:
                for name, value in extra.items():  # name the culprit
                    _json_text(name, value)
                raise
        return row


class QueryEvent(Event):
    """A model answered a query (a parse, or a ranked list of documents)."""

    kind: ClassVar[str] = "query"
    json_fields: ClassVar[tuple[str, ...]] = ("output",)

    task: Identifier
    text: Text
    model_version: Identifier
    arm: Literal["champion", "challenger", "shadow"] | None = None
    unit_id: Label | None = None
    output: Any = None
    latency_ms: float = Field(ge=0)
    error: NoNul | None = None
    service: Label | None = None
    fallback_used: bool | None = None
    """The model's answer failed validation and a fallback (the parser's rules) answered."""


class FeedbackEvent(Event):
    """A user's judgement of a query's answer, or of one result (``doc_id``)."""

    kind: ClassVar[str] = "feedback"

    rating: int | None = Field(None, ge=1, le=5)
    thumbs: Literal["up", "down"] | None = None
    doc_id: Label | None = None
    comment: Text | None = None

    @model_validator(mode="after")
    def _has_judgement(self) -> FeedbackEvent:
        if self.rating is None and self.thumbs is None:
            raise ValueError("feedback needs a rating (1-5) or thumbs (up/down)")
        return self


class CorrectionEvent(Event):
    """The right answer for a query, sent by a user or a reviewer."""

    kind: ClassVar[str] = "correction"
    json_fields: ClassVar[tuple[str, ...]] = ("corrected_output",)

    corrected_output: dict[str, Any] | list[Any]
    author: Label | None = None


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls for cls in (QueryEvent, FeedbackEvent, CorrectionEvent)
}
