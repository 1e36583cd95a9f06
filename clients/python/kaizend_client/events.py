"""The events production services publish on ``kaizen.events.<kind>``: the contract.

Every event is a pydantic model with a ``schema_version``. Unknown fields are kept (the daemon
stores them in the ``extra`` JSON column), so a newer producer never breaks an older daemon.

Every value is bounded to what the daemon's column stores, so a valid event always commits
(and a hostile one is rejected with a reason, its bytes kept in ``rejected_events``):

- integers: within the range of the column's type (``schema_version`` is an INTEGER, at most
  :data:`MAX_SCHEMA_VERSION`; a test of the kaizend package keeps these equal to its DDL);
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

The JSON Schemas in the repository's ``schemas/`` are generated from these models
(:mod:`kaizend_client.schemas`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SCHEMA_VERSION = 1
"""The version of these models; an event without one is taken as this version."""
MAX_SCHEMA_VERSION = 2**31 - 1
"""Largest ``schema_version``: what the INTEGER column stores."""
MAX_ID_CHARS = 256
"""Longest identifier or label (ids, task, model version, unit, service, document, author)."""
MAX_TEXT_CHARS = 10_000
"""Longest free text (a query's text, a feedback comment)."""
SUBJECT_PREFIX = "kaizen.events"
"""Events are published on ``<prefix>.<kind>`` (the daemon's ``stream.subject_prefix``)."""
MSG_ID_HEADER = "Nats-Msg-Id"
"""Set to the ``event_id``: JetStream drops a re-publish inside the stream's duplicate window."""

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


class Event(BaseModel):
    """Fields every event carries."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)
    kind: ClassVar[str]

    schema_version: int = Field(
        SCHEMA_VERSION,
        ge=1,
        le=MAX_SCHEMA_VERSION,
        description="Version of the event's schema; 1 when absent.",
    )
    event_id: Identifier = Field(
        description="Unique per event, and the Nats-Msg-Id header: a re-published copy with "
        "the same id is stored once."
    )
    query_id: Identifier = Field(
        description="The query this event is about; feedback and corrections refer to it."
    )
    ts: datetime = Field(
        description="When it happened (RFC 3339); a time without a zone is taken as UTC. In "
        "UTC it must fall within the years 1-9999."
    )

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


class QueryEvent(Event):
    """A model answered a query (a parse, or a ranked list of documents). Published on
    ``kaizen.events.query``."""

    kind: ClassVar[str] = "query"

    task: Identifier = Field(description="The task that answered: parser, retriever, ...")
    text: Text = Field(description="The query as the user asked it.")
    model_version: Identifier = Field(description="The version that answered.")
    arm: Literal["champion", "challenger", "shadow"] | None = Field(
        None, description="The experiment arm the routing assigned (shadow: unseen answer)."
    )
    unit_id: Label | None = Field(
        None, description="The unit (user or session) the routing assigned, sticky."
    )
    output: Any = Field(None, description="The answer, any JSON (finite numbers only).")
    latency_ms: float = Field(ge=0, description="How long the answer took, in milliseconds.")
    error: NoNul | None = Field(None, description="Why the model failed, if it did.")
    service: Label | None = Field(None, description="The service that asked.")
    fallback_used: bool | None = Field(
        None,
        description="The model's answer failed validation and a fallback (the parser's rules) "
        "answered.",
    )


class FeedbackEvent(Event):
    """A user's judgement of a query's answer, or of one result (``doc_id``): a rating, thumbs,
    or both. Published on ``kaizen.events.feedback``."""

    model_config = ConfigDict(
        # What the validator below enforces, for the JSON Schema.
        json_schema_extra={
            "anyOf": [
                {"type": "object", "required": ["rating"],
                 "properties": {"rating": {"type": "integer"}}},
                {"type": "object", "required": ["thumbs"],
                 "properties": {"thumbs": {"type": "string"}}},
            ]
        }
    )  # fmt: skip
    kind: ClassVar[str] = "feedback"

    rating: int | None = Field(None, ge=1, le=5, description="1 (bad) to 5 (good).")
    thumbs: Literal["up", "down"] | None = None
    doc_id: Label | None = Field(None, description="The rated result, for retrieval.")
    comment: Text | None = None

    @model_validator(mode="after")
    def _has_judgement(self) -> FeedbackEvent:
        if self.rating is None and self.thumbs is None:
            raise ValueError("feedback needs a rating (1-5) or thumbs (up/down)")
        return self


class CorrectionEvent(Event):
    """The right answer for a query, sent by a user or a reviewer. Published on
    ``kaizen.events.correction``."""

    kind: ClassVar[str] = "correction"

    corrected_output: dict[str, Any] | list[Any] = Field(
        description="The right answer: a JSON object or array (finite numbers only)."
    )
    author: Label | None = Field(None, description="Who corrected it.")


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls for cls in (QueryEvent, FeedbackEvent, CorrectionEvent)
}
"""The event model of each kind (the last token of its subject)."""
