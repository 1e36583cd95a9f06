from __future__ import annotations

import pytest
from kaizend.models.fit import scoring
from kaizend.models.fit.schema import ParsedQuery


def test_exact_match_and_field_accuracy() -> None:
    expected = [
        {"technology": "Wind", "capacity_min_kw": 100, "postcode_patterns": ["RG", "SL"]},
        {"query_type": "fit_rate", "fit_id": "1585"},
    ]
    predicted = [
        ParsedQuery(technology="Wind", capacity_min_kw=100.0, postcode_patterns=["SL", "RG"]),
        {"fit_id": "1585"},  # Missed the query type: one of two fields wrong.
    ]
    result = scoring.score(predicted, expected)
    assert result["exact_match"] == 0.5
    assert result["field_accuracy"] == pytest.approx(4 / 5)
    assert result["n"] == 2
    assert scoring.PRIMARY_METRIC in result


def test_extra_fields_count_as_wrong() -> None:
    assert scoring.field_matches({"technology": "Wind", "include_revenue": True},
                                 {"technology": "Wind"}) == (1, 2)  # fmt: skip


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="1 predictions for 2"):
        scoring.score([{}], [{}, {}])
