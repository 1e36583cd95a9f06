"""Benchmark: how different the simulated users' questions are from the parser's training data.

Measured in the same run, with the one parser evaluator (`models.llm.evaluate`):

- the rule parser (version 0) on querygen's test split (the baseline) and on the user
  pool's traffic and held-out questions (`models.fit.userpool`), overall, per intent and
  with or without typos;
- exact text overlap between the pool and querygen's 4,500 texts, and phrasing novelty
  (`userpool.phrasing_novelty`) of the pool against querygen, next to querygen's own test
  split against its train split;
- the experiment loop's success rate (`storage.experiments.unit_metrics`) of simulated users
  (`models.fit.users`, default behaviour) served by an oracle parser and by the rules;
- with ``--model DIR``, a trained parser version on the same sets.

Prints one JSON line. Run: ``.venv/bin/python bench/parser_userpool.py [--model DIR]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kaizend.handlers.events import EVENT_TYPES, event_row  # noqa: E402
from kaizend.models.fit import querygen, userpool  # noqa: E402
from kaizend.models.fit.parser import load_fit_parser  # noqa: E402
from kaizend.models.fit.schema import ParsedQuery, to_compact_dict  # noqa: E402
from kaizend.models.fit.users import simulate_parser_traffic  # noqa: E402
from kaizend.models.llm.evaluate import evaluate  # noqa: E402
from kaizend.models.llm.serve import Answer  # noqa: E402
from kaizend.storage.events import EventStore  # noqa: E402
from kaizend.storage.experiments import unit_metrics  # noqa: E402

from bench.record import record  # noqa: E402

START = datetime(2026, 11, 1, tzinfo=UTC)


class Oracle:
    """Answers every pool question with its intended parse."""

    name = "oracle"

    def __init__(self, answers: dict[str, ParsedQuery]) -> None:
        self.answers = answers

    def answer(self, text: str) -> Answer:
        return Answer(text, to_compact_dict(self.answers[text]), False, 0.0)


def _brief(report: dict[str, Any]) -> dict[str, float]:
    return {name: round(report[name], 4) for name in ("exact_match", "field_accuracy", "n")}


def _by_group(parser: Any, queries: list[userpool.UserQuery]) -> dict[str, dict[str, float]]:
    groups: dict[str, list[bool]] = defaultdict(list)
    for query in queries:
        right = parser.answer(query.text).output == query.expected
        groups[query.intent].append(right)
        groups["with typos" if query.typos else "without typos"].append(right)
    return {name: round(sum(hits) / len(hits), 3) for name, hits in sorted(groups.items())}


def _success(traffic: list[userpool.UserQuery], parsers: dict[str, Any]) -> dict[str, float]:
    """Success per parser, counted by the experiment loop's own query over stored events."""
    (champion, first), (challenger, second) = parsers.items()
    tables: dict[str, list[dict]] = defaultdict(list)
    for version, arm, parser in ((champion, "champion", first), (challenger, "challenger", second)):
        events = simulate_parser_traffic(traffic, parser, seed=11, model_version=version, arm=arm,
                                         start=START)  # fmt: skip
        for event in events:
            # The same users face both versions: each arm's its own, as in an experiment.
            body = dict(event) | ({"unit_id": f"{event['unit_id']}-{arm}"} if "unit_id" in event
                                  else {})  # fmt: skip
            kind = body.pop("kind")
            row = event_row(EVENT_TYPES[kind].model_validate(body))
            tables[f"{kind}_events"].append(row | {"ingested_at": datetime.now(UTC)})
    with tempfile.TemporaryDirectory() as directory:
        store = EventStore(Path(directory) / "k.duckdb")
        store.write(dict(tables))
        metrics = unit_metrics(store.cursor(), task="parser", champion=champion,
                               challenger=challenger, start=START, end=None,
                               attribution_s=86400.0)  # fmt: skip
        store.close()
    out = {}
    for version, arm in ((champion, "champion"), (challenger, "challenger")):
        units = metrics[arm]
        out[version] = round(float(units["successes"].sum() / units["queries"].sum()), 4)
        out[f"{version}_corrections"] = float(units["corrections"].sum())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="a trained parser version")
    parser.add_argument("--traffic", type=int, default=2000, help="simulated queries")
    args = parser.parse_args()
    started = time.perf_counter()
    generated = querygen.generate_examples(seed=0)
    qg_split = querygen.split_examples(generated, seed=0)
    pools = {name: userpool.pool(name) for name in userpool.POOLS}
    everything = [*pools["traffic"], *pools["heldout"]]
    rules = load_fit_parser("rules")
    report: dict[str, Any] = {
        "pool_size": len(everything),
        "templates": len({query.template for query in everything}),
        "typo_share": round(sum(query.typos > 0 for query in everything) / len(everything), 3),
        "rules_querygen_test": _brief(evaluate(rules, qg_split["test"])),
    }
    for name, queries in pools.items():
        report[f"rules_pool_{name}"] = _brief(
            evaluate(rules, [query.to_example() for query in queries])
        )
    report["rules_pool_traffic_exact_by_group"] = _by_group(rules, pools["traffic"])
    generator_keys = {querygen.dedupe_key(example["text"]) for example in generated}
    report["exact_overlap_with_querygen"] = sum(
        querygen.dedupe_key(query.text) in generator_keys for query in everything
    )
    texts = [example["text"] for example in generated]
    report["novelty_pool_vs_querygen"] = round(
        userpool.phrasing_novelty([query.text for query in everything], texts), 3
    )
    report["novelty_querygen_test_vs_train"] = round(
        userpool.phrasing_novelty(
            [e["text"] for e in qg_split["test"]], [e["text"] for e in qg_split["train"]]
        ),
        3,
    )
    traffic = userpool.sample_traffic(pools["traffic"], args.traffic, seed=11)
    oracle = Oracle({query.text: query.parsed for query in everything})
    report["success_on_traffic"] = _success(traffic, {"oracle": oracle, "rules": rules})
    if args.model is not None:
        model = load_fit_parser(args.model)
        report["model_querygen_test"] = _brief(evaluate(model, qg_split["test"]))
        for name, queries in pools.items():
            report[f"model_pool_{name}"] = _brief(
                evaluate(model, [query.to_example() for query in queries])
            )
    report["seconds"] = round(time.perf_counter() - started, 2)
    record("parser_userpool", report)


if __name__ == "__main__":
    main()
