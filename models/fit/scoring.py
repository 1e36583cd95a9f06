"""How well a parser's outputs match the expected parses: exact match and field accuracy.

Both compare canonical compact dicts (`models.fit.schema.to_compact_dict`), so list order
and 100 vs 100.0 never count as mistakes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kaizend.models.fit.schema import ParsedQuery, to_compact_dict

PRIMARY_METRIC = "exact_match"
"""The metric that decides whether a parser version beats another (greater is better)."""


def _compact(parse: ParsedQuery | Mapping[str, Any]) -> dict[str, Any]:
    return to_compact_dict(parse) if isinstance(parse, ParsedQuery) else dict(parse)


def field_matches(
    predicted: ParsedQuery | Mapping[str, Any], expected: Mapping[str, Any]
) -> tuple[int, int]:
    """(fields right, fields compared) over the union of fields either side sets."""
    got, want = _compact(predicted), dict(expected)
    names = set(got) | set(want)
    return sum(got.get(name) == want.get(name) for name in names), len(names)


def score(
    predicted: Sequence[ParsedQuery | Mapping[str, Any]], expected: Sequence[Mapping[str, Any]]
) -> dict[str, float]:
    """exact_match (share of parses equal to the expected one) and field_accuracy (share of
    fields right, pooled over all examples), plus the example count `n`."""
    if len(predicted) != len(expected):
        raise ValueError(f"{len(predicted)} predictions for {len(expected)} expected parses")
    exact = right = total = 0
    for got, want in zip(predicted, expected, strict=True):
        exact += _compact(got) == dict(want)
        fields_right, fields_total = field_matches(got, want)
        right += fields_right
        total += fields_total
    count = len(expected)
    return {
        "exact_match": exact / count if count else 0.0,
        "field_accuracy": right / total if total else 0.0,
        "n": float(count),
    }
