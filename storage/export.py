"""Parquet export of every table, for notebooks and DuckDB CLIs while the daemon holds the file.

Each table is written to ``<table>.parquet.tmp`` and renamed over ``<table>.parquet``, so a
reader always sees a complete file, never one being written.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import duckdb
from kaizend.storage.events import TABLES

log = logging.getLogger(__name__)


def export_parquet(con: duckdb.DuckDBPyConnection, dest: Path) -> dict[str, int]:
    """Write one Parquet file per table into ``dest``; return the row count of each."""
    started = time.perf_counter()
    dest.mkdir(parents=True, exist_ok=True)
    rows: dict[str, int] = {}
    for table in TABLES:
        final = dest / f"{table}.parquet"
        partial = dest / f"{table}.parquet.tmp"
        escaped = str(partial).replace("'", "''")
        written = con.execute(f"COPY (SELECT * FROM {table}) TO '{escaped}' (FORMAT parquet)")
        rows[table] = written.fetchone()[0]
        os.replace(partial, final)
    log.info(
        "exported %d tables to %s in %.0f ms",
        len(rows),
        dest,
        (time.perf_counter() - started) * 1e3,
    )
    return rows
