"""Benchmark: does fine-tuning on simulated feedback beat the base embedder? Same run.

1. The fixed benchmark queries (`RetrieverTask.benchmark_examples`, never used in training).
2. ``--queries`` other generated queries (no filter combination of the benchmark's) are
   served by the base index and rated by simulated users (`simulate_feedback`); the events
   go through the event schemas into a DuckDB file, as the daemon would store them.
3. The task builds pairs from the stored events, fine-tunes the base, indexes the new
   version in its own collection, and evaluates base and fine-tuned on the benchmark queries.

Prints one JSON line. Run:
``.venv/bin/python bench/retriever_quality.py [--data-dir var/bench-retriever] [--queries 2000]``.
A complete base collection in ``--data-dir`` from an earlier run is reused (fingerprinted).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kaizend.handlers.events import EVENT_TYPES, event_row  # noqa: E402
from kaizend.models.fit.retrieval import Register, generate_queries, simulate_feedback  # noqa: E402
from kaizend.models.fit.retriever import RetrieverTask  # noqa: E402
from kaizend.models.fit.sites import SITE_COUNT  # noqa: E402
from kaizend.models.retriever.config import RetrieverSettings  # noqa: E402
from kaizend.storage.events import EventStore  # noqa: E402

KEYS = ("ndcg@10", "mrr@10", "recall@1", "recall@5", "recall@10")


def _rows(events: list[dict]) -> dict[str, list[dict]]:
    """Events as the ingest handler stores them: validated, one table per kind."""
    now = datetime.now(UTC)
    tables: dict[str, list[dict]] = {}
    for event in events:
        body = dict(event)
        kind = body.pop("kind")
        row = event_row(EVENT_TYPES[kind].model_validate(body)) | {"ingested_at": now}
        tables.setdefault(f"{kind}_events", []).append(row)
    return tables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT / "var" / "bench-retriever")
    parser.add_argument("--queries", type=int, default=2000, help="queries with feedback")
    parser.add_argument("--sites", type=int, default=SITE_COUNT, help="register size")
    parser.add_argument("--benchmark", type=int, default=300, help="held-out queries")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override retriever.training or retriever.pairs settings, e.g. epochs=2",
    )
    options = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if options.threads:
        import torch

        torch.set_num_threads(options.threads)

    base = RetrieverSettings()
    training, pairs = base.training.model_dump(), base.pairs.model_dump()
    for item in options.set:
        key, _, value = item.partition("=")
        target = training if key in training else pairs if key in pairs else None
        if target is None:
            parser.error(f"--set {key}: not a retriever.training or retriever.pairs key")
        target[key] = (
            json.loads(value) if value[:1].isdigit() or value in ("true", "false") else value
        )
    settings = RetrieverSettings(**{**base.model_dump(), "training": training, "pairs": pairs})

    data_dir = options.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    task = RetrieverTask(
        settings,
        data_dir / "chroma",
        site_count=options.sites,
        benchmark_size=options.benchmark,
        name="retriever",
    )
    timings: dict[str, float] = {}
    began = time.perf_counter()

    benchmark = task.benchmark_examples()
    register = Register(task.sites)
    held_out_keys = {query.key for query in task.benchmark_queries()}
    queries = generate_queries(
        register, options.queries, seed=options.seed, exclude_keys=held_out_keys
    )
    overlap = {q.text.lower() for q in queries} & {e["text"].lower() for e in benchmark}
    assert not overlap, f"benchmark texts in the training queries: {sorted(overlap)[:3]}"

    started = time.perf_counter()
    base_retriever = task.load("base")
    timings["base_index_s"] = time.perf_counter() - started

    started = time.perf_counter()
    events = simulate_feedback(queries, base_retriever, register, seed=options.seed)
    db = data_dir / f"feedback-{options.seed}.duckdb"
    db.unlink(missing_ok=True)
    store = EventStore(db)
    store.write(_rows(events))
    with (data_dir / f"feedback-{options.seed}.jsonl").open("w") as out:
        for event in events:
            out.write(json.dumps(event) + "\n")
    timings["simulate_s"] = time.perf_counter() - started

    started = time.perf_counter()
    training_set = task.build_training_set(store.cursor())
    timings["pairs_s"] = time.perf_counter() - started

    out_dir = data_dir / f"retriever-ft-{options.seed}"
    started = time.perf_counter()
    version = task.train(training_set, out_dir)
    timings["train_s"] = time.perf_counter() - started

    started = time.perf_counter()
    tuned_retriever = task.load(version)
    timings["tuned_index_s"] = time.perf_counter() - started

    started = time.perf_counter()
    base_report = task.evaluate("base", benchmark)
    tuned_report = task.evaluate(version, benchmark)
    timings["evaluate_s"] = time.perf_counter() - started
    timings["total_s"] = time.perf_counter() - began

    metrics = json.loads((version / "metrics.json").read_text())
    kinds: dict[str, int] = {}
    for event in events:
        kinds[event["kind"]] = kinds.get(event["kind"], 0) + 1
    result = {
        "benchmark": "retriever_quality",
        "documents": len(tuned_retriever.index),
        "feedback_queries": len(queries),
        "events": kinds,
        "train_pairs": len(training_set.train),
        "validation_pairs": len(training_set.validation),
        "held_out_queries": base_report["examples"],
        "base": {key: base_report[key] for key in KEYS},
        "fine_tuned": {key: tuned_report[key] for key in KEYS},
        "ndcg@10_relative_gain": round(tuned_report["ndcg@10"] / base_report["ndcg@10"] - 1, 4)
        if base_report["ndcg@10"]
        else None,
        "training": {
            "steps": metrics["steps"],
            "early_stopped": metrics["early_stopped"],
            "eval_loss": metrics["eval_loss"],
            "loss": settings.training.loss,
            "epochs": settings.training.epochs,
            "hard_negatives": settings.pairs.hard_negatives,
        },
        "timings_s": {key: round(value, 1) for key, value in timings.items()},
        "threads": __import__("torch").get_num_threads(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
