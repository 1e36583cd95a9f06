"""Event schemas: what production services publish on ``kaizen.events.<kind>``.

Every event is a pydantic model with a ``schema_version``. Unknown fields are kept (they end up
in the ``extra`` JSON column), so a newer producer never breaks an older daemon.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import to_json

SCHEMA_VERSION = 1

Identifier = Annotated[str, Field(min_length=1, max_length=256)]


class Event(BaseModel):
    """Fields every event carries."""

    model_config = ConfigDict(extra="allow", frozen=True)
    kind: ClassVar[str]

    schema_version: int = Field(SCHEMA_VERSION, ge=1)
    event_id: Identifier
    query_id: Identifier
    ts: datetime

    @field_validator("ts")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        # A timestamp without a zone is taken as UTC rather than as the daemon's local time.
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)

    #: Fields stored as JSON text.
    json_fields: ClassVar[tuple[str, ...]] = ()

    def to_row(self) -> dict[str, Any]:
        """The event as a row of its table: known fields, JSON fields as text, ``extra``."""
        row = dict(self.__dict__)
        for name in self.json_fields:
            if row[name] is not None:
                row[name] = to_json(row[name]).decode()
        extra = self.__pydantic_extra__
        row["extra"] = to_json(extra).decode() if extra else None
        return row


class QueryEvent(Event):
    """A model answered a query (a parse, or a ranked list of documents)."""

    kind: ClassVar[str] = "query"
    json_fields: ClassVar[tuple[str, ...]] = ("output",)

    task: Identifier
    text: str = Field(max_length=10_000)
    model_version: Identifier
    arm: Literal["champion", "challenger", "shadow"] | None = None
    unit_id: str | None = Field(None, max_length=256)
    output: Any = None
    latency_ms: float = Field(ge=0)
    error: str | None = None
    service: str | None = Field(None, max_length=256)
    fallback_used: bool | None = None
    """The model's answer failed validation and a fallback (the parser's rules) answered."""


class FeedbackEvent(Event):
    """A user's judgement of a query's answer, or of one result (``doc_id``)."""

    kind: ClassVar[str] = "feedback"

    rating: int | None = Field(None, ge=1, le=5)
    thumbs: Literal["up", "down"] | None = None
    doc_id: str | None = Field(None, max_length=256)
    comment: str | None = Field(None, max_length=10_000)

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
    author: str | None = Field(None, max_length=256)


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls for cls in (QueryEvent, FeedbackEvent, CorrectionEvent)
}
