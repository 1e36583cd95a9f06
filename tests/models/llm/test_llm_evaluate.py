"""The parser's evaluator reports each example's exact match, for the gate's paired test."""

from __future__ import annotations

from kaizend.models.fit.parser import load_fit_parser
from kaizend.models.llm.evaluate import evaluate


def test_the_report_holds_each_examples_exact_match_in_order() -> None:
    rules = load_fit_parser("rules")
    (answer,) = rules.predict(["hydro in wales"])
    examples = [
        {"text": "hydro in wales", "expected": answer.output},  # what the rules answer: right
        {"text": "hydro in wales", "expected": {"technology": "Wind"}},
        {"text": "wind turbines in kent", "expected": {"technology": "Photovoltaic"}},
    ]
    report = evaluate(rules, examples)
    assert report["per_example"] == [1.0, 0.0, 0.0]
    assert report["primary_metric_type"] == "binary"
    assert report["exact_match"] == sum(report["per_example"]) / 3
