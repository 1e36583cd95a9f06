from __future__ import annotations

import pytest
from kaizend.core.errors import KaizendError
from kaizend.models.fit.schema import (
    TECHNOLOGIES,
    InvalidParse,
    ParsedQuery,
    to_compact_dict,
    validate_json,
    validate_output,
)

PLAN_EXAMPLE = {
    "technology": "Wind",
    "capacity_min_kw": 500,
    "postcode_patterns": ["YO", "HU", "DN", "HD", "WF", "LS", "BD"],
    "location": "Yorkshire",
    "fit_remaining_max_years": 10,
    "query_intent": "repowering_opportunities",
}


def test_plan_example_validates_and_compacts_canonically() -> None:
    parsed = validate_output(PLAN_EXAMPLE)
    compact = to_compact_dict(parsed)
    assert compact == {
        "technology": "Wind",
        "capacity_min_kw": 500,
        "location": "Yorkshire",
        "postcode_patterns": ["BD", "DN", "HD", "HU", "LS", "WF", "YO"],
        "fit_remaining_max_years": 10,
        "query_intent": "repowering_opportunities",
    }
    # Integral numbers come back as ints, so JSON targets read "500", not "500.0".
    assert type(compact["capacity_min_kw"]) is int
    assert validate_output(compact) == parsed


def test_compact_dict_drops_defaults_and_keeps_a_fixed_key_order() -> None:
    parsed = ParsedQuery(
        include_revenue=True,
        technology="Hydro",
        query_type="aggregation",
        aggregation="count",
        capacity_max_kw=1.5,
    )
    assert list(to_compact_dict(parsed)) == [
        "query_type",
        "aggregation",
        "technology",
        "capacity_max_kw",
        "include_revenue",
    ]
    assert to_compact_dict(ParsedQuery()) == {}


def test_equivalent_parses_compare_equal() -> None:
    one = validate_output(
        {"query_type": "comparison", "technologies": ["Photovoltaic", "Wind"],
         "postcode_patterns": ["sl", "RG"], "capacity_min_kw": 100.0}
    )  # fmt: skip
    two = validate_output(
        {"query_type": "comparison", "technologies": ["Wind", "Photovoltaic", "Wind"],
         "postcode_patterns": ["RG", "SL"], "capacity_min_kw": 100}
    )  # fmt: skip
    assert one == two
    assert to_compact_dict(one)["technologies"] == ["Wind", "Photovoltaic"]


@pytest.mark.parametrize(
    ("output", "field"),
    [
        ({"technology": "wind"}, "technology"),
        ({"technology": "Solar"}, "technology"),
        ({"capacity_min_kw": "100"}, "capacity_min_kw"),
        ({"capacity_min_kw": True}, "capacity_min_kw"),
        ({"postcode_patterns": ["Berkshire"]}, "postcode_patterns"),
        ({"fit_id": 1585}, "fit_id"),
        ({"fit_id": "FIT-1585"}, "fit_id"),
        ({"include_revenue": "yes"}, "include_revenue"),
        ({"query_intent": "Repowering Opportunities"}, "query_intent"),
        ({"technologies": ["Wind"], "query_type": "comparison"}, "technologies"),
        ({"max_capacity": 5}, "max_capacity"),
    ],
)
def test_invalid_fields_are_named_in_the_error(output: dict, field: str) -> None:
    with pytest.raises(InvalidParse) as caught:
        validate_output(output)
    assert any(problem.startswith(field) for problem in caught.value.problems), caught.value
    assert "fall back to the rule parser" in str(caught.value)


@pytest.mark.parametrize(
    "output",
    [
        {"capacity_min_kw": 500, "capacity_max_kw": 100},
        {"query_type": "aggregation"},
        {"aggregation": "count"},
        {"query_type": "comparison", "technology": "Wind"},
        {"technology": "Wind", "technologies": ["Wind", "Hydro"]},
        {"capacity_min_kw": -5},
        {"fit_remaining_max_years": 0},
    ],
)
def test_incoherent_outputs_are_rejected(output: dict) -> None:
    with pytest.raises(InvalidParse):
        validate_output(output)


def test_invalid_parse_is_a_kaizend_value_error() -> None:
    with pytest.raises(KaizendError) as caught:
        validate_output({"technology": "wind"})
    assert isinstance(caught.value, ValueError)
    assert caught.value.output == {"technology": "wind"}


def test_non_objects_are_rejected() -> None:
    with pytest.raises(InvalidParse, match="expected a JSON object"):
        validate_output(["Wind"])  # type: ignore[arg-type]


def test_validate_json_reads_an_answer_wrapped_in_chatter() -> None:
    parsed = validate_json('Sure! {"technology": "Wind", "fit_id": "4004"} Hope that helps.')
    assert to_compact_dict(parsed) == {"technology": "Wind", "fit_id": "4004"}
    with pytest.raises(InvalidParse, match="no JSON object"):
        validate_json("I cannot parse that")
    with pytest.raises(InvalidParse, match="malformed JSON"):
        validate_json('{"technology": Wind}')


def test_technology_names_match_the_fit_register() -> None:
    assert TECHNOLOGIES == ("Wind", "Photovoltaic", "Hydro", "Anaerobic digestion", "Micro CHP")
