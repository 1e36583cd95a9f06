"""The retriever's evaluator: ranking metrics as users feel them, and its input file."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from kaizend.models.retriever.evaluate import evaluate, load_examples, ranking_metrics


def test_a_perfect_ranking_scores_one_and_a_miss_scores_zero() -> None:
    perfect = ranking_metrics([["a", "b", "x"]], [{"a", "b"}])
    assert perfect == {"recall@1": 0.5, "recall@5": 1.0, "recall@10": 1.0, "mrr@10": 1.0,
                       "ndcg@10": 1.0}  # fmt: skip
    missed = ranking_metrics([["x", "y", "z"]], [{"a"}])
    assert all(value == 0.0 for value in missed.values())


def test_lower_ranks_count_less() -> None:
    third = ranking_metrics([["x", "y", "a"]], [{"a"}])
    assert third["mrr@10"] == pytest.approx(1 / 3)
    assert third["ndcg@10"] == pytest.approx(1 / math.log2(4))
    assert third["recall@1"] == 0.0 and third["recall@5"] == 1.0
    eleventh = ranking_metrics([[*"bcdefghijk", "a"]], [{"a"}])
    assert eleventh["recall@10"] == 0.0 and eleventh["ndcg@10"] == 0.0


def test_ndcg_is_normalised_by_the_best_possible_top_ten() -> None:
    # 12 relevant documents, all ten shown are relevant: as good as it gets.
    relevant = {str(i) for i in range(12)}
    report = ranking_metrics([[str(i) for i in range(10)]], [relevant])
    assert report["ndcg@10"] == pytest.approx(1.0)
    assert report["recall@10"] == pytest.approx(10 / 12)


def test_means_are_over_queries_with_relevant_documents() -> None:
    report = ranking_metrics([["a"], ["x"], ["q"]], [{"a"}, {"b"}, set()])
    assert report["mrr@10"] == 0.5


def test_load_examples_names_the_bad_line(tmp_path: Path) -> None:
    data = tmp_path / "eval.jsonl"
    data.write_text('{"text": "wind in kent", "relevant_ids": [4004, "12"]}\n\n{"text": 1}\n')
    with pytest.raises(ValueError, match=r"eval.jsonl:3: .*relevant_ids"):
        load_examples(data)
    data.write_text('{"text": "wind in kent", "relevant_ids": [4004, "12"]}\n')
    assert load_examples(data)[0]["relevant_ids"] == ["4004", "12"]


def test_the_report_holds_each_scored_querys_ndcg_in_order() -> None:
    class Ranking:
        """A search engine with fixed answers: what `evaluate` scores."""

        def search_many(self, texts: list[str], k: int) -> list[list[tuple[str, float]]]:
            answers = {"first": ["a", "x"], "second": ["x", "a"], "none": ["a"]}
            return [[(doc_id, 1.0) for doc_id in answers[text]] for text in texts]

    examples = [
        {"text": "first", "relevant_ids": ["a"]},
        {"text": "unjudged", "relevant_ids": []},  # not scored, so not in per_example
        {"text": "second", "relevant_ids": ["a"]},
        {"text": "none", "relevant_ids": ["b"]},
    ]
    report = evaluate(Ranking(), examples)
    assert report["per_example"] == pytest.approx([1.0, 1 / math.log2(3), 0.0])
    assert report["primary_metric_type"] == "continuous" and report["examples"] == 3
    assert report["ndcg@10"] == pytest.approx(sum(report["per_example"]) / 3, abs=1e-4)
