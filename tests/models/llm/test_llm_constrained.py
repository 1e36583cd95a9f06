"""Schema-constrained decoding: the generic matcher, the FIT target constraints, and models
that would otherwise write garbage held to the schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from kaizend.models.fit.parser import load_fit_parser
from kaizend.models.fit.prompt import (
    FitCodec,
    decode_target,
    encode_target,
    rule_hint,
    target_constraint,
    target_json_schema,
)
from kaizend.models.fit.schema import to_compact_dict
from kaizend.models.llm.base import load_base, load_base_tokenizer
from kaizend.models.llm.constrained import (
    Constraint,
    ConstraintError,
    ConstraintViolation,
    compile_constraint,
)
from kaizend.models.llm.serve import ModelPredictor
from kaizend.models.llm.version import LlmVersion

from tests.conftest import MEMORISE

TICKETS = {
    "type": "object",
    "properties": {
        "product": {"enum": ["billing portal", "mobile app", "api", "desktop client"]},
        "severity": {"enum": ["low", "medium", "high", "critical"]},
        "category": {"enum": ["bug", "outage", "feature request", "account", "question"]},
    },
    "required": ["product", "severity", "category"],
    "additionalProperties": False,
}
"""A schema the FIT code has never seen: support tickets."""

TICKET_TEXTS = [
    "the mobile app crashes when I upload a photo",
    "API returns 500 for every request since 9am, production is down",
    "please add dark mode to the desktop client",
    "I was charged twice on the billing portal this month",
    "how do I reset my password?",
    "checkout button does nothing on android",
]


def _ids(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False).input_ids


@pytest.fixture(scope="module")
def tokenizer(tiny_base: Path) -> Any:
    return load_base_tokenizer(tiny_base)


def test_a_matcher_masks_accepts_checks_drafts_completes_and_resets(tokenizer: Any) -> None:
    compiled = compile_constraint(tokenizer, Constraint.json_schema(TICKETS, prefix=" "))
    answer = _ids(tokenizer, ' {"product":"api","severity":"high","category":"outage"}')
    matcher = compiled.matcher()
    allowed = matcher.allowed()
    assert allowed.shape == (compiled.vocab_size,)
    # Only tokens that start the prefix and the object; never the end token at the start.
    starts = {tokenizer.decode([token]) for token in allowed.nonzero().flatten().tolist()}
    assert starts and all(" {".startswith(text) or text.startswith(" {") for text in starts)
    assert not allowed[tokenizer.eos_token_id]
    assert matcher.valid_prefix(answer) == len(answer)
    wrong = _ids(tokenizer, ' {"product":"api","severity":"urgent"')
    same = next(i for i, (a, b) in enumerate(zip(answer, wrong, strict=False)) if a != b)
    assert matcher.valid_prefix(wrong) == same  # the draft is cut where it leaves the schema
    matcher.accept_tokens(answer[:-1])
    assert not matcher.complete and not matcher.finished
    matcher.accept(answer[-1])
    assert matcher.complete and matcher.finished  # nothing but the end token may follow
    assert matcher.valid_prefix([tokenizer.eos_token_id, answer[0]]) == 1
    assert matcher.valid_prefix([answer[0]]) == 0
    matcher.reset()
    assert matcher.valid_prefix(answer) == len(answer) and not matcher.complete
    matcher.accept_tokens(answer[:3])
    matcher.rollback(3)
    assert bool(matcher.allowed().eq(allowed).all())
    with pytest.raises(ConstraintViolation):
        matcher.accept(answer[1])


def test_choose_is_the_best_allowed_token(tokenizer: Any) -> None:
    import torch

    compiled = compile_constraint(tokenizer, Constraint.regex("(yes|no)", prefix=" "))
    matcher = compiled.matcher()
    logits = torch.zeros(compiled.vocab_size + 7)  # padding rows past the tokenizer
    logits[compiled.vocab_size + 3] = 100.0  # a padding row is never chosen
    favourite = _ids(tokenizer, "!")[0]
    logits[favourite] = 50.0  # the model's choice, refused
    no = _ids(tokenizer, " no")
    logits[no[0]] = 10.0
    assert matcher.choose(logits) == no[0]
    assert matcher.masks_computed == 1
    matcher.accept_tokens(no)
    logits[tokenizer.eos_token_id] = 60.0
    assert matcher.choose(logits) == tokenizer.eos_token_id  # allowed once complete


def test_compiled_constraints_are_cached_per_tokenizer_and_constraint(
    tokenizer: Any, tmp_path: Path
) -> None:
    constraint = Constraint.json_schema(TICKETS)
    assert compile_constraint(tokenizer, constraint) is compile_constraint(tokenizer, constraint)
    schema_file = tmp_path / "tickets.schema.json"
    schema_file.write_text(json.dumps(TICKETS))
    assert Constraint.json_schema(schema_file) == constraint
    assert Constraint.json_schema(str(schema_file)) == constraint
    other = Constraint.json_schema(TICKETS, prefix=" ")
    assert compile_constraint(tokenizer, other) is not compile_constraint(tokenizer, constraint)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Constraint.json_schema({"type": "array", "uniqueItems": True}), "uniqueItems"),
        (lambda: Constraint.json_schema("[1, 2]"), "is an object"),
        (lambda: Constraint.json_schema(Path("/nonexistent/schema.json")), "cannot read"),
        (lambda: Constraint.lark("start: undefined_rule"), "undefined_rule"),
    ],
)
def test_a_bad_schema_or_grammar_is_refused_with_the_reason(
    tokenizer: Any, make: Any, message: str
) -> None:
    with pytest.raises(ConstraintError, match=message):
        compile_constraint(tokenizer, make())


def test_every_training_target_and_rule_hint_fits_the_fit_constraints(
    tokenizer: Any, small_splits: dict
) -> None:
    validator = jsonschema.Draft202012Validator(target_json_schema())
    rows = [row for split in small_splits.values() for row in split]
    for fmt in ("slots", "json"):
        compiled = compile_constraint(tokenizer, target_constraint(fmt))
        for row in rows:
            assert compiled.accepts_text(encode_target(row["expected"], fmt), tokenizer), row
            assert compiled.accepts_text(rule_hint(row["text"], fmt), tokenizer), row
    for row in rows:
        assert validator.is_valid(json.loads(encode_target(row["expected"], "json")))


@pytest.mark.parametrize(
    "answer",
    [
        " WW @Berkshire",  # a repeated technology
        " PW",  # not in canonical order
        " !c W",  # a comparison of one technology
        " @Atlantis",  # not a place
        " ~0",  # no years left is not a horizon
        " >100 >200",  # a field twice
        " +v +g",  # out of order
    ],
)
def test_the_slot_grammar_refuses_what_expansion_would_reject(tokenizer: Any, answer: str) -> None:
    assert not compile_constraint(tokenizer, target_constraint("slots")).accepts_text(
        answer, tokenizer
    )


@pytest.mark.parametrize(
    "answer",
    [
        {"query_type": "aggregation"},
        {"aggregation": "count"},
        {"query_type": "comparison", "technology": "Wind"},
        {"technology": "Wind", "technologies": ["Wind", "Hydro"]},
        {"technologies": ["Hydro", "Wind"]},
        {"location": "Atlantis"},
        {"fit_id": "12a"},
        {"colour": "red"},
    ],
)
def test_the_json_target_schema_refuses_what_validation_would_reject(
    tokenizer: Any, answer: dict
) -> None:
    text = " " + json.dumps(answer, separators=(",", ":"))
    assert not compile_constraint(tokenizer, target_constraint("json")).accepts_text(
        text, tokenizer
    )
    assert not jsonschema.Draft202012Validator(target_json_schema()).is_valid(answer)


def _tickets_parsers(model: Any, tokenizer: Any) -> tuple[ModelPredictor, ModelPredictor]:
    """The same model held to the tickets schema, and free."""
    held = ModelPredictor(model, tokenizer, FitCodec("json", with_hint=False),
        constraint=Constraint.json_schema(TICKETS, prefix=" "),
    )  # fmt: skip
    return held, ModelPredictor(
        model, tokenizer, FitCodec("json", with_hint=False), constrained=False
    )


@pytest.mark.parametrize("fmt", ["json", "slots"])
def test_a_random_model_writes_only_schema_valid_answers_when_constrained(
    tiny_base: Path, small_splits: dict, fmt: str
) -> None:
    model, tokenizer = load_base(tiny_base)  # random weights
    free = ModelPredictor(model, tokenizer, FitCodec(fmt, with_hint=False), constrained=False)
    held = ModelPredictor(model, tokenizer, FitCodec(fmt, with_hint=False))
    validator = jsonschema.Draft202012Validator(target_json_schema())
    rows = small_splits["test"][:12]
    unconstrained_valid = 0
    for row in rows:
        unconstrained_valid += not free.answer(row["text"]).fallback_used
        result = held.answer(row["text"])
        assert not result.fallback_used, (result.raw, result.problems)
        parsed = decode_target(result.raw, fmt)
        assert result.output == to_compact_dict(parsed)
        if fmt == "json":
            assert validator.is_valid(json.loads(result.raw))
    assert unconstrained_valid == 0  # the same model, unconstrained: garbage every time


def test_a_random_model_fills_an_unseen_schema_validly(tiny_base: Path) -> None:
    model, tokenizer = load_base(tiny_base)
    held, free = _tickets_parsers(model, tokenizer)
    validator = jsonschema.Draft202012Validator(TICKETS)
    for text in TICKET_TEXTS:
        raw = held.generate(text)[0]
        assert validator.is_valid(json.loads(raw)), raw
        assert not _valid_json(free.generate(text)[0], validator)


def test_constrained_prompt_lookup_decodes_like_constrained_greedy(
    memorised: LlmVersion, small_splits: dict
) -> None:
    plain = load_fit_parser(memorised.path, prompt_lookup=0)
    lookup = load_fit_parser(memorised.path, prompt_lookup=4)
    assert plain.constraint is not None and lookup.constraint is not None  # the default
    texts = [MEMORISE["text"], *(row["text"] for row in small_splits["test"][:6])]
    for text in texts:
        answer = plain.generate(text)
        assert lookup.generate(text)[:2] == answer[:2]
        assert not plain.answer(text).fallback_used
    result = lookup.answer(MEMORISE["text"])
    assert result.output == MEMORISE["expected"]
    assert result.forward_passes == 1  # the rule hint, checked by the matcher, in one pass


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packaged SmolLM2-135M-Instruct, converted into a temporary data directory."""
    import os

    from kaizend.models.llm.base import ensure_base

    os.environ["HF_HUB_OFFLINE"] = "1"
    return ensure_base(tmp_path_factory.mktemp("smollm2") / "data")


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["json", "slots"])
def test_the_untrained_base_answers_the_fit_test_split_validly_when_constrained(
    smollm2: Path, fmt: str
) -> None:
    import random

    from kaizend.models.fit.querygen import generate_examples, split_examples

    test = split_examples(generate_examples())["test"]
    rows = random.Random(0).sample(test, 20)
    parser = ModelPredictor.from_base(smollm2, FitCodec(fmt, with_hint=False), threads=2)
    validator = jsonschema.Draft202012Validator(target_json_schema())
    for row in rows:
        result = parser.answer(row["text"])
        assert not result.fallback_used, (row["text"], result.raw, result.problems)
        if fmt == "json":
            assert validator.is_valid(json.loads(result.raw)), result.raw


