"""Read-only SQL for operators, enforced by DuckDB's own controls rather than by keywords.

Four layers, each one DuckDB's:

1. **The database** (:func:`confine`, right after it is opened, by the daemon and offline alike):
   no file or network access outside the Parquet export's directory (the database file, its
   WAL and its temporary directory stay allowed), no extension installed or loaded on demand,
   no community extensions, no persistent secrets, no scans of the process's Python objects,
   and the configuration locked so that none of it can be set back. DuckDB keeps these
   settings per database, not per connection (their scope is GLOBAL, and a cursor inherits
   them), so they bind the daemon's own connection too: its only file access is the Parquet
   export's COPY into the export directory.
2. **The statement**: DuckDB's parser classifies each one; only SELECT (which covers SHOW,
   DESCRIBE, SUMMARIZE and WITH ... SELECT) and EXPLAIN of a SELECT are run.
3. **The plan**: DuckDB plans each statement (``EXPLAIN (FORMAT json)``) before it runs; a plan
   holding an operator that writes (the DELETE of a writable CTE) or a table function outside
   :data:`READING_FUNCTIONS` (``SELECT * FROM checkpoint()`` is a SELECT) is refused.
4. **The transaction**: everything runs inside ``BEGIN TRANSACTION READ ONLY``, where DuckDB
   itself refuses a write to any database anywhere in the statement (``nextval`` included).

A watchdog thread interrupts the connection once ``timeout_s`` have passed, or when
:meth:`OperatorQueries.interrupt_all` is called: DuckDB stops the query, it is not merely
abandoned by the client.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
from kaizend.core.errors import QueryInterrupted, QueryTimeout, ReadOnlyViolation, StorageError

_EXPLAIN = re.compile(r"^\s*explain(\s+analyze)?\s+", re.IGNORECASE)

CONNECT_CONFIG: dict[str, bool] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    # DuckDB would read secrets stored under the home directory (~/.duckdb/stored_secrets).
    "allow_persistent_secrets": False,
    # A replacement scan would answer `FROM name` with a Python object of the querying thread.
    "python_enable_replacements": False,
}
"""Options for ``duckdb.connect(config=...)``; :func:`confine` sets them again after opening."""

READING_FUNCTIONS = frozenset(
    {
        # Generators.
        "range", "generate_series", "unnest", "repeat", "repeat_row", "json_each", "json_tree",
        # The catalog: SHOW, DESCRIBE, the duckdb_* views. duckdb_settings() and
        # duckdb_databases() show paths (the data directory's, DuckDB's home-derived ones) and
        # limits, no secret: kaizend keeps none in DuckDB, and persistent secrets are off.
        "duckdb_columns", "duckdb_constraints", "duckdb_databases", "duckdb_dependencies",
        "duckdb_functions", "duckdb_indexes", "duckdb_keywords", "duckdb_memory",
        "duckdb_optimizers", "duckdb_schemas", "duckdb_sequences", "duckdb_settings",
        "duckdb_tables", "duckdb_temporary_files", "duckdb_types", "duckdb_views",
        "pragma_collations", "pragma_database_size", "pragma_metadata_info", "pragma_platform",
        "pragma_show", "pragma_storage_info", "pragma_table_info", "pragma_version",
        "pg_timezone_names", "icu_calendar_names",
        # The Parquet export. Which files they may open is the database's to decide (confine);
        # only Parquet readers, so nothing else reachable there (the database file, its WAL)
        # is read as raw bytes or text.
        "read_parquet", "parquet_scan", "parquet_metadata", "parquet_schema",
        "parquet_file_metadata", "parquet_kv_metadata", "glob",
    }
)  # fmt: skip
"""Table functions an operator's plan may hold. Any other is refused, among them those that act
(checkpoint, force_checkpoint, enable_logging, the *_external_resource and *_grammar_extension
ones), run what this module did not check (json_execute_serialized_sql), read secrets, logs or
the process's Python objects, or read files as text or bytes (read_text, read_blob, read_csv,
read_json, sniff_csv)."""

WRITING_OPERATORS = frozenset(
    {
        "INSERT", "DELETE", "UPDATE", "MERGE_INTO", "COPY_TO_FILE", "BATCH_COPY_TO_FILE",
        "COPY_DATABASE", "CREATE_TABLE", "CREATE_TABLE_AS", "BATCH_CREATE_TABLE_AS",
        "CREATE_INDEX", "CREATE_SEQUENCE", "CREATE_VIEW", "CREATE_SCHEMA", "CREATE_MACRO",
        "CREATE_TYPE", "CREATE_SECRET", "ALTER", "DROP", "ATTACH", "DETACH", "EXPORT",
        "VACUUM", "PRAGMA", "SET", "SET_VARIABLE", "RESET", "LOAD", "EXTENSION",
        "UPDATE_EXTENSIONS", "TRANSACTION",
    }
)  # fmt: skip
"""Physical operators that change a database, a file or the session."""

_TIMEOUT = "timeout"


def confine(con: duckdb.DuckDBPyConnection, readable: Sequence[Path] = ()) -> None:
    """Lock down the database behind ``con``: files only under ``readable`` (and the database's
    own), no network, no extensions loaded on demand, no secrets, the configuration locked.

    Applies to every connection and cursor of that database, for as long as it stays open.
    A database already confined (the same file opened again in this process shares it) is left
    as it is.
    """
    if _setting(con, "lock_configuration"):
        if _setting(con, "enable_external_access"):
            raise StorageError(
                "the database's configuration is locked with file access enabled: it was "
                "opened elsewhere in this process without confine(); open it only through "
                "EventStore or open_offline"
            )
        return
    for name, value in CONNECT_CONFIG.items():
        con.execute(f"SET {name} = {str(value).lower()}")
    # DuckDB takes the allowed directories only while external access is still on.
    con.execute("SET allowed_directories = ?", [[f"{Path(p).resolve()}/" for p in readable]])
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def _setting(con: duckdb.DuckDBPyConnection, name: str) -> Any:
    return con.execute("SELECT current_setting(?)", [name]).fetchone()[0]


def _plan_nodes(plan: Any) -> Iterator[dict[str, Any]]:
    for node in plan if isinstance(plan, list) else [plan]:
        yield node
        yield from _plan_nodes(node.get("children", []))


def check_plan(con: duckdb.DuckDBPyConnection, statement: str) -> None:
    """Refuse ``statement`` if DuckDB's plan for it writes or calls a table function that is
    not known to only read (see :data:`READING_FUNCTIONS`)."""
    for _, plan in con.execute(f"EXPLAIN (FORMAT json) {statement}").fetchall():
        for node in _plan_nodes(json.loads(plan)):
            info = node.get("extra_info")
            function = info.get("Function") if isinstance(info, dict) else None
            if function is not None and function.lower() not in READING_FUNCTIONS:
                raise ReadOnlyViolation(f"the table function {function.lower()}()")
            if node["name"] in WRITING_OPERATORS:
                raise ReadOnlyViolation(f"a statement whose plan writes ({node['name']})")


def check_read_only(con: duckdb.DuckDBPyConnection, sql: str) -> list[str]:
    """Return the statements of ``sql`` if every one of them only reads; raise otherwise.

    Raises :class:`ReadOnlyViolation` for a statement that writes or acts, and a
    ``duckdb.Error`` for one that does not parse or bind.
    """
    statements = con.extract_statements(sql)
    if not statements:
        raise ValueError("no SQL statement given")
    for statement in statements:
        kind = statement.type
        query = statement.query
        if kind == duckdb.StatementType.EXPLAIN:
            inner = con.extract_statements(_EXPLAIN.sub("", query, count=1))
            if len(inner) != 1 or inner[0].type != duckdb.StatementType.SELECT:
                kind_name = inner[0].type.name if inner else "?"
                raise ReadOnlyViolation(f"EXPLAIN of {kind_name} statements")
            query = inner[0].query
        elif kind != duckdb.StatementType.SELECT:
            raise ReadOnlyViolation(f"{kind.name} statements")
        check_plan(con, query)
    return [statement.query for statement in statements]


@dataclass(frozen=True)
class QueryResult:
    """The result of the last statement, at most ``max_rows`` rows of it."""

    columns: list[str]
    types: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool


class _Watchdog:
    """Interrupts ``con`` once ``timeout_s`` have passed or :meth:`stop` is called, again and
    again until the guarded block ends, so that a statement starting after one interrupt is
    stopped too."""

    def __init__(self, con: duckdb.DuckDBPyConnection, timeout_s: float | None) -> None:
        self._con = con
        self._timeout_s = timeout_s
        self._wake = threading.Event()
        self._ended = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="sql-watchdog", daemon=True)
        self.reason: str | None = None

    def __enter__(self) -> _Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._ended.set()
        self._wake.set()
        self._thread.join()

    def stop(self, reason: str) -> None:
        self.reason = self.reason or reason
        self._wake.set()

    def _watch(self) -> None:
        if not self._wake.wait(self._timeout_s):
            self.reason = self.reason or _TIMEOUT
        while not self._ended.is_set():
            self._con.interrupt()
            self._ended.wait(0.05)

    def explain(self, err: duckdb.InterruptException) -> None:
        """Raise why DuckDB was interrupted, if this watchdog did it."""
        if self.reason == _TIMEOUT:
            raise QueryTimeout(self._timeout_s or 0.0) from err
        if self.reason is not None:
            raise QueryInterrupted(self.reason) from err


def _run(
    con: duckdb.DuckDBPyConnection, sql: str, max_rows: int, watchdog: _Watchdog
) -> QueryResult:
    con.execute("BEGIN TRANSACTION READ ONLY")
    try:
        try:
            with watchdog:
                statements = check_read_only(con, sql)
                for statement in statements[:-1]:
                    con.execute(statement)
                description = con.execute(statements[-1]).description
                if description is None:  # a statement that returns nothing
                    return QueryResult([], [], [], False)
                rows = con.fetchmany(max_rows + 1)
        except duckdb.InterruptException as err:
            watchdog.explain(err)
            raise
        except (duckdb.TransactionException, duckdb.InvalidInputException) as err:
            # DuckDB refused a write: the read-only transaction, or a file opened read-only.
            if "read-only" in str(err):
                raise ReadOnlyViolation(f"a statement that writes ({err})") from err
            raise
    finally:
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
    return QueryResult(
        columns=[d[0] for d in description],
        types=[str(d[1]) for d in description],
        rows=rows[:max_rows],
        truncated=len(rows) > max_rows,
    )


def run_read_only(
    con: duckdb.DuckDBPyConnection, sql: str, max_rows: int, timeout_s: float | None = None
) -> QueryResult:
    """Check ``sql`` with :func:`check_read_only` and run it in a read-only transaction,
    interrupted after ``timeout_s``; return the last statement's rows, ``max_rows`` at most.

    ``con`` must not be in a transaction. Raises :class:`QueryTimeout` when interrupted.
    """
    return _run(con, sql, max_rows, _Watchdog(con, timeout_s))


class OperatorQueries:
    """The daemon's operator queries: each on a cursor of its own, interruptible together.

    :meth:`run` blocks; call it from a worker thread, never the event loop.
    """

    def __init__(self, cursor: Callable[[], duckdb.DuckDBPyConnection], timeout_s: float) -> None:
        self._cursor = cursor
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._running: set[_Watchdog] = set()
        self._stopped: str | None = None

    def run(self, sql: str, max_rows: int) -> QueryResult:
        """Run one operator query (see :func:`run_read_only`) on a fresh cursor."""
        with self._cursor() as con:
            watchdog = _Watchdog(con, self.timeout_s)
            with self._lock:
                if self._stopped is not None:
                    raise QueryInterrupted(self._stopped)
                self._running.add(watchdog)
            try:
                return _run(con, sql, max_rows, watchdog)
            finally:
                with self._lock:
                    self._running.discard(watchdog)

    def interrupt_all(self, reason: str) -> int:
        """Interrupt every running query and refuse new ones; return how many were running."""
        with self._lock:
            self._stopped = reason
            for watchdog in self._running:
                watchdog.stop(reason)
            return len(self._running)
