"""The retriever's evaluator: ranking metrics as users feel them, and its input file."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from models.retriever.evaluate import load_examples, ranking_metrics


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