@pytest.mark.slow
def test_the_untrained_base_fills_an_unseen_schema_validly(smollm2: Path) -> None:
    model, tokenizer = load_base(smollm2)
    held, free = _tickets_parsers(model, tokenizer)
    validator = jsonschema.Draft202012Validator(TICKETS)
    for text in TICKET_TEXTS:
        raw = held.generate(text)[0]
        assert validator.is_valid(json.loads(raw)), raw
    unconstrained = [free.generate(text)[0] for text in TICKET_TEXTS[:2]]
    assert not any(_valid_json(raw, validator) for raw in unconstrained)


def _valid_json(raw: str, validator: Any) -> bool:
    try:
        return validator.is_valid(json.loads(raw))
    except json.JSONDecodeError:
        return False


def test_a_refused_token_ends_the_answer_at_its_last_complete_field(tiny_base: Path) -> None:
    import torch

    model, tokenizer = load_base(tiny_base)
    parser = ModelPredictor(model, tokenizer, FitCodec("slots", with_hint=False))
    forcing = ModelPredictor(
        model, tokenizer, FitCodec("slots", with_hint=False), on_refusal="force"
    )
    logits = torch.zeros(model.config.vocab_size)

    def refuse(
        prefix: str, wanted: str, chooser: ModelPredictor = parser
    ) -> tuple[int, int | None]:
        matcher = chooser.constraint.matcher()
        matcher.accept_tokens(_ids(tokenizer, prefix))
        greedy = _ids(tokenizer, wanted)[0]
        assert matcher.valid_prefix([greedy]) == 0  # the model's choice is refused
        return chooser._next(logits, greedy, matcher)

    # A field out of order after a complete answer: keep what was written.
    assert refuse(" W +g", " @") == (-1, len(_ids(tokenizer, " W +g")))
    # A place that does not exist: "B" is a postcode area, but "Bx" goes on as a word, so
    # the place goes.
    assert refuse(" W @B", "x") == (-1, len(_ids(tokenizer, " W")))
    token, cut = refuse(" W @B", "x", forcing)
    assert cut is None and token >= 0  # force: the best allowed token instead
