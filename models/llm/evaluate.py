"""The one evaluator for every LLM version (built-in, base model, adapters).

Reads ``{text, expected}`` examples, answers each with the version under test and reports
the same metrics for all, so versions compare like for like. `PRIMARY_METRIC` (exact match,
greater is better) is what decides between versions. Outputs compare as canonical dicts
(the codec's `canonical`), so key order never counts as a mistake.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kaizend.models.llm.serve import Answer, Answerer
from kaizend.models.task import METRIC_TYPE, PER_EXAMPLE

log = logging.getLogger(__name__)

__all__ = [
    "GREATER_IS_BETTER",
    "PRIMARY_METRIC",
    "evaluate",
    "field_matches",
    "load_examples",
    "metrics",
    "score",
]

PRIMARY_METRIC = "exact_match"
"""The metric that decides whether a version beats another."""

GREATER_IS_BETTER = True
"""Whether a larger `PRIMARY_METRIC` is better."""

ExtraMetrics = Callable[[Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]]], dict[str, Any]]
"""A domain's own metrics over (outputs got, outputs wanted), added to the report."""


def load_examples(path: Path) -> list[dict[str, Any]]:
    """Read a JSONL file of ``{text, expected}`` lines (blank lines skipped)."""
    examples = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            examples.append({"text": row["text"], "expected": row["expected"], **row})
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(
                f"{path}:{number}: expected a JSON object with `text` and `expected` ({err})"
            ) from err
    return examples


def field_matches(got: Mapping[str, Any], want: Mapping[str, Any]) -> tuple[int, int]:
    """(fields right, fields compared) over the union of top-level fields either side sets."""
    names = set(got) | set(want)
    return sum(got.get(name) == want.get(name) for name in names), len(names)


def score(
    predicted: Sequence[Mapping[str, Any]], expected: Sequence[Mapping[str, Any]]
) -> dict[str, float]:
    """exact_match (share of outputs equal to the expected one) and field_accuracy (share of
    fields right, pooled over all examples), plus the example count `n`."""
    if len(predicted) != len(expected):
        raise ValueError(f"{len(predicted)} predictions for {len(expected)} expected outputs")
    exact = right = total = 0
    for got, want in zip(predicted, expected, strict=True):
        exact += dict(got) == dict(want)
        fields_right, fields_total = field_matches(got, want)
        right += fields_right
        total += fields_total
    count = len(expected)
    return {
        "exact_match": exact / count if count else 0.0,
        "field_accuracy": right / total if total else 0.0,
        "n": float(count),
    }


def _share(hits: int, count: int) -> float | None:
    return hits / count if count else None


def _percentile(values: Sequence[float], share: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(share * 100) - 1]


def metrics(
    results: Sequence[Answer],
    expected: Sequence[Mapping[str, Any]],
    extra: ExtraMetrics | None = None,
) -> dict[str, Any]:
    """The evaluation metrics of answers against expected canonical outputs.

    - ``json_valid_rate``: answers valid as the model wrote them (no fallback);
    - ``exact_match`` (primary) and ``field_accuracy``: of what the user gets, fallback
      included (an answer with no output matches nothing); ``exact_match_model_only``
      counts every fallback as a miss;
    - ``fallback_rate`` and ``latency_p50_ms`` / ``latency_p95_ms``;
    - `extra`'s metrics, when given;
    - ``per_example``: exact match of each example (1.0 or 0.0), in order, for paired tests.
    """
    wanted = [dict(item) for item in expected]
    got = [dict(result.output or {}) for result in results]
    base = score(got, wanted)
    exact = [r.output is not None and g == w for r, g, w in zip(results, got, wanted, strict=True)]
    fallbacks = [result.fallback_used for result in results]
    valid = [result.valid for result in results]
    latencies = sorted(result.latency_ms for result in results)
    count = len(results)
    report = {
        PRIMARY_METRIC: _share(sum(exact), count) or 0.0,
        "field_accuracy": base["field_accuracy"],
        "json_valid_rate": _share(sum(valid), count),
        "exact_match_model_only": _share(
            sum(hit and ok for hit, ok in zip(exact, valid, strict=True)), count
        ),
        "fallback_rate": _share(sum(fallbacks), count),
        "latency_p50_ms": _percentile(latencies, 0.50),
        "latency_p95_ms": _percentile(latencies, 0.95),
        "mean_generated_tokens": (
            sum(result.generated_tokens for result in results) / count if count else 0.0
        ),
        "mean_forward_passes": (
            sum(result.forward_passes for result in results) / count if count else 0.0
        ),
        "n": count,
    }
    if extra is not None:
        report.update(extra(got, wanted))
    report.update({PER_EXAMPLE: [float(hit) for hit in exact], METRIC_TYPE: "binary"})
    return report


def evaluate(
    answerer: Answerer,
    examples: Iterable[Mapping[str, Any]],
    *,
    canonical: Callable[[Any], dict[str, Any]] = dict,
    extra: ExtraMetrics | None = None,
) -> dict[str, Any]:
    """Answer every example's text with `answerer` and score it (see `metrics`); expected
    outputs are put in canonical form with `canonical` (the codec's) first.

    The result also names the version (``model``) and the ``primary_metric``.
    """
    rows = list(examples)
    started = time.perf_counter()
    log.info("LLM evaluation started: %s on %d examples", answerer.name, len(rows))
    results = [answerer.answer(row["text"]) for row in rows]
    report = metrics(results, [canonical(row["expected"]) for row in rows], extra)
    report.update(model=answerer.name, primary_metric=PRIMARY_METRIC)
    log.info(
        "LLM evaluation finished: %s exact %.4f in %.1f s",
        answerer.name,
        report[PRIMARY_METRIC],
        time.perf_counter() - started,
    )
    return report
