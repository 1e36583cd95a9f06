from __future__ import annotations

import pytest
from kaizend.models.fit import gazetteer, querygen, rules, scoring
from kaizend.models.fit.schema import to_compact_dict

YORKSHIRE = list(gazetteer.resolve("Yorkshire").postcode_patterns)  # type: ignore[union-attr]

PLAN_CASES = [
    (
        "wind sites over 100kw in berkshire",
        {"technology": "Wind", "capacity_min_kw": 100, "location": "Berkshire",
         "postcode_patterns": ["RG", "SL"]},
    ),
    (
        "what is the fit rate for fit id 1585",
        {"query_type": "fit_rate", "fit_id": "1585"},
    ),
    (
        "compare wind and solar in Yorkshire",
        {"query_type": "comparison", "technologies": ["Wind", "Photovoltaic"],
         "location": "Yorkshire", "postcode_patterns": YORKSHIRE},
    ),
    (
        "show regional adjusted revenue for all wind farms",
        {"technology": "Wind", "include_regional": True, "include_revenue": True},
    ),
    (
        "find all wind farms over 500kW in Yorkshire that are good for repowering",
        {"technology": "Wind", "capacity_min_kw": 500, "location": "Yorkshire",
         "postcode_patterns": YORKSHIRE, "fit_remaining_max_years": 10,
         "query_intent": "repowering_opportunities"},
    ),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), PLAN_CASES)
def test_plan_cases(text: str, expected: dict) -> None:
    assert to_compact_dict(rules.parse(text)) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("solar farms above 1MW", {"capacity_min_kw": 1000}),
        ("turbines over 1.5 MW", {"capacity_min_kw": 1500}),
        ("wind between 100 and 500 kW", {"capacity_min_kw": 100, "capacity_max_kw": 500}),
        ("pv from 500kW to 2MW", {"capacity_min_kw": 500, "capacity_max_kw": 2000}),
        ("hydro under 50kw", {"capacity_max_kw": 50}),
        ("AD plants of at least 250 kilowatts", {"capacity_min_kw": 250}),
        ("wind no more than 1mw", {"capacity_max_kw": 1000}),
        ("wind no less than 1,500kW", {"capacity_min_kw": 1500}),
        ("500kW+ turbines", {"capacity_min_kw": 500}),
        ("small wind turbines", {"capacity_max_kw": 50}),
        ("medium-sized solar farms", {"capacity_min_kw": 50, "capacity_max_kw": 500}),
        ("large hydro schemes", {"capacity_min_kw": 500}),
        ("solar panels", {"capacity_min_kw": None, "capacity_max_kw": None}),
    ],
)
def test_capacities(text: str, expected: dict) -> None:
    parsed = rules.parse(text)
    for field, value in expected.items():
        assert getattr(parsed, field) == value, (text, field)


@pytest.mark.parametrize(
    ("text", "technologies"),
    [
        ("wind farms", ["Wind"]), ("wind turbines", ["Wind"]), ("turbines", ["Wind"]),
        ("solar", ["Photovoltaic"]), ("PV", ["Photovoltaic"]), ("photovoltaic", ["Photovoltaic"]),
        ("solar panels", ["Photovoltaic"]), ("solar farm", ["Photovoltaic"]),
        ("hydro", ["Hydro"]), ("hydroelectric", ["Hydro"]), ("water turbines", ["Hydro"]),
        ("anaerobic digestion", ["Anaerobic digestion"]), ("AD plants", ["Anaerobic digestion"]),
        ("biogas", ["Anaerobic digestion"]), ("CHP", ["Micro CHP"]),
        ("combined heat and power", ["Micro CHP"]), ("cogeneration", ["Micro CHP"]),
        ("Windsor rooftops", []),
    ],
)  # fmt: skip
def test_technology_synonyms(text: str, technologies: list[str]) -> None:
    assert rules.find_technologies(text) == technologies


def test_query_types_and_flags() -> None:
    how_many = rules.parse("how many hydro schemes are in Scotland?")
    assert (how_many.query_type, how_many.aggregation) == ("aggregation", "count")
    total = rules.parse("total capacity of solar in Cornwall")
    assert (total.query_type, total.aggregation) == ("aggregation", "total_capacity")
    assert rules.parse("FIT 4004").fit_id == "4004"
    assert rules.parse("FIT 4004").query_type == "search"
    expiring = rules.parse("wind turbines whose FIT ends within 5 years")
    assert (expiring.fit_remaining_max_years, expiring.query_type) == (5, "search")
    assert rules.parse("acquisition targets in Devon").query_intent == "acquisition_targets"


def test_typed_postcodes_and_nested_places() -> None:
    parsed = rules.parse("wind turbines in RG17")
    assert (parsed.location, parsed.postcode_patterns) == ("RG17", ["RG17"])
    nested = rules.parse("solar in Hungerford, Berkshire")
    assert (nested.location, nested.postcode_patterns) == ("Hungerford", ["RG17"])


@pytest.mark.parametrize("text", ["", "   ", "???", "fit id", "between and kW", "0 years left",
                                  "x" * 2_000, "over 500kw under 100kw"])  # fmt: skip
def test_never_raises(text: str) -> None:
    rules.parse(text)


def test_rule_parser_on_the_generated_test_split(record_property: pytest.RecordProperty) -> None:
    test = querygen.split_examples(querygen.generate_examples())["test"]
    predicted = [rules.parse(example["text"]) for example in test]
    result = scoring.score(predicted, [example["expected"] for example in test])
    record_property("rules_exact_match", result["exact_match"])
    record_property("rules_field_accuracy", result["field_accuracy"])
    print(f"rule parser on {len(test)} test examples: {result}")
    # Measured 0.922 exact / 0.969 field at seed 0; misses are typos, spelled-out sizes,
    # demonyms and lower-case ambiguous names, which the learned parser is meant to fix.
    assert result["exact_match"] >= 0.9
    assert result["field_accuracy"] >= 0.96
