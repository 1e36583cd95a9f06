"""The DuckDB event store: bulk, idempotent, transactional writes of event batches.

Writes go through Arrow: a batch becomes one Arrow table per event table and one
``INSERT OR IGNORE ... BY NAME`` each, all in one transaction. The primary keys (``event_id``;
``stream_seq`` for rejected messages) make a redelivered batch a no-op, so at-least-once
delivery stores every event exactly once.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from core.errors import StorageError
from storage.readonly import CONNECT_CONFIG, confine

log = logging.getLogger(__name__)

EVENT_TABLES: dict[str, str] = {
    "query": "query_events",
    "feedback": "feedback_events",
    "correction": "correction_events",
}
REJECTED_TABLE = "rejected_events"
TABLES = (*EVENT_TABLES.values(), REJECTED_TABLE)


def apply_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the tables and views that do not exist yet."""
    con.execute(resources.files("storage").joinpath("schema.sql").read_text())


def stored_summary(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Row counts per table and the time of the newest stored event, from any connection."""
    counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
    union = " UNION ALL ".join(
        f"SELECT max(ingested_at) AS t FROM {t}" for t in EVENT_TABLES.values()
    )
    newest = con.execute(f"SELECT max(t) FROM ({union})").fetchone()[0]
    return {"counts": counts, "last_event_at": newest.isoformat() if newest else None}


class EventStore:
    """The daemon's read-write handle on the DuckDB file. One per process.

    The database is confined (:func:`storage.readonly.confine`) as soon as it is open: no file
    outside ``export_dir`` (the Parquet export's), no network, no extension loaded on demand, no
    setting changed, for every cursor, the operators' and the daemon's own.
    """

    def __init__(self, path: Path, export_dir: Path | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(str(path), config=CONNECT_CONFIG)
        except duckdb.IOException as err:
            raise StorageError(
                f"cannot open {path} for writing: {err}. Is another kaizend running? "
                "Operators read through `kaizend sql` or the Parquet export."
            ) from err
        confine(self._con, [export_dir] if export_dir else [])
        self.path = path
        apply_schema(self._con)
        # The Arrow schema of each table, read back from DuckDB so the DDL stays the only
        # definition of the columns.
        self._arrow_schemas = {
            table: self._con.sql(f"SELECT * FROM {table} LIMIT 0").to_arrow_table().schema
            for table in TABLES
        }

    def write(self, rows_by_table: Mapping[str, Sequence[dict[str, Any]]]) -> int:
        """Insert every row of the batch in one transaction; rows already stored are skipped.

        Returns the number of rows offered. Raises :class:`StorageError` if nothing could be
        committed; the caller then leaves the messages unacknowledged for redelivery.
        """
        tables = {
            table: pa.Table.from_pylist(list(rows), schema=self._arrow_schemas[table])
            for table, rows in rows_by_table.items()
            if rows
        }
        try:
            try:
                self._insert(tables, "INSERT")
            except duckdb.ConstraintException:
                # A redelivered or re-published event. A plain INSERT is the common case and
                # costs less; only a batch holding a known event id pays for the skipping one.
                self._insert(tables, "INSERT OR IGNORE")
        except (duckdb.Error, pa.ArrowException) as err:
            raise StorageError(f"could not commit a batch: {err}") from err
        return sum(len(t) for t in tables.values())

    def _insert(self, tables: Mapping[str, pa.Table], verb: str) -> None:
        """One transaction: every table's rows, or none of them."""
        registered: list[str] = []
        try:
            self._con.begin()
            for table, arrow in tables.items():
                view = f"_batch_{table}"
                self._con.register(view, arrow)
                registered.append(view)
                self._con.execute(f"{verb} INTO {table} BY NAME SELECT * FROM {view}")
            self._con.commit()
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                self._con.rollback()
            raise
        finally:
            for view in registered:
                self._con.unregister(view)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A connection to the same database for another thread (readers, exports)."""
        return self._con.cursor()

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the database file."""
        started = time.perf_counter()
        self._con.execute("CHECKPOINT")
        log.info("checkpointed %s in %.0f ms", self.path, (time.perf_counter() - started) * 1e3)

    def close(self) -> None:
        self._con.close()
