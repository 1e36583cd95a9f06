"""The event store: bulk idempotent writes, atomic batches, exports."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from kaizend.core.errors import StorageError, UnstorableData
from kaizend.storage.events import EventStore, integer_ranges, stored_summary
from kaizend.storage.export import export_parquet

NOW = datetime(2026, 11, 23, 10, tzinfo=UTC)


def feedback(event_id: str, rating: int | None = 4) -> dict:
    return {
        "event_id": event_id,
        "query_id": "q1",
        "ts": NOW,
        "rating": rating,
        "schema_version": 1,
        "ingested_at": NOW,
    }


def test_rewriting_a_batch_stores_each_event_once(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "k.duckdb")
    batch = {"feedback_events": [feedback(f"f{i}") for i in range(1000)]}
    store.write(batch)
    store.write(batch)  # a redelivered batch
    store.write({"feedback_events": [feedback("f1"), feedback("f1"), feedback("new")]})
    assert stored_summary(store.cursor())["counts"]["feedback_events"] == 1001


def test_a_failing_batch_leaves_nothing_behind(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "k.duckdb")
    bad_query = {"event_id": "q", "query_id": "q", "ts": NOW}  # NOT NULL columns missing
    with pytest.raises(UnstorableData, match="NOT NULL constraint failed"):
        store.write({"feedback_events": [feedback("f1")], "query_events": [bad_query]})
    assert stored_summary(store.cursor())["counts"]["feedback_events"] == 0
    store.write({"feedback_events": [feedback("f1")]})  # the store is usable afterwards
    assert stored_summary(store.cursor())["counts"]["feedback_events"] == 1


def test_a_second_writer_gets_a_clear_error(tmp_path: Path) -> None:
    holder = EventStore(tmp_path / "k.duckdb")
    # DuckDB's lock is per process; another process opening the file for writing fails.
    code = (
        "from pathlib import Path; from storage.events import EventStore, stored_summary\n"
        f"EventStore(Path({str(tmp_path / 'k.duckdb')!r}))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode != 0
    assert "Is another kaizend running?" in proc.stderr
    holder.close()


def test_parquet_export_has_every_table_and_row(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "k.duckdb", export_dir=tmp_path / "export")
    store.write({"feedback_events": [feedback(f"f{i}") for i in range(42)]})
    rows = export_parquet(store.cursor(), tmp_path / "export")
    assert rows["feedback_events"] == 42
    with duckdb.connect() as con:
        exported = con.execute(
            f"SELECT count(*), min(rating) FROM '{tmp_path / 'export' / 'feedback_events.parquet'}'"
        ).fetchone()
    assert exported == (42, 4)
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == [
        "correction_events.parquet",
        "feedback_events.parquet",
        "query_events.parquet",
        "rejected_events.parquet",
    ]


def test_the_store_writes_no_file_outside_its_export_directory(tmp_path: Path) -> None:
    # The confinement is the database's, so it binds the daemon's own connection too.
    store = EventStore(tmp_path / "k.duckdb", export_dir=tmp_path / "export")
    store.write({"feedback_events": [feedback("f1")]})
    with pytest.raises(duckdb.PermissionException, match="disabled by configuration"):
        export_parquet(store.cursor(), tmp_path / "elsewhere")
    with pytest.raises(duckdb.InvalidInputException, match="locked"):
        store.cursor().execute("SET enable_external_access = true")
    assert not list((tmp_path / "elsewhere").iterdir())
    store.write({"feedback_events": [feedback("f2")]})  # still writable, still checkpoints
    store.checkpoint()
    assert stored_summary(store.cursor())["counts"]["feedback_events"] == 2


def query(event_id: str, **fields: object) -> dict:
    return {
        "event_id": event_id,
        "query_id": "q1",
        "ts": NOW,
        "task": "parser",
        "text": "wind",
        "model_version": "v0",
        "latency_ms": 1.0,
        "schema_version": 1,
        "ingested_at": NOW,
    } | fields


# Rows that bypass validation, each refused by a different part of the real write path.
UNSTORABLE = {
    "schema_version too large for INTEGER (Arrow)": (
        "query_events",
        query("bad-int", schema_version=3_000_000_000),
        "too large",
    ),
    "rating too large for TINYINT (Arrow)": ("feedback_events", feedback("bad-tiny", 300), ""),
    "lone surrogate (UTF-8 encoding)": (
        "query_events",
        query("bad-surrogate", text="\ud800"),
        "surrogates not allowed",
    ),
    "malformed JSON (DuckDB's JSON cast)": (
        "query_events",
        query("bad-json", output='{"a": "\\ud800"}'),
        "Malformed JSON",
    ),
    "NOT NULL (DuckDB's constraint)": (
        "feedback_events",
        {**feedback("bad-null"), "query_id": None},
        "NOT NULL",
    ),
}


def test_refused_rows_are_isolated_and_their_neighbours_commit(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "k.duckdb")
    batch: dict[str, list[dict]] = {"query_events": [], "feedback_events": []}
    for i in range(300):
        batch["query_events"].append(query(f"q{i}"))
        batch["feedback_events"].append(feedback(f"f{i}"))
        if i % 60 == 7:  # the bad rows spread over the batch
            name = list(UNSTORABLE)[i // 60]
            table, row, _ = UNSTORABLE[name]
            batch[table].append(row)
    refused = store.write_isolating(batch)
    got = {batch[r.table][r.index]["event_id"]: r.error for r in refused}
    assert sorted(got) == sorted(row["event_id"] for _, row, _ in UNSTORABLE.values())
    for name, (_, row, words) in UNSTORABLE.items():
        assert words in got[row["event_id"]], (name, got[row["event_id"]])
    counts = stored_summary(store.cursor())["counts"]
    assert (counts["query_events"], counts["feedback_events"]) == (300, 300)
    # A redelivery of the same batch: the same rows refused, nothing stored twice.
    assert len(store.write_isolating(batch)) == len(UNSTORABLE)
    counts = stored_summary(store.cursor())["counts"]
    assert (counts["query_events"], counts["feedback_events"]) == (300, 300)
    stored_ids = {
        r[0] for r in store.cursor().execute("SELECT event_id FROM query_events").fetchall()
    }
    assert not stored_ids & set(got)


def test_a_storage_fault_fails_the_whole_batch_not_one_row(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "k.duckdb")
    batch = {"feedback_events": [feedback("f1"), feedback("bad", 300), feedback("f2")]}
    store.cursor().execute("ALTER TABLE feedback_events RENAME TO feedback_away")
    with pytest.raises(StorageError, match="could not commit"):
        store.write_isolating(batch)
    store.cursor().execute("ALTER TABLE feedback_away RENAME TO feedback_events")
    store.close()
    with pytest.raises(StorageError, match="could not commit"):
        store.write_isolating({"feedback_events": [feedback("f3")]})


def test_integer_ranges_follow_the_ddl() -> None:
    ranges = integer_ranges()
    assert ranges["query_events"]["schema_version"] == (-(2**31), 2**31 - 1)
    assert ranges["feedback_events"]["rating"] == (-128, 127)
    assert ranges["rejected_events"]["stream_seq"] == (-(2**63), 2**63 - 1)
