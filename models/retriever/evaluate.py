"""The retriever's one evaluator: ranking metrics over a version's own collection.

Recall@1/5/10 (share of a query's relevant documents in its top k), MRR@10 (reciprocal rank
of the first relevant result) and nDCG@10 with binary relevance (the primary metric),
averaged over queries. The same function scores the base model and every fine-tuned
version, so their numbers compare.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kaizend.models.task import METRIC_TYPE, PER_EXAMPLE

PRIMARY_METRIC = "ndcg@10"
GREATER_IS_BETTER = True
RECALL_AT = (1, 5, 10)


def ranking_metrics(
    ranked: Sequence[Sequence[str]], relevant: Sequence[set[str] | frozenset[str]]
) -> dict[str, float]:
    """Mean Recall@1/5/10, MRR@10 and nDCG@10 of ranked ids against relevant id sets."""
    return _ranking_metrics(ranked, relevant)[0]


def _ranking_metrics(
    ranked: Sequence[Sequence[str]], relevant: Sequence[set[str] | frozenset[str]]
) -> tuple[dict[str, float], list[float]]:
    """`ranking_metrics` and the nDCG@10 of each query counted (one with relevant ids)."""
    if len(ranked) != len(relevant):
        raise ValueError("one relevant set per ranking is needed")
    totals = {f"recall@{k}": 0.0 for k in RECALL_AT} | {"mrr@10": 0.0, PRIMARY_METRIC: 0.0}
    per_query: list[float] = []
    counted = 0
    for ids, wanted in zip(ranked, relevant, strict=True):
        if not wanted:
            continue
        counted += 1
        top = list(ids)[:10]
        hits = [doc_id in wanted for doc_id in top]
        for k in RECALL_AT:
            totals[f"recall@{k}"] += sum(hits[:k]) / len(wanted)
        first = next((rank for rank, hit in enumerate(hits, 1) if hit), None)
        totals["mrr@10"] += 1.0 / first if first else 0.0
        dcg = sum(1.0 / math.log2(rank + 1) for rank, hit in enumerate(hits, 1) if hit)
        ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(wanted), 10) + 1))
        per_query.append(dcg / ideal)
        totals[PRIMARY_METRIC] += dcg / ideal
    means = {name: (value / counted if counted else 0.0) for name, value in totals.items()}
    return means, per_query


def evaluate(retriever: Any, examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Score ``retriever`` (a `Retriever`) on ``{text, relevant_ids}`` examples; the report's
    ``per_example`` holds each scored example's nDCG@10, in order (for paired tests)."""
    usable = [example for example in examples if example.get("relevant_ids")]
    started = time.perf_counter()
    ranked = retriever.search_many([example["text"] for example in usable], 10) if usable else []
    seconds = time.perf_counter() - started
    metrics, per_query = _ranking_metrics(
        [[doc_id for doc_id, _ in results] for results in ranked],
        [{str(doc_id) for doc_id in example["relevant_ids"]} for example in usable],
    )
    return {
        **{name: round(value, 4) for name, value in metrics.items()},
        "primary_metric": PRIMARY_METRIC,
        PER_EXAMPLE: [round(value, 6) for value in per_query],
        METRIC_TYPE: "continuous",
        "examples": len(usable),
        "skipped_without_relevant": len(examples) - len(usable),
        "version": getattr(retriever, "version", None),
        "documents": len(retriever.index) if hasattr(retriever, "index") else None,
        "queries_per_s": round(len(usable) / seconds, 1) if seconds > 0 else None,
    }


def load_examples(path: Path) -> list[dict[str, Any]]:
    """``{text, relevant_ids}`` lines of a JSONL file; ValueError naming a bad line."""
    examples = []
    with Path(path).open() as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                example = json.loads(line)
                text, relevant = example["text"], example["relevant_ids"]
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ValueError(
                    f'{path}:{number}: each line must be a JSON object with "text" and '
                    f'"relevant_ids": {err}'
                ) from err
            if not isinstance(text, str) or not isinstance(relevant, list):
                raise ValueError(
                    f'{path}:{number}: "text" must be a string and "relevant_ids" a list'
                )
            examples.append({**example, "relevant_ids": [str(doc_id) for doc_id in relevant]})
    return examples
