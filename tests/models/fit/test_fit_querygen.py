from __future__ import annotations

import random
import re
from collections import Counter

import pytest
from kaizend.models.fit import gazetteer, querygen
from kaizend.models.fit.schema import to_compact_dict, validate_output


@pytest.fixture(scope="module")
def examples() -> list[dict]:
    return querygen.generate_examples(seed=0)


@pytest.fixture(scope="module")
def split(examples: list[dict]) -> dict[str, list[dict]]:
    return querygen.split_examples(examples)


def test_size_and_categories(examples: list[dict]) -> None:
    assert len(examples) >= 4_500
    assert Counter(example["category"] for example in examples) == querygen.CATEGORY_COUNTS
    assert all(set(example) == {"id", "text", "expected", "category"} for example in examples)


def test_texts_and_ids_are_unique_and_stable(examples: list[dict]) -> None:
    assert len({example["id"] for example in examples}) == len(examples)
    assert len({example["text"].lower() for example in examples}) == len(examples)
    for example in examples[:50]:
        assert example["id"] == querygen.example_id(example["text"], example["expected"])


def test_generation_is_deterministic(examples: list[dict]) -> None:
    assert querygen.generate_examples(seed=0) == examples
    assert querygen.generate_examples(seed=1) != examples


def test_every_expected_output_is_valid_and_canonical(examples: list[dict]) -> None:
    for example in examples:
        parsed = validate_output(example["expected"])
        assert to_compact_dict(parsed) == example["expected"], example
        assert example["expected"], example  # Every question asks for something.


def test_locations_carry_the_gazetteers_postcodes(examples: list[dict]) -> None:
    located = [example["expected"] for example in examples if "location" in example["expected"]]
    assert len(located) > 2_000
    for expected in located:
        place = gazetteer.resolve(expected["location"])
        assert place is not None, expected
        assert expected["postcode_patterns"] == list(place.postcode_patterns)


def test_phrasing_varies(examples: list[dict]) -> None:
    texts = [example["text"].lower() for example in examples]

    def share(pattern: str) -> int:
        return sum(bool(re.search(pattern, text)) for text in texts)

    assert share(r"\d(?:\.\d)?\s?mw\b") > 50  # "1MW", "1.5 MW"
    assert share(r"kilowatts?\b") > 30
    assert share(r"megawatts?\b") > 30
    assert share(r"\d\.\d\s?mw") > 5  # "1.5MW"
    assert share(r"\b(?:berks|yorks|lancs|herts|hants|glos|oxon|wilts|notts|cambs)\b") > 5
    assert share(r"\b(?:turbines|pv|photovoltaic|biogas|chp|cogeneration|hydroelectric)\b") > 500
    assert share(r"\b[a-z]{1,2}\d{1,2}[a-z]?\b") > 100  # Typed districts like rg17.
    assert share(r"\bbetween\b") > 20
    assert share(r"\b(?:small|medium|large)\b") > 50


def test_some_phrasings_are_hard_for_keyword_rules(examples: list[dict]) -> None:
    texts = " | ".join(example["text"].lower() for example in examples)
    assert texts.count("half a megawatt") + texts.count("one megawatt") > 3
    demonyms = {"Scotland": "scottish", "Wales": "welsh", "Cornwall": "cornish"}
    assert any(
        demonyms.get(example["expected"].get("location", ""), "@") in example["text"].lower()
        for example in examples
    )


def test_split_is_80_10_10_and_a_partition(examples: list[dict], split: dict) -> None:
    sizes = {name: len(part) for name, part in split.items()}
    total = len(examples)
    assert sizes["train"] == pytest.approx(0.8 * total, rel=0.02)
    assert sizes["validation"] == pytest.approx(0.1 * total, rel=0.05)
    assert sizes["test"] == pytest.approx(0.1 * total, rel=0.05)
    ids = [example["id"] for part in split.values() for example in part]
    assert sorted(ids) == sorted(example["id"] for example in examples)


def test_test_combinations_are_unseen_in_training(split: dict) -> None:
    seen = {querygen.combination_key(example) for example in split["train"]} - {None}
    held_out = [querygen.combination_key(example) for example in split["test"]]
    combos = [key for key in held_out if key is not None]
    assert len(combos) > 0.4 * len(split["test"])  # Most of test is about new combinations.
    assert not seen & set(combos)
    validation = {querygen.combination_key(example) for example in split["validation"]}
    assert not seen & (validation - {None})
    # The (technology, place) pairs in test never occur in training in any category.
    train_pairs = {key[1:] for key in seen if key[0] == "technology+place"}
    assert not train_pairs & {key[1:] for key in combos if key[0] == "technology+place"}


def test_split_does_not_depend_on_input_order(examples: list[dict], split: dict) -> None:
    shuffled = list(examples)
    random.Random(3).shuffle(shuffled)
    again = querygen.split_examples(shuffled)
    for name in querygen.SPLITS:
        assert {e["id"] for e in again[name]} == {e["id"] for e in split[name]}


def test_unknown_categories_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown categories"):
        querygen.generate_examples(counts={"poetry": 10})
