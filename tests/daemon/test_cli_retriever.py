"""The retriever's commands: benchmark queries, pair export, and their error messages."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kaizend.handlers.events import EVENT_TYPES, event_row
from kaizend.storage.events import EventStore

from tests.conftest import FIT_TASKS_ENV
from tests.daemon.test_cli import kaizend


def test_examples_retriever_writes_the_benchmark_queries(tmp_path: Path) -> None:
    proc = kaizend(tmp_path, "examples", "retriever", check=True)
    examples = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(examples) == 300
    assert all(example["text"] and 1 <= len(example["relevant_ids"]) <= 20 for example in examples)
    unknown = kaizend(tmp_path, "examples", "tickets")
    assert unknown.returncode == 1 and "unknown task 'tickets'" in unknown.stderr


def _store(tmp_path: Path, events: list[dict]) -> None:
    tables: dict[str, list[dict]] = {}
    for event in events:
        body = dict(event)
        kind = body.pop("kind")
        row = event_row(EVENT_TYPES[kind].model_validate(body)) | {"ingested_at": datetime.now(UTC)}
        tables.setdefault(f"{kind}_events", []).append(row)
    store = EventStore(tmp_path / "var" / "kaizend.duckdb")
    store.write(tables)
    store.close()


def test_pairs_retriever_exports_the_stored_feedback_as_csv_and_json(tmp_path: Path) -> None:
    ts = "2026-11-23T10:00:00Z"
    _store(tmp_path, [
        {"kind": "query", "event_id": "q1", "query_id": "a", "ts": ts, "task": "retriever",
         "text": "wind turbines in berkshire", "model_version": "retriever-v0",
         "output": {"results": [{"doc_id": "4004", "score": 0.8},
                                {"doc_id": "1585", "score": 0.7}]},
         "latency_ms": 9.0},
        {"kind": "feedback", "event_id": "f1", "query_id": "a", "ts": ts, "doc_id": "4004",
         "rating": 5},
        {"kind": "feedback", "event_id": "f2", "query_id": "a", "ts": ts, "doc_id": "1585",
         "thumbs": "down"},
    ])  # fmt: skip
    refused = kaizend(tmp_path, "dataset", "retriever", "--model", "base")
    assert refused.returncode == 1
    assert "1 positive judgements stored, 50 needed (tasks.retriever.pairs.min_positive)" in (
        refused.stderr
    )
    out = tmp_path / "dataset.jsonl"
    kaizend(tmp_path, "dataset", "retriever", "--model", "base", "--out", str(out),
            "--fresh-share", "0", "--set", "pairs={min_positive=1, min_negative=0}",
            check=True)  # fmt: skip
    [line] = [json.loads(line) for line in out.read_text().splitlines()]
    pair = line["example"]
    assert line["split"] in ("train", "validation")
    assert (pair["anchor"], pair["positive_id"], pair["negative_ids"]) == (
        "wind turbines in berkshire", "4004", ["1585"],
    )  # fmt: skip
    assert "Berkshire" in pair["positive"]


def test_retriever_commands_say_what_is_wrong(tmp_path: Path) -> None:
    data = tmp_path / "eval.jsonl"
    data.write_text('{"text": "hydro in wales"}\n')
    proc = kaizend(tmp_path, "eval", "retriever", "--model", "base", "--data", str(data))
    assert proc.returncode == 1 and "eval.jsonl:1" in proc.stderr
    proc = kaizend(tmp_path, "predict", "retriever", "--model", "retriever-v9")
    assert proc.returncode == 1
    assert "unknown retriever version 'retriever-v9': give base, champion" in proc.stderr


def test_simulate_retriever_writes_rated_events_of_version_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner
    from kaizend.daemon import cli
    from kaizend.models.fit.retriever import RetrieverTask
    from kaizend.models.retriever.config import RetrieverSettings

    from tests.models.retriever.conftest import TINY_SITES, build_tiny_model

    tiny = build_tiny_model(tmp_path / "tiny")
    # The full register takes minutes to embed; the command is the same on 300 sites.
    monkeypatch.setattr(cli, "_task", lambda settings, name, **options: RetrieverTask(
        RetrieverSettings(base_model=str(tiny)), tmp_path / "chroma", site_count=TINY_SITES,
        benchmark_size=30, name=name,
    ))  # fmt: skip
    monkeypatch.setenv("KAIZEND_DAEMON__DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("KAIZEND_TASKS", FIT_TASKS_ENV["KAIZEND_TASKS"])
    out = tmp_path / "events.jsonl"
    result = CliRunner().invoke(
        cli.cli, ["simulate", "retriever", "--queries", "40", "--out", str(out), "--model", "base"]
    )
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in out.read_text().splitlines()]
    queries = [event for event in events if event["kind"] == "query"]
    assert len(queries) == 40 and {q["model_version"] for q in queries} == {"retriever-v0"}
    assert any(event["kind"] == "feedback" for event in events)
    for event in events:
        body = dict(event)
        EVENT_TYPES[body.pop("kind")].model_validate(body)
