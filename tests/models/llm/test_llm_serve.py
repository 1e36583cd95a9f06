from __future__ import annotations

from pathlib import Path

from kaizend.models.fit import rules
from kaizend.models.fit.parser import load_fit_parser
from kaizend.models.fit.prompt import FitCodec, build_prompt, encode_target
from kaizend.models.fit.schema import to_compact_dict
from kaizend.models.llm.base import load_base
from kaizend.models.llm.evaluate import evaluate
from kaizend.models.llm.serve import ModelPredictor
from kaizend.models.llm.version import LlmVersion

from tests.conftest import MEMORISE, fit_parser_task


def test_a_valid_answer_is_expanded_and_needs_no_fallback(memorised: LlmVersion) -> None:
    parser = load_fit_parser(memorised.path)
    result = parser.answer(MEMORISE["text"])
    assert result.raw is not None and result.raw.strip() == "W >100 @Berkshire"
    assert not result.fallback_used
    assert result.output == MEMORISE["expected"]
    assert result.latency_ms > 0
    assert result.to_json()["output"]["postcode_patterns"] == ["RG", "SL"]


def test_merged_unmerged_and_prompt_lookup_decode_the_same(memorised: LlmVersion) -> None:
    texts = [MEMORISE["text"], "solar in the RG17 postcode district", "hydro over 1MW"]
    merged = load_fit_parser(memorised.path, prompt_lookup=0)
    unmerged = load_fit_parser(memorised.path, merge=False, prompt_lookup=0)
    lookup = load_fit_parser(memorised.path, prompt_lookup=4)
    assert load_fit_parser(memorised.path).prompt_lookup > 0  # rule hints: on
    for text in texts:
        plain = merged.generate(text)
        assert plain == unmerged.generate(text)
        assert lookup.generate(text)[:2] == plain[:2]  # same answer, fewer passes at best


def test_garbage_output_falls_back_to_the_rule_parser(tiny_base: Path) -> None:
    model, tokenizer = load_base(tiny_base)  # random weights: never a valid answer
    parser = ModelPredictor(
        model, tokenizer, FitCodec(with_hint=False), max_new_tokens=8, constrained=False
    )
    text = "compare wind and solar in Yorkshire"
    result = parser.answer(text)
    assert result.fallback_used
    assert result.problems
    assert result.output == to_compact_dict(rules.parse(text))
    assert result.generated_tokens <= 8


def test_json_format_stops_at_the_end_of_the_object(tiny_base: Path) -> None:
    model, tokenizer = load_base(tiny_base)
    parser = ModelPredictor(model, tokenizer, FitCodec("json", with_hint=False))
    prompt = tokenizer(build_prompt("x"), add_special_tokens=False).input_ids
    target = tokenizer(encode_target({"technology": "Wind"}, "json")).input_ids
    # Feed the answer as if generated: the decoder must see it is complete.
    assert parser._complete(target)
    assert not parser._complete(target[:-1])
    assert prompt


def test_evaluator_reports_the_same_metrics_for_every_version(
    memorised: LlmVersion, small_splits: dict
) -> None:
    rows = small_splits["test"][:10]
    task = fit_parser_task()
    for version in ("rules", memorised.path):
        report = task.evaluate(version, rows)
        assert report["primary_metric"] == "exact_match"
        for key in ("json_valid_rate", "exact_match", "field_accuracy", "fallback_rate",
                    "postcode_mapping_accuracy", "capacity_accuracy", "multi_filter_success",
                    "latency_p50_ms", "latency_p95_ms"):  # fmt: skip
            assert key in report
        assert report["n"] == 10
    assert evaluate(load_fit_parser("rules"), rows)["fallback_rate"] == 0
    assert "postcode_mapping_accuracy" not in evaluate(load_fit_parser("rules"), rows)
