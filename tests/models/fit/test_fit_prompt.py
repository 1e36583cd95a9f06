from __future__ import annotations

import pytest
from kaizend.models.fit import gazetteer, querygen
from kaizend.models.fit.prompt import (
    build_prompt,
    decode_slots,
    decode_target,
    encode_slots,
    encode_target,
    is_complete,
    make_prompt,
)
from kaizend.models.fit.schema import InvalidParse, to_compact_dict

YORKSHIRE = list(gazetteer.resolve("Yorkshire").postcode_patterns)  # type: ignore[union-attr]

SPEC_CASES = [
    (
        {"technology": "Wind", "capacity_min_kw": 100, "location": "Berkshire",
         "postcode_patterns": ["RG", "SL"]},
        "W >100 @Berkshire",
    ),
    ({"query_type": "fit_rate", "fit_id": "1585"}, "!r #1585"),
    (
        {"query_type": "comparison", "technologies": ["Wind", "Photovoltaic"],
         "location": "Yorkshire", "postcode_patterns": YORKSHIRE},
        "!c WP @Yorkshire",
    ),
    ({"technology": "Wind", "include_regional": True, "include_revenue": True}, "W +g +v"),
    (
        {"technology": "Wind", "capacity_min_kw": 500, "location": "Yorkshire",
         "postcode_patterns": YORKSHIRE, "fit_remaining_max_years": 10,
         "query_intent": "repowering_opportunities"},
        "W >500 @Yorkshire %rp",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("expected", "code"), SPEC_CASES)
def test_spec_cases_have_short_slot_codes_that_expand_back(expected: dict, code: str) -> None:
    assert encode_slots(expected) == code
    assert to_compact_dict(decode_slots(code)) == expected


@pytest.mark.parametrize("fmt", ["slots", "json"])
def test_every_generated_example_round_trips(fmt: str) -> None:
    for example in querygen.generate_examples(seed=1):
        target = encode_target(example["expected"], fmt)  # type: ignore[arg-type]
        assert to_compact_dict(decode_target(target, fmt)) == example["expected"]  # type: ignore[arg-type]


def test_slot_codes_are_far_shorter_than_json() -> None:
    examples = querygen.generate_examples(seed=1)[:500]
    slots = sum(len(encode_target(e["expected"], "slots")) for e in examples)
    json_chars = sum(len(encode_target(e["expected"], "json")) for e in examples)
    assert slots * 4 < json_chars


def test_multiword_places_and_generated_text_after_a_line_break() -> None:
    parsed = decode_target(" H <200 @East Riding of Yorkshire +v\nQ: more text", "slots")
    assert parsed.location == "East Riding of Yorkshire"
    assert parsed.postcode_patterns == ["HU", "YO"]
    assert parsed.include_revenue


@pytest.mark.parametrize(
    "code",
    ["W @Atlantis", "X >100", "W >lots", "!z W", "W >500 <100", "!c W"],
)
def test_invalid_codes_raise_invalid_parse_for_the_fallback(code: str) -> None:
    with pytest.raises(InvalidParse):
        decode_slots(code)


def test_json_completion_ignores_braces_inside_strings() -> None:
    assert not is_complete(' {"location":"a}b"', "json")
    assert is_complete(' {"location":"a}b"} trailing', "json")
    assert is_complete(" W >5\n", "slots")


def test_prompt_is_one_short_line_with_normalised_spaces() -> None:
    assert build_prompt("  wind   in berks ") == "Q: wind in berks\nA:"


def test_the_rule_hint_shows_the_rule_parse_in_the_target_format() -> None:
    prompt = make_prompt("wind sites over 100kw in berkshire", with_hint=True)
    assert prompt == "Q: wind sites over 100kw in berkshire\nR: W >100 @Berkshire\nA:"
    assert make_prompt("wind", with_hint=False) == build_prompt("wind")
