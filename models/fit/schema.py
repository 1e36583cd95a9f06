"""The query parser's output schema: what a parsed FIT query may say, and its canonical form.

Every parser (the rule-based champion, a fine-tuned model) must produce a `ParsedQuery`.
A field that is absent or None means "no filter". The model validates and canonicalises
(list order, duplicates) so that two parses with the same meaning compare equal, and
`to_compact_dict` gives the one JSON shape used both as a training target and for
exact-match scoring.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from kaizend.models.llm.codec import InvalidOutput
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

TECHNOLOGIES: tuple[str, ...] = (
    "Wind",
    "Photovoltaic",
    "Hydro",
    "Anaerobic digestion",
    "Micro CHP",
)
"""Technology names exactly as the FIT register spells them; their order is the canonical one."""

QUERY_TYPES: tuple[str, ...] = ("search", "fit_rate", "comparison", "aggregation")
AGGREGATIONS: tuple[str, ...] = ("count", "total_capacity")

Technology = Literal["Wind", "Photovoltaic", "Hydro", "Anaerobic digestion", "Micro CHP"]
QueryType = Literal["search", "fit_rate", "comparison", "aggregation"]
Aggregation = Literal["count", "total_capacity"]

SIZE_BANDS: dict[str, tuple[float | None, float | None]] = {
    "small": (None, 50.0),
    "medium": (50.0, 500.0),
    "large": (500.0, None),
}
"""(capacity_min_kw, capacity_max_kw) meant by descriptive sizes: small is under 50 kW,
medium 50-500 kW, large over 500 kW."""

REPOWERING_MAX_YEARS = 10.0
"""A repowering question (query_intent repowering_opportunities) implies at most this many
years of tariff left, unless the question names its own horizon."""

# An area ("RG", "M") or a district ("RG17", "SW1A", "M1"); inward codes are never filters.
_POSTCODE_PATTERN = re.compile(r"^[A-Z]{1,2}(?:[0-9][A-Z0-9]?)?$")
_INTENT_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
_FIT_ID_PATTERN = re.compile(r"^[0-9]{1,9}$")


class InvalidParse(InvalidOutput):
    """Parser output that does not fit the FIT schema (`problems`: one "field: message"
    line per violation)."""

    def __init__(self, problems: list[str], output: Any = None) -> None:
        super().__init__(problems, output)
        self.args = (
            "invalid parser output (fall back to the rule parser, or fix the training "
            "target): " + "; ".join(problems),
        )


class ParsedQuery(BaseModel):
    """Structured filters for one natural-language question about FIT installations."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    query_type: QueryType = Field(
        default="search",
        description="search lists sites; fit_rate asks for tariffs; comparison contrasts "
        "`technologies`; aggregation counts or sums (see `aggregation`).",
    )
    aggregation: Aggregation | None = Field(
        default=None, description="Set exactly when query_type is aggregation."
    )
    technology: Technology | None = Field(default=None, description="One technology filter.")
    technologies: list[Technology] | None = Field(
        default=None,
        description="Two or more technologies, for comparisons (or 'wind or solar' searches); "
        "kept in TECHNOLOGIES order.",
    )
    capacity_min_kw: float | None = Field(
        default=None, ge=0, strict=True, description="Inclusive lower bound on declared capacity."
    )
    capacity_max_kw: float | None = Field(
        default=None, ge=0, strict=True, description="Inclusive upper bound on declared capacity."
    )
    location: str | None = Field(
        default=None, min_length=1, description="Canonical gazetteer name of the place asked for."
    )
    postcode_patterns: list[str] | None = Field(
        default=None,
        description="Postcode areas (RG) or districts (RG17) the location covers; sorted.",
    )
    fit_id: str | None = Field(default=None, description="A FIT installation id, digits only.")
    fit_remaining_max_years: float | None = Field(
        default=None, gt=0, strict=True, description="At most this many years of tariff left."
    )
    query_intent: str | None = Field(
        default=None, description="Business purpose in snake_case, e.g. repowering_opportunities."
    )
    include_regional: bool = Field(
        default=False, strict=True, description="Apply regional adjustment factors."
    )
    include_revenue: bool = Field(
        default=False, strict=True, description="Add estimated revenue to the answer."
    )

    @field_validator("technologies", mode="after")
    @classmethod
    def _canonical_technologies(cls, value: list[str] | None) -> list[str] | None:
        if not value:
            return None
        unique = sorted(set(value), key=TECHNOLOGIES.index)
        if len(unique) < 2:
            raise ValueError("needs at least two distinct technologies; use `technology` for one")
        return unique

    @field_validator("postcode_patterns", mode="after")
    @classmethod
    def _canonical_postcodes(cls, value: list[str] | None) -> list[str] | None:
        if not value:
            return None
        cleaned = sorted({pattern.strip().upper() for pattern in value})
        bad = [pattern for pattern in cleaned if not _POSTCODE_PATTERN.match(pattern)]
        if bad:
            raise ValueError(f"not postcode areas or districts: {bad} (expected e.g. RG or RG17)")
        return cleaned

    @field_validator("fit_id", mode="after")
    @classmethod
    def _digits_only(cls, value: str | None) -> str | None:
        if value is not None and not _FIT_ID_PATTERN.match(value):
            raise ValueError(f"FIT ids are digit strings like '1585', got {value!r}")
        return value

    @field_validator("query_intent", mode="after")
    @classmethod
    def _snake_case(cls, value: str | None) -> str | None:
        if value is not None and not _INTENT_PATTERN.match(value):
            raise ValueError(
                f"intent must be snake_case like 'repowering_opportunities': {value!r}"
            )
        return value

    @field_validator("location", mode="after")
    @classmethod
    def _stripped(cls, value: str | None) -> str | None:
        return value.strip() if value is not None else None

    @model_validator(mode="after")
    def _coherent(self) -> ParsedQuery:
        if (self.query_type == "aggregation") != (self.aggregation is not None):
            raise ValueError("`aggregation` is set exactly when query_type is 'aggregation'")
        if self.query_type == "comparison" and not self.technologies:
            raise ValueError("a comparison needs `technologies` (two or more)")
        if self.technology is not None and self.technologies:
            raise ValueError("set `technology` or `technologies`, not both")
        low, high = self.capacity_min_kw, self.capacity_max_kw
        if low is not None and high is not None and low > high:
            raise ValueError(f"capacity_min_kw {low} is above capacity_max_kw {high}")
        return self


