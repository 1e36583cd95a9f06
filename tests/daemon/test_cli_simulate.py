"""`kaizend simulate parser`: simulated users' traffic as events `kaizend publish` takes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from kaizend.handlers.events import EVENT_TYPES, event_row
from kaizend.models.fit import userpool
from kaizend.storage.events import EventStore

from tests.daemon.test_cli import kaizend


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_simulate_parser_writes_valid_events_from_the_chosen_pool(tmp_path: Path) -> None:
    out = tmp_path / "heldout.jsonl"
    proc = kaizend(tmp_path, "simulate", "parser", "--queries", "400", "--out", str(out),
                   "--set", "pool=heldout", "--model", "rules", "--seed", "4")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    events = _events(out)
    kinds = [event["kind"] for event in events]
    assert f"wrote {len(events)} events to {out}" in proc.stderr
    assert kinds.count("query") == 400 and kinds.count("feedback") > 250
    assert 40 < kinds.count("correction") < 120  # half of the ~150 wrong parses

    tables: dict[str, list[dict]] = {}
    now = datetime.now(UTC)
    for event in events:
        body = dict(event)
        kind = body.pop("kind")
        parsed = EVENT_TYPES[kind].model_validate(body)  # what the ingest handler checks
        assert parsed.ts <= now  # published now, nothing lies in the future
        tables.setdefault(f"{kind}_events", []).append(event_row(parsed) | {"ingested_at": now})
    heldout = {query.text: query for query in userpool.pool("heldout")}
    queries = {e["query_id"]: e for e in events if e["kind"] == "query"}
    assert all(query["text"] in heldout for query in queries.values())
    assert {query["model_version"] for query in queries.values()} == {"parser-v0"}
    for correction in (e for e in events if e["kind"] == "correction"):
        asked = heldout[queries[correction["query_id"]]["text"]]
        assert correction["corrected_output"] == asked.expected
        assert queries[correction["query_id"]]["output"] != asked.expected

    store = EventStore(tmp_path / "k.duckdb")
    store.write(tables)
    linked = (
        store.cursor()
        .execute("SELECT count(*), sum(n_corrections) FROM query_outcomes WHERE task = 'parser'")
        .fetchone()
    )
    assert linked == (400, kinds.count("correction"))

    again = tmp_path / "again.jsonl"
    kaizend(tmp_path, "simulate", "parser", "--queries", "400", "--out", str(again),
            "--set", "pool=heldout", "--model", "rules", "--seed", "4", check=True)  # fmt: skip
    # Same seed and version: same event ids, so a second publish stores nothing new.
    assert [e["event_id"] for e in _events(again)] == [e["event_id"] for e in events]
    traffic = tmp_path / "traffic.jsonl"
    kaizend(tmp_path, "simulate", "parser", "--queries", "200", "--out", str(traffic),
            "--set", "noise=0", "--set", "correction_share=1", check=True)  # fmt: skip
    unknown = kaizend(tmp_path, "simulate", "parser", "--out", str(traffic), "--set", "pol=x")
    assert unknown.returncode == 1 and "unknown options ['pol']" in unknown.stderr
    pool = {query.text: query for query in userpool.pool("traffic")}
    events = _events(traffic)
    queries = {e["query_id"]: e for e in events if e["kind"] == "query"}
    assert all(query["text"] in pool for query in queries.values())
    wrong = {qid for qid, q in queries.items() if q["output"] != pool[q["text"]].expected}
    assert {e["query_id"] for e in events if e["kind"] == "correction"} == wrong
    for event in (e for e in events if e["kind"] == "feedback"):  # honest raters only
        liked = event.get("thumbs") == "up" or event.get("rating", 0) >= 4
        assert liked == (event["query_id"] not in wrong)
