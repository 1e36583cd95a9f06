"""Training snapshots: the exact stored events one training run learns from, as Parquet.

The daemon is the only process that opens the DuckDB file, so a training (a subprocess, or a
worker on another machine) gets a copy of what it needs: the task's queries that received
any feedback or correction, and those signals, all ingested up to a cutoff. The files make a
run reproducible: loading them gives the task the same rows, however the database has grown.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
from kaizend.storage.events import EVENT_TABLES, apply_schema

_QUERIES = """
SELECT * FROM query_events q
WHERE q.task = $task AND q.ingested_at <= $cutoff
  AND (q.query_id IN (SELECT query_id FROM feedback_events WHERE ingested_at <= $cutoff)
       OR q.query_id IN (SELECT query_id FROM correction_events WHERE ingested_at <= $cutoff))
"""
_SIGNALS = """
SELECT * FROM {table}
WHERE ingested_at <= $cutoff AND query_id IN (
    SELECT query_id FROM query_events WHERE task = $task AND ingested_at <= $cutoff)
"""


def export_snapshot(
    con: duckdb.DuckDBPyConnection, task: str, cutoff: datetime, directory: Path
) -> dict[str, int]:
    """Write ``<table>.parquet`` for each event table into ``directory``; rows per table."""
    directory.mkdir(parents=True, exist_ok=True)
    params = {"task": task, "cutoff": cutoff}
    counts = {}
    for table in EVENT_TABLES.values():
        sql = _QUERIES if table == "query_events" else _SIGNALS.format(table=table)
        rows = con.sql(sql, params=params).to_arrow_table()
        partial = directory / f"{table}.parquet.partial"
        pq.write_table(rows, partial)
        partial.replace(directory / f"{table}.parquet")
        counts[table] = rows.num_rows
    return counts


def load_snapshot(directory: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory database with kaizend's schema holding the snapshot's rows."""
    con = duckdb.connect()
    apply_schema(con)
    for table in EVENT_TABLES.values():
        path = directory / f"{table}.parquet"
        if not path.is_file():
            raise FileNotFoundError(f"snapshot {directory} has no {path.name}")
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM read_parquet(?)", [str(path)])
    return con
