"""The DuckDB event store: bulk, idempotent, transactional writes of event batches.

Writes go through Arrow: a batch becomes one Arrow table per event table and one
``INSERT OR IGNORE ... BY NAME`` each, all in one transaction. The primary keys (``event_id``;
``stream_seq`` for rejected messages) make a redelivered batch a no-op, so at-least-once
delivery stores every event exactly once.

Two kinds of failure are told apart. A *data error* is a value the database refuses (an Arrow
conversion, a constraint, an invalid input): :meth:`EventStore.write_isolating` splits the batch
until each refused row is alone and reports it, and everything else commits. Any other error is
a *storage fault* (I/O, a full disk, a closed database, a missing table): the whole batch fails
with :class:`StorageError` and is retried later.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from kaizend.core.errors import StorageError, UnstorableData
from kaizend.storage.readonly import CONNECT_CONFIG, confine

log = logging.getLogger(__name__)

EVENT_TABLES: dict[str, str] = {
    "query": "query_events",
    "feedback": "feedback_events",
    "correction": "correction_events",
}
REJECTED_TABLE = "rejected_events"
TABLES = (*EVENT_TABLES.values(), REJECTED_TABLE)

DATA_ERRORS: tuple[type[duckdb.Error], ...] = (
    duckdb.DataError,  # conversion, out of range, type mismatch
    duckdb.IntegrityError,  # NOT NULL, CHECK, a key (outside INSERT OR IGNORE)
    duckdb.InvalidInputException,
)
"""DuckDB errors caused by a row's values. Every other DuckDB error is a storage fault."""

# Errors of pa.Table.from_pylist: it only converts values in memory, so each is a data error
# (ArrowInvalid "too large to fit", UnicodeEncodeError of a lone surrogate, a wrong type).
_CONVERSION_ERRORS = (pa.ArrowException, ValueError, TypeError, OverflowError)


def apply_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the tables and views that do not exist yet."""
    con.execute(resources.files(__package__).joinpath("schema.sql").read_text())


def arrow_schemas(con: duckdb.DuckDBPyConnection) -> dict[str, pa.Schema]:
    """The Arrow schema of each event table, read back from DuckDB: the DDL stays the only
    definition of the columns."""
    return {
        table: con.sql(f"SELECT * FROM {table} LIMIT 0").to_arrow_table().schema for table in TABLES
    }


@functools.cache
def integer_ranges() -> dict[str, dict[str, tuple[int, int]]]:
    """The values each integer column of each event table can hold: ``{table: {column:
    (min, max)}}``, derived from the DDL (an in-memory database with the schema applied)."""
    with duckdb.connect() as con:
        apply_schema(con)
        schemas = arrow_schemas(con)
    ranges: dict[str, dict[str, tuple[int, int]]] = {}
    for table, schema in schemas.items():
        ranges[table] = {}
        for column in schema:
            if pa.types.is_integer(column.type):
                bits = column.type.bit_width
                if pa.types.is_signed_integer(column.type):
                    ranges[table][column.name] = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
                else:
                    ranges[table][column.name] = (0, 2**bits - 1)
    return ranges


@dataclass(frozen=True)
class RefusedRow:
    """A row the database would not store, alone in its transaction, and why."""

    table: str
    index: int  # in ``rows_by_table[table]``
    error: str


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
        self._arrow_schemas = arrow_schemas(self._con)
        # pyarrow imports pandas on its first conversion of Python rows (about a second of
        # CPU): at the opening of the store, not in the first batch's commit.
        for schema in self._arrow_schemas.values():
            pa.Table.from_pylist([], schema=schema)

    def write(self, rows_by_table: Mapping[str, Sequence[dict[str, Any]]]) -> int:
        """Insert every row of the batch in one transaction; rows already stored are skipped.

        Returns the number of rows offered. Nothing is committed when it raises:
        :class:`UnstorableData` when the database refuses a value (see :meth:`write_isolating`),
        :class:`StorageError` on a storage fault (the caller leaves the messages
        unacknowledged for redelivery).
        """
        tables = {}
        for table, rows in rows_by_table.items():
            if rows:
                try:
                    tables[table] = pa.Table.from_pylist(
                        list(rows), schema=self._arrow_schemas[table]
                    )
                except _CONVERSION_ERRORS as err:
                    raise UnstorableData(f"{table}: {type(err).__name__}: {err}") from err
        try:
            try:
                self._insert(tables, "INSERT")
            except duckdb.ConstraintException:
                # A redelivered or re-published event. A plain INSERT is the common case and
                # costs less; only a batch holding a known event id pays for the skipping one.
                # (A CHECK or NOT NULL violation fails this one too.)
                self._insert(tables, "INSERT OR IGNORE")
        except DATA_ERRORS as err:
            raise UnstorableData(f"{type(err).__name__}: {err}") from err
        except duckdb.Error as err:
            raise StorageError(f"could not commit a batch: {err}") from err
        return sum(len(t) for t in tables.values())

    def write_isolating(
        self, rows_by_table: Mapping[str, Sequence[dict[str, Any]]]
    ) -> list[RefusedRow]:
        """Commit every row the database accepts; return each one it refuses, with its error.

        The whole batch is one transaction when every value is accepted (the common case, as
        cheap as :meth:`write`). When the database refuses a value, the batch is split in
        halves, each committed on its own, until every refused row is alone: one bad row among
        n costs about 2 log2(n) extra transactions. A storage fault raises
        :class:`StorageError`; halves committed before it stay, and the primary keys make the
        retry of the whole batch store each row once.
        """
        try:
            self.write(rows_by_table)
            return []
        except UnstorableData as err:
            items = [(table, i) for table, rows in rows_by_table.items() for i in range(len(rows))]
            if len(items) == 1:
                return [RefusedRow(*items[0], str(err))]
        refused: list[RefusedRow] = []
        mid = len(items) // 2
        self._bisect(rows_by_table, items[:mid], refused)
        self._bisect(rows_by_table, items[mid:], refused)
        return refused

    def _bisect(
        self,
        rows_by_table: Mapping[str, Sequence[dict[str, Any]]],
        items: list[tuple[str, int]],
        refused: list[RefusedRow],
    ) -> None:
        subset: dict[str, list[dict[str, Any]]] = {}
        for table, i in items:
            subset.setdefault(table, []).append(rows_by_table[table][i])
        try:
            self.write(subset)
        except UnstorableData as err:
            if len(items) == 1:
                refused.append(RefusedRow(*items[0], str(err)))
                return
            mid = len(items) // 2
            self._bisect(rows_by_table, items[:mid], refused)
            self._bisect(rows_by_table, items[mid:], refused)

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
