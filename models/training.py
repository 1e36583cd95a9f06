"""One training run of any task: snapshot -> training set -> version -> gate evaluations.

Runs inside the training subprocess (see `daemon.training_job`). The training set is built
from the run's snapshot of stored events, the newest share of the real signal is held back
as the fresh evaluation set, the version is trained (resuming its checkpoint), and then the
candidate and the champion are evaluated on the same sets for the offline gate.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kaizend.models.gate import BENCHMARK, FRESH
from kaizend.models.task import PER_EXAMPLE, SOURCES, ProgressCallback, Task
from kaizend.storage.snapshots import load_snapshot

log = logging.getLogger(__name__)

TRAINING_SET_FILE = "training_set.json"
"""Written into the run directory: which events the run trained on and held back."""


def _evaluate(task: Task, version: str | Path, examples: Sequence[dict[str, Any]]) -> dict:
    report = task.evaluate(version, examples)
    sources = [example.get("source") for example in examples]
    if any(sources) and len(sources) == len(report.get(PER_EXAMPLE) or ()):
        report = {**report, SOURCES: sources}  # the gate checks confirmed answers apart
    return {**report, "examples": len(examples)}


def run_training(
    task: Task,
    *,
    snapshot_dir: Path,
    version_dir: Path,
    champion: str | Path,
    fresh_share: float,
    benchmark_max_examples: int = 0,
    progress: ProgressCallback | None = None,
    phase: Callable[[str], None] = lambda name: None,
) -> dict[str, Any]:
    """Train ``task`` on the snapshot into ``version_dir``; evaluate it next to ``champion``.

    Returns what the daemon needs to register the candidate and decide the gate; the ids of
    the events used are in ``<run dir>/training_set.json``.
    """
    phase("building training set")
    con = load_snapshot(snapshot_dir)
    try:
        training_set = task.build_training_set(con, fresh_share=fresh_share)
    finally:
        con.close()
    counts = {
        "train_examples": len(training_set.train),
        "validation_examples": len(training_set.validation),
        "fresh_examples": len(training_set.fresh),
        "events": {kind: len(ids) for kind, ids in training_set.event_ids.items()},
        "fresh_events": {kind: len(ids) for kind, ids in training_set.fresh_event_ids.items()},
        "skipped": training_set.skipped,
    }
    lineage = {
        **counts,
        "event_ids": training_set.event_ids,
        "fresh_event_ids": training_set.fresh_event_ids,
    }
    version_dir.parent.mkdir(parents=True, exist_ok=True)
    (version_dir.parent / TRAINING_SET_FILE).write_text(json.dumps(lineage, indent=2))

    phase("training")
    started = time.perf_counter()
    version = task.train(training_set, version_dir, progress=progress)
    training_s = time.perf_counter() - started
    metrics_file = Path(version) / "metrics.json"
    training = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}

    phase("evaluating")
    benchmark = list(task.benchmark_examples())
    if benchmark_max_examples:
        benchmark = benchmark[:benchmark_max_examples]
    reports: dict[str, dict[str, Any]] = {}
    for name, examples in ((FRESH, list(training_set.fresh)), (BENCHMARK, benchmark)):
        if examples:
            reports[name] = {
                "candidate": _evaluate(task, version, examples),
                "champion": _evaluate(task, champion, examples),
            }
    base_file = Path(version) / "base.json"
    base = json.loads(base_file.read_text()).get("path", "") if base_file.is_file() else ""
    return {
        "version_dir": str(version),
        "base_model": base,
        "training": {**training, "wall_s": round(training_s, 1)},
        "reports": reports,
        "training_set": counts,
    }
