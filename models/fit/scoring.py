"""How well FIT parses match the expected ones: the generic exact match and field accuracy
(`models.llm.evaluate`) over canonical compact dicts (`models.fit.schema.to_compact_dict`,
so list order and 100 vs 100.0 never count as mistakes), and the FIT parser's own metrics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kaizend.models.fit.schema import ParsedQuery, to_compact_dict
from kaizend.models.llm import evaluate

PRIMARY_METRIC = evaluate.PRIMARY_METRIC

# Fields that count as filters for "multi-filter success"; query_type alone is not one.
_FILTER_GROUPS: tuple[tuple[str, ...], ...] = (
    ("technology", "technologies"),
    ("capacity_min_kw", "capacity_max_kw"),
    ("location", "postcode_patterns"),
    ("fit_id",),
    ("fit_remaining_max_years",),
    ("query_intent",),
    ("include_regional",),
    ("include_revenue",),
    ("aggregation",),
)


def _compact(parse: ParsedQuery | Mapping[str, Any]) -> dict[str, Any]:
    return to_compact_dict(parse) if isinstance(parse, ParsedQuery) else dict(parse)


def field_matches(
    predicted: ParsedQuery | Mapping[str, Any], expected: Mapping[str, Any]
) -> tuple[int, int]:
    """(fields right, fields compared) over the union of fields either side sets."""
    return evaluate.field_matches(_compact(predicted), expected)


def score(
    predicted: Sequence[ParsedQuery | Mapping[str, Any]], expected: Sequence[Mapping[str, Any]]
) -> dict[str, float]:
    """exact_match and field_accuracy of parses (see `models.llm.evaluate.score`)."""
    return evaluate.score([_compact(parse) for parse in predicted], expected)


def _share(hits: int, count: int) -> float | None:
    return hits / count if count else None


def fit_metrics(
    got: Sequence[Mapping[str, Any]], wanted: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """The FIT parser's own metrics: ``postcode_mapping_accuracy`` and ``capacity_accuracy``
    over examples that ask for a place or a capacity, ``multi_filter_success`` (exact match
    over examples with two or more filters)."""
    pairs = list(zip(got, wanted, strict=True))
    postcode = [
        g.get("postcode_patterns") == w["postcode_patterns"]
        for g, w in pairs
        if w.get("postcode_patterns")
    ]
    capacity = [
        (g.get("capacity_min_kw"), g.get("capacity_max_kw"))
        == (w.get("capacity_min_kw"), w.get("capacity_max_kw"))
        for g, w in pairs
        if "capacity_min_kw" in w or "capacity_max_kw" in w
    ]
    multi = [
        dict(g) == dict(w)
        for g, w in pairs
        if sum(any(name in w for name in group) for group in _FILTER_GROUPS) >= 2
    ]
    return {
        "postcode_mapping_accuracy": _share(sum(postcode), len(postcode)),
        "capacity_accuracy": _share(sum(capacity), len(capacity)),
        "multi_filter_success": _share(sum(multi), len(multi)),
    }
