"""The reference FIT search service against a running daemon: its questions go through the
gateway, its filters run on the site register, and what users say lands in DuckDB linked to
the gateway's query."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest
from kaizend.models.fit import rules
from kaizend.models.fit.schema import to_compact_dict
from kaizend.models.fit.sites import generate_sites, load_sites, query_sites

from examples.fit_service import FitSearch
from tests.conftest import eventually, make_settings, rows, run_daemon


@pytest.fixture(scope="module")
def register() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    load_sites(con, sites=generate_sites(n=2000))
    return con


async def test_a_search_is_answered_filtered_and_its_feedback_recorded(
    tmp_path: Path, nats_server: Any, register: duckdb.DuckDBPyConnection
) -> None:
    settings = make_settings(tmp_path / "data", nats_server.url)
    async with run_daemon(settings) as daemon:
        service = await FitSearch.start(daemon.nc, register=register)
        try:
            text = "solar installations in devon over 3kw"
            answer = await service.search(text, user="u-1", limit=5)
            expected = rules.parse(text)
            assert (answer.arm, answer.version) == ("champion", "parser-v0")
            assert answer.parse == to_compact_dict(expected)
            assert answer.rows == query_sites(register, expected, limit=5)
            assert answer.rows and all(r["technology"] == "Photovoltaic" for r in answer.rows)
            assert all(r["declared_capacity_kw"] >= 3 for r in answer.rows)

            await service.rate(answer, rating=2)
            right = {**answer.parse, "capacity_min_kw": 30}
            await service.correct(answer, right, author="reviewer")

            async def linked() -> bool:
                found = await rows(daemon, "SELECT * FROM query_outcomes")
                return bool(found) and found[0]["n_corrections"] == 1

            await eventually(linked)
            (outcome,) = await rows(daemon, "SELECT * FROM query_outcomes")
            assert outcome["query_id"] == answer.query_id and outcome["mean_rating"] == 2
            (query,) = await rows(daemon, "SELECT * FROM query_events")
            assert (query["unit_id"], query["text"], query["service"]) == (
                "u-1",
                text,
                "fit-search",
            )
            (correction,) = await rows(daemon, "SELECT * FROM correction_events")
            assert correction["author"] == "reviewer"
        finally:
            await service.stop()
