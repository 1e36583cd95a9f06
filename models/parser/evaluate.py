"""The one evaluator for every parser version (rules, base model, adapters).

Reads ``{text, expected}`` examples, parses each with the version under test and reports
the same metrics for all, so versions compare like for like. `PRIMARY_METRIC` (exact match,
greater is better) is what decides between versions.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kaizend.models.fit.schema import ParsedQuery, to_compact_dict
from kaizend.models.fit.scoring import PRIMARY_METRIC, score
from kaizend.models.parser.serve import Parser, ParseResult
from kaizend.models.task import METRIC_TYPE, PER_EXAMPLE

log = logging.getLogger(__name__)

__all__ = ["GREATER_IS_BETTER", "PRIMARY_METRIC", "evaluate", "load_examples", "metrics"]

GREATER_IS_BETTER = True
"""Whether a larger `PRIMARY_METRIC` is better."""

# Fields that count as filters for "multi-filter success"; query_type alone is not one.
_FILTER_GROUPS: tuple[tuple[str, ...], ...] = (
    ("technology", "technologies"),
    ("capacity_min_kw", "capacity_max_kw"),
    ("location", "postcode_patterns"),
    ("fit_id",),
    ("fit_remaining_max_years",),
    ("query_intent",),
    ("include_regional",),
    ("include_revenue",),
    ("aggregation",),
)


def load_examples(path: Path) -> list[dict[str, Any]]:
    """Read a JSONL file of ``{text, expected}`` lines (blank lines skipped)."""
    examples = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            examples.append({"text": row["text"], "expected": row["expected"], **row})
        except (json.JSONDecodeError, KeyError) as err:
            raise ValueError(
                f"{path}:{number}: expected a JSON object with `text` and `expected` ({err})"
            ) from err
    return examples


def _share(hits: int, count: int) -> float | None:
    return hits / count if count else None


def _percentile(values: Sequence[float], share: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(share * 100) - 1]


def metrics(
    results: Sequence[ParseResult], expected: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """The evaluation metrics of parse results against expected compact dicts.

    - ``json_valid_rate``: answers that validated without falling back;
    - ``exact_match`` (primary) and ``field_accuracy``: of what the user gets, fallback
      included; ``exact_match_model_only`` counts every fallback as a miss;
    - ``postcode_mapping_accuracy``, ``capacity_accuracy``: over examples that ask for a
      place or a capacity; ``multi_filter_success``: exact match over examples with two or
      more filters;
    - ``fallback_rate`` and ``latency_p50_ms`` / ``latency_p95_ms``;
    - ``per_example``: exact match of each example (1.0 or 0.0), in order, for paired tests.
    """
    wanted = [dict(item) for item in expected]
    predicted: list[ParsedQuery] = [result.parsed for result in results]
    base = score(predicted, wanted)
    got = [to_compact_dict(parse) for parse in predicted]
    exact = [g == w for g, w in zip(got, wanted, strict=True)]
    fallbacks = [result.fallback_used for result in results]
    postcode = [
        g.get("postcode_patterns") == w["postcode_patterns"]
        for g, w in zip(got, wanted, strict=True)
        if w.get("postcode_patterns")
    ]
    capacity = [
        (g.get("capacity_min_kw"), g.get("capacity_max_kw"))
        == (w.get("capacity_min_kw"), w.get("capacity_max_kw"))
        for g, w in zip(got, wanted, strict=True)
        if "capacity_min_kw" in w or "capacity_max_kw" in w
    ]
    multi = [
        hit
        for hit, w in zip(exact, wanted, strict=True)
        if sum(any(name in w for name in group) for group in _FILTER_GROUPS) >= 2
    ]
    latencies = sorted(result.latency_ms for result in results)
    count = len(results)
    return {
        PRIMARY_METRIC: base[PRIMARY_METRIC],
        "field_accuracy": base["field_accuracy"],
        "json_valid_rate": _share(count - sum(fallbacks), count),
        "exact_match_model_only": _share(
            sum(hit and not fell for hit, fell in zip(exact, fallbacks, strict=True)), count
        ),
        "postcode_mapping_accuracy": _share(sum(postcode), len(postcode)),
        "capacity_accuracy": _share(sum(capacity), len(capacity)),
        "multi_filter_success": _share(sum(multi), len(multi)),
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
        PER_EXAMPLE: [float(hit) for hit in exact],
        METRIC_TYPE: "binary",
    }


def evaluate(parser: Parser, examples: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Parse every example's text with `parser` and score it (see `metrics`).

    The result also names the version (``model``) and the ``primary_metric``.
    """
    rows = list(examples)
    started = time.perf_counter()
    log.info("parser evaluation started: %s on %d examples", parser.name, len(rows))
    results = [parser.parse(row["text"]) for row in rows]
    report = metrics(results, [row["expected"] for row in rows])
    report.update(model=parser.name, primary_metric=PRIMARY_METRIC)
    log.info(
        "parser evaluation finished: %s exact %.4f in %.1f s",
        parser.name,
        report[PRIMARY_METRIC],
        time.perf_counter() - started,
    )
    return report