def validate_output(obj: Any) -> ParsedQuery:
    """Check a parser's decoded JSON against the schema and return it canonicalised.

    Raises `InvalidParse` listing every violation (unknown fields, wrong technology
    spelling, non-numeric capacities, an inverted range, ...).
    """
    if not isinstance(obj, dict):
        raise InvalidParse([f"expected a JSON object, got {type(obj).__name__}"], obj)
    try:
        return ParsedQuery.model_validate(obj)
    except ValidationError as err:
        problems = [
            f"{'.'.join(str(part) for part in error['loc']) or '(object)'}: {error['msg']}"
            for error in err.errors()
        ]
        raise InvalidParse(problems, obj) from err


def validate_json(raw: str) -> ParsedQuery:
    """Decode a model's raw text answer (one JSON object, possibly with chatter around it).

    Raises `InvalidParse` when no JSON object can be decoded or it fails `validate_output`.
    """
    start, end = raw.find("{"), raw.rfind("}")
    if start < 0 or end < start:
        raise InvalidParse(["no JSON object in the output"], raw)
    try:
        obj = json.loads(raw[start : end + 1])
    except json.JSONDecodeError as err:
        raise InvalidParse([f"malformed JSON: {err.msg} at character {err.pos}"], raw) from err
    return validate_output(obj)


def _plain_number(value: float) -> int | float:
    # 100.0 and 100 mean the same; emitting 100 keeps targets short and JSON-stable.
    return int(value) if float(value).is_integer() else value


def to_compact_dict(parsed: ParsedQuery) -> dict[str, Any]:
    """The canonical form: fields in declaration order, without None, empty or default values.

    Used as the training target and for exact-match comparison, so it must be a pure
    function of the parse's meaning.
    """
    compact: dict[str, Any] = {}
    for name, field in ParsedQuery.model_fields.items():
        value = getattr(parsed, name)
        if value is None or value == field.default:
            continue
        if isinstance(value, float):
            value = _plain_number(value)
        elif isinstance(value, list):
            value = list(value)
        compact[name] = value
    return compact
