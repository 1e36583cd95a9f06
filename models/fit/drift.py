"""The fields of a stored FIT query that input-drift checks compare between windows (the
FIT tasks' `drift_fields`).

A parser query's ``output`` is its parse: the compact `ParsedQuery` dict, or the record
`kaizend parse` writes (``{"parsed": {...}, "fallback_used": ...}``). Other tasks' outputs
(the retriever's ranked documents) hold no parse, so their text is parsed with the rule
parser, which reads the same filters out of any FIT question.

Categorical: ``technology`` (one name, several joined by "+", or "none"), ``location`` (the
gazetteer's canonical name or "none"), ``query_type``, ``capacity_band`` (the descriptive
sizes of `SIZE_BANDS` applied to the capacity asked about, or "none"). Numeric:
``log10_capacity_kw`` (capacities span 1 kW to several MW, so distances are taken on the log
scale; queries without a capacity have none) and ``query_length`` (characters).
"""

from __future__ import annotations

import json
import math
from typing import Any

from kaizend.models.drift.fields import DriftFields
from kaizend.models.fit import rules
from kaizend.models.fit.schema import SIZE_BANDS, ParsedQuery, to_compact_dict

CATEGORICAL: tuple[str, ...] = ("technology", "location", "query_type", "capacity_band")
NUMERIC: tuple[str, ...] = ("log10_capacity_kw", "query_length")
NONE = "none"


def _parse_of(text: str, output: Any) -> dict[str, Any]:
    if isinstance(output, str):
        try:
            output = json.loads(output)
        except json.JSONDecodeError:
            output = None
    if isinstance(output, dict) and isinstance(output.get("parsed"), dict):
        return output["parsed"]
    if isinstance(output, dict) and set(output) & set(ParsedQuery.model_fields):
        return output
    return to_compact_dict(rules.parse(text))


def capacity_kw(parse: dict[str, Any]) -> float | None:
    """The capacity a query asks about: its lower bound, else its upper bound."""
    for key in ("capacity_min_kw", "capacity_max_kw"):
        value = parse.get(key)
        if isinstance(value, int | float) and value > 0:
            return float(value)
    return None


def capacity_band(capacity: float | None) -> str:
    if capacity is None:
        return NONE
    for band, (low, high) in SIZE_BANDS.items():
        if (low is None or capacity >= low) and (high is None or capacity < high):
            return band
    return NONE


def query_fields(text: str, output: Any) -> dict[str, Any]:
    """The categorical and numeric fields of one query (a numeric one may be None)."""
    parse = _parse_of(text, output)
    technologies = parse.get("technologies") or ([parse["technology"]] if parse.get("technology")
                                                 else [])  # fmt: skip
    capacity = capacity_kw(parse)
    return {
        "technology": "+".join(str(t) for t in technologies) or NONE,
        "location": str(parse.get("location") or NONE),
        "query_type": str(parse.get("query_type") or "search"),
        "capacity_band": capacity_band(capacity),
        "log10_capacity_kw": math.log10(capacity) if capacity else None,
        "query_length": float(len(text)),
    }


FIT_FIELDS = DriftFields(categorical=CATEGORICAL, numeric=NUMERIC, extract=query_fields)
