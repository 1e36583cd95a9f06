"""`kaizend sql` is read-only: DuckDB's parser decides, not string matching."""

from __future__ import annotations

import duckdb
import pytest

from core.errors import ReadOnlyViolation
from storage.readonly import run_read_only

WRITES = [
    "INSERT INTO t VALUES (3)",
    "UPDATE t SET a = 0",
    "DELETE FROM t",
    "CREATE TABLE u (a INT)",
    "DROP TABLE t",
    "ALTER TABLE t ADD COLUMN b INT",
    "ATTACH ':memory:' AS other",
    "COPY t TO '/tmp/kaizend-should-not-exist.csv'",
    "EXPORT DATABASE '/tmp/kaizend-should-not-exist'",
    "INSTALL httpfs",
    "LOAD json",
    "SET threads = 1",
    "PRAGMA enable_profiling",
    "CALL checkpoint()",
    "EXPLAIN ANALYZE INSERT INTO t VALUES (4)",
    "SELECT 1; DELETE FROM t",
]


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE TABLE t (a INT); INSERT INTO t VALUES (1), (2)")
    return con


@pytest.mark.parametrize("statement", WRITES)
def test_writes_are_refused_and_change_nothing(
    con: duckdb.DuckDBPyConnection, statement: str
) -> None:
    with pytest.raises(ReadOnlyViolation, match="read-only"):
        run_read_only(con, statement, 100)
    assert con.execute("SELECT count(*), sum(a) FROM t").fetchone() == (2, 3)
    assert (
        con.execute("SELECT count(*) FROM duckdb_databases() WHERE NOT internal").fetchone()[0] == 1
    )


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM t",
        "SHOW TABLES",
        "DESCRIBE t",
        "SUMMARIZE t",
        "EXPLAIN SELECT * FROM t",
        "WITH x AS (SELECT a FROM t) SELECT sum(a) FROM x",
    ],
)
def test_reads_are_answered(con: duckdb.DuckDBPyConnection, query: str) -> None:
    result = run_read_only(con, query, 100)
    assert result.columns and result.rows


def test_rows_are_capped_and_marked_truncated(con: duckdb.DuckDBPyConnection) -> None:
    result = run_read_only(con, "SELECT * FROM range(50)", 10)
    assert len(result.rows) == 10 and result.truncated
    assert run_read_only(con, "SELECT * FROM range(5)", 10).truncated is False
