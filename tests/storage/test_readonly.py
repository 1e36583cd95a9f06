"""`kaizend sql` is read-only by DuckDB's mechanisms: the database's settings, the parser's
classification, the plan and a read-only transaction. Here on the offline path (the file opened
while the daemon is down); tests/daemon/test_sql_security.py attacks the running daemon."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from kaizend.core.config import Settings
from kaizend.core.errors import QueryInterrupted, QueryTimeout, ReadOnlyViolation
from kaizend.daemon.client import open_offline
from kaizend.storage.events import EventStore, stored_summary
from kaizend.storage.export import export_parquet
from kaizend.storage.readonly import OperatorQueries, check_read_only, run_read_only

from tests.conftest import make_settings

NOW = datetime(2026, 11, 23, 10, tzinfo=UTC)
RUNAWAY = "SELECT count(*) FROM range(100000000000), range(1000)"
SECRET = "kaizend-test-secret-7f3a9c"


def refused_or_failed(con: duckdb.DuckDBPyConnection, query: str) -> Exception:
    with pytest.raises((ReadOnlyViolation, duckdb.Error)) as raised:
        run_read_only(con, query, 100, timeout_s=10)
    return raised.value


@pytest.fixture
def data(tmp_path: Path) -> Settings:
    """A data directory as the daemon leaves it: the database and its Parquet export, and a
    Parquet file outside the export."""
    settings = make_settings(tmp_path / "data", "nats://127.0.0.1:1")
    store = EventStore(settings.db_path, export_dir=settings.export_path)
    store.write(
        {
            "feedback_events": [
                {"event_id": f"f{i}", "query_id": "q1", "ts": NOW, "rating": 4,
                 "schema_version": 1, "ingested_at": NOW}
                for i in range(3)
            ]
        }
    )  # fmt: skip
    export_parquet(store.cursor(), settings.export_path)
    store.close()
    with duckdb.connect() as con:
        con.execute(f"COPY (SELECT 42 AS x) TO '{tmp_path / 'outside.parquet'}'")
    return settings


@pytest.fixture
def offline(data: Settings) -> Iterator[duckdb.DuckDBPyConnection]:
    with open_offline(data) as con:
        yield con


def counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    with con.cursor() as cur:
        return stored_summary(cur)["counts"]


ATTACKS = {
    # Writes hidden in a SELECT, and every statement that is not one.
    "writable CTE with DELETE": "WITH x AS (DELETE FROM feedback_events RETURNING *) "
    "SELECT count(*) FROM x",
    "writable CTE with UPDATE": "WITH x AS (UPDATE feedback_events SET rating = 1 RETURNING *) "
    "SELECT count(*) FROM x",
    "writable CTE with INSERT": "WITH x AS (INSERT INTO feedback_events SELECT * FROM "
    "feedback_events RETURNING *) SELECT count(*) FROM x",
    "EXPLAIN ANALYZE of a writable CTE": "EXPLAIN ANALYZE WITH x AS (DELETE FROM feedback_events "
    "RETURNING *) SELECT count(*) FROM x",
    "DELETE": "DELETE FROM feedback_events",
    "a DELETE after a ;": "SELECT 1; DELETE FROM feedback_events",
    "query() running a DELETE": "SELECT * FROM query('DELETE FROM feedback_events RETURNING *')",
    "CHECKPOINT": "CHECKPOINT",
    "checkpoint()": "SELECT * FROM checkpoint()",
    "force_checkpoint()": "SELECT * FROM force_checkpoint()",
    "checkpoint() in a scalar subquery": "SELECT (SELECT count(*) FROM checkpoint())",
    "checkpoint() behind query()": "SELECT * FROM query('SELECT * FROM checkpoint()')",
    "EXPLAIN ANALYZE of checkpoint()": "EXPLAIN ANALYZE SELECT * FROM checkpoint()",
    "CREATE TEMP TABLE": "CREATE TEMP TABLE t AS SELECT 1",
    "CREATE TEMP MACRO": "CREATE TEMP MACRO m(x) AS x + 1",
    "ATTACH": "ATTACH ':memory:' AS other",
    "COPY TO": "COPY feedback_events TO 'stolen.csv'",
    "EXPORT DATABASE": "EXPORT DATABASE 'stolen'",
    "CALL": "CALL checkpoint()",
    "INSTALL": "INSTALL httpfs",
    "LOAD": "LOAD httpfs",
    "SET": "SET enable_external_access = true",
    "RESET": "RESET threads",
    "PRAGMA": "PRAGMA enable_profiling",
    "BEGIN": "BEGIN TRANSACTION",
    "enable_logging()": "SELECT * FROM enable_logging()",
    "json_execute_serialized_sql()": "SELECT * FROM json_execute_serialized_sql("
    "json_serialize_sql('SELECT 1'))",
    # Files and the network.
    "read_text /etc/passwd": "SELECT * FROM read_text('/etc/passwd')",
    "read_text the environment": "SELECT * FROM read_text('/proc/self/environ')",
    "read_blob": "SELECT * FROM read_blob('/etc/passwd')",
    "read_csv": "SELECT * FROM read_csv('/etc/passwd', sep = ':')",
    "read_json_auto": "SELECT * FROM read_json_auto('/etc/os-release')",
    "read_ndjson": "SELECT * FROM read_ndjson('/etc/os-release')",
    "sniff_csv": "SELECT * FROM sniff_csv('/etc/passwd')",
    "glob": "SELECT * FROM glob('/etc/*')",
    "parquet_scan of a non-export file": "SELECT * FROM parquet_scan('/etc/passwd')",
    "read_csv over http": "SELECT * FROM read_csv('http://127.0.0.1:9/x.csv')",
    "read_parquet over https": "SELECT * FROM read_parquet('https://127.0.0.1:9/x.parquet')",
    "read_parquet on s3": "SELECT * FROM read_parquet('s3://bucket/x.parquet')",
    "read_duckdb": "SELECT * FROM read_duckdb('/etc/passwd')",
    "duckdb_extensions()": "SELECT * FROM duckdb_extensions()",
    "duckdb_secrets()": "SELECT * FROM duckdb_secrets()",
    "getenv()": "SELECT getenv('HOME')",
}


@pytest.mark.parametrize("attack", ATTACKS.values(), ids=ATTACKS.keys())
def test_offline_attacks_are_refused_and_change_nothing(
    offline: duckdb.DuckDBPyConnection, data: Settings, attack: str
) -> None:
    before = counts(offline)
    refused_or_failed(offline, attack)
    assert counts(offline) == before == {
        "query_events": 0, "feedback_events": 3, "correction_events": 0, "rejected_events": 0,
    }  # fmt: skip
    databases = offline.execute("SELECT database_name FROM duckdb_databases() WHERE NOT internal")
    assert [r[0] for r in databases.fetchall()] == ["kaizend"]
    assert not list(Path.cwd().glob("stolen*"))


def test_files_outside_the_export_are_unreadable_by_any_reader(
    offline: duckdb.DuckDBPyConnection, data: Settings
) -> None:
    outside = data.daemon.data_dir.parent / "outside.parquet"
    error = refused_or_failed(offline, f"SELECT * FROM read_parquet('{outside}')")
    assert "disabled by configuration" in str(error)
    for listing in (data.daemon.data_dir, data.export_path / ".."):
        refused_or_failed(offline, f"SELECT * FROM glob('{listing}/*')")
    # The database file itself is open to DuckDB, but no reader here returns its bytes.
    error = refused_or_failed(offline, f"SELECT * FROM read_blob('{data.db_path}')")
    assert isinstance(error, ReadOnlyViolation) and "read_blob" in str(error)


def test_settings_and_catalog_reads_leak_no_secret(
    offline: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAIZEND_NATS__PASSWORD", SECRET)
    shown = [
        run_read_only(offline, query, 10_000).rows
        for query in (
            "SELECT * FROM duckdb_settings()",
            "SELECT * FROM duckdb_databases()",
            "SELECT current_setting('secret_directory'), current_setting('temp_directory')",
        )
    ]
    assert SECRET not in repr(shown)
    shown_settings = run_read_only(offline, "SELECT name, value FROM duckdb_settings()", 10_000)
    settings = dict(shown_settings.rows)
    assert settings["enable_external_access"] == "false"
    assert settings["lock_configuration"] == "true"
    assert settings["autoload_known_extensions"] == "false"


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM feedback_events",
        "SHOW TABLES",
        "DESCRIBE feedback_events",
        "SUMMARIZE feedback_events",
        "EXPLAIN SELECT * FROM feedback_events",
        "EXPLAIN ANALYZE SELECT * FROM feedback_events",
        "WITH x AS (SELECT rating FROM feedback_events) SELECT sum(rating) FROM x",
        "SELECT * FROM query_table('feedback_events')",
        "SELECT * FROM duckdb_tables()",
        "SELECT * FROM pragma_table_info('feedback_events')",
        "SELECT unnest([1, 2]), * FROM range(2)",
        "SELECT 1; SELECT count(*) FROM feedback_events",
    ],
)
def test_reads_are_answered(offline: duckdb.DuckDBPyConnection, query: str) -> None:
    result = run_read_only(offline, query, 100)
    assert result.columns and result.rows


def test_the_parquet_export_is_readable(offline: duckdb.DuckDBPyConnection, data: Settings) -> None:
    export = data.export_path
    listed = run_read_only(offline, f"SELECT file FROM glob('{export}/*.parquet')", 100)
    assert len(listed.rows) == 4
    rows = run_read_only(
        offline, f"SELECT count(*) FROM read_parquet('{export}/feedback_events.parquet')", 1
    )
    assert rows.rows == [(3,)]


def test_the_plan_alone_refuses_a_write_hidden_in_a_select() -> None:
    # Without the read-only transaction (a writable in-memory database): the plan check.
    with duckdb.connect() as con:
        con.execute("CREATE TABLE t (a INT); INSERT INTO t VALUES (1), (2)")
        with pytest.raises(ReadOnlyViolation, match=r"plan writes \(DELETE\)"):
            check_read_only(con, "WITH x AS (DELETE FROM t RETURNING *) SELECT count(*) FROM x")
        with pytest.raises(ReadOnlyViolation, match=r"checkpoint\(\)"):
            check_read_only(con, "SELECT * FROM t, checkpoint()")
        assert con.execute("SELECT count(*) FROM t").fetchone() == (2,)


def test_the_read_only_transaction_refuses_what_the_plan_does_not_show() -> None:
    # nextval() is a scalar function in a projection: only the transaction catches it.
    with duckdb.connect() as con:
        con.execute("CREATE SEQUENCE s")
        with pytest.raises(ReadOnlyViolation, match="read-only mode"):
            run_read_only(con, "SELECT nextval('s')", 1)
        assert con.execute("SELECT nextval('s')").fetchone() == (1,)


def test_the_last_statement_names_the_columns(offline: duckdb.DuckDBPyConnection) -> None:
    result = run_read_only(offline, "SELECT 1 AS a; SELECT count(*) AS n FROM feedback_events", 5)
    assert (result.columns, result.types, result.rows) == (["n"], ["BIGINT"], [(3,)])


def test_rows_are_capped_and_marked_truncated(offline: duckdb.DuckDBPyConnection) -> None:
    result = run_read_only(offline, "SELECT * FROM range(50)", 10)
    assert len(result.rows) == 10 and result.truncated
    assert run_read_only(offline, "SELECT * FROM range(5)", 10).truncated is False


def test_a_runaway_query_is_interrupted_after_the_timeout(
    offline: duckdb.DuckDBPyConnection,
) -> None:
    started = time.monotonic()
    with pytest.raises(QueryTimeout, match="admin.sql_timeout_s"):
        run_read_only(offline, RUNAWAY, 10, timeout_s=0.5)
    assert time.monotonic() - started < 10
    # The connection is usable afterwards: no transaction left open or aborted.
    assert run_read_only(offline, "SELECT count(*) FROM feedback_events", 1).rows == [(3,)]


def test_interrupt_all_stops_running_queries_and_refuses_new_ones(data: Settings) -> None:
    store = EventStore(data.db_path, export_dir=data.export_path)
    queries = OperatorQueries(store.cursor, timeout_s=600)
    failures: list[BaseException] = []

    def run() -> None:
        try:
            queries.run(RUNAWAY, 10)
        except BaseException as err:  # noqa: BLE001 - inspected below
            failures.append(err)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    started = time.monotonic()
    queries.interrupt_all("the daemon is stopping")
    for thread in threads:
        thread.join(30)
    assert time.monotonic() - started < 10
    assert len(failures) == 2
    assert all(isinstance(f, QueryInterrupted) for f in failures), failures
    with pytest.raises(QueryInterrupted, match="stopping"):
        queries.run("SELECT 1", 1)
    store.write({})  # the writer is unaffected
    store.checkpoint()
    store.close()
