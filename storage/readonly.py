"""Read-only SQL for operators: refuse anything that could change the database.

DuckDB's own parser classifies each statement, so the check does not depend on string
matching: only SELECT (which covers SHOW, DESCRIBE, SUMMARIZE and WITH ... SELECT) and an
EXPLAIN whose inner statement is a SELECT are run. INSERT, UPDATE, DELETE, CREATE, DROP,
ALTER, ATTACH, DETACH, COPY, EXPORT, INSTALL, LOAD, SET, PRAGMA and CALL are refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import duckdb

from core.errors import ReadOnlyViolation

_EXPLAIN = re.compile(r"^\s*explain(\s+analyze)?\s+", re.IGNORECASE)


def check_read_only(con: duckdb.DuckDBPyConnection, sql: str) -> list[str]:
    """Return the statements of ``sql`` if every one of them only reads; raise otherwise.

    Raises :class:`ReadOnlyViolation` for a statement that writes, and ``duckdb.ParserException``
    for one that does not parse.
    """
    statements = con.extract_statements(sql)
    if not statements:
        raise ValueError("no SQL statement given")
    for statement in statements:
        kind = statement.type
        if kind == duckdb.StatementType.EXPLAIN:
            inner = con.extract_statements(_EXPLAIN.sub("", statement.query, count=1))
            if len(inner) != 1 or inner[0].type != duckdb.StatementType.SELECT:
                raise ReadOnlyViolation(f"EXPLAIN of {inner[0].type.name if inner else '?'}")
        elif kind != duckdb.StatementType.SELECT:
            raise ReadOnlyViolation(kind.name)
    return [statement.query for statement in statements]


@dataclass(frozen=True)
class QueryResult:
    """The result of the last statement, at most ``max_rows`` rows of it."""

    columns: list[str]
    types: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool


def run_read_only(con: duckdb.DuckDBPyConnection, sql: str, max_rows: int) -> QueryResult:
    """Check ``sql`` with :func:`check_read_only` and run it; return the last statement's rows."""
    statements = check_read_only(con, sql)
    for statement in statements[:-1]:
        con.execute(statement)
    cursor = con.execute(statements[-1])
    if cursor.description is None:  # a statement that returns nothing
        return QueryResult([], [], [], False)
    rows = cursor.fetchmany(max_rows + 1)
    return QueryResult(
        columns=[d[0] for d in cursor.description],
        types=[str(d[1]) for d in cursor.description],
        rows=rows[:max_rows],
        truncated=len(rows) > max_rows,
    )
