from __future__ import annotations

from collections import Counter
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from kaizend.models.fit import gazetteer, rules, sites
from kaizend.models.fit.schema import ParsedQuery


@pytest.fixture(scope="module")
def register() -> pa.Table:
    return sites.generate_sites()


@pytest.fixture(scope="module")
def rows(register: pa.Table) -> list[dict]:
    return register.to_pylist()


@pytest.fixture(scope="module")
def con(tmp_path_factory: pytest.TempPathFactory, register: pa.Table) -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect(str(tmp_path_factory.mktemp("fit") / "sites.duckdb"))
    sites.load_sites(connection, sites=register)
    yield connection
    connection.close()


def test_register_size_and_ids(rows: list[dict]) -> None:
    assert len(rows) == 40_194
    ids = [row["fit_id"] for row in rows]
    assert len(set(ids)) == len(ids)
    assert all(fit_id.isdigit() for fit_id in ids)
    assert {"1585", "4004"} <= set(ids)


def test_technology_mix_matches_the_plan(rows: list[dict]) -> None:
    counts = Counter(row["technology"] for row in rows)
    assert counts["Wind"] == 3_206
    # 3,206 wind sites cap PV at 92% of 40,194, so "about 95%" cannot be met exactly.
    assert 0.88 < counts["Photovoltaic"] / len(rows) < 0.93
    assert counts["Hydro"] > counts["Micro CHP"] > counts["Anaerobic digestion"] > 0
    pv = [row["declared_capacity_kw"] for row in rows if row["technology"] == "Photovoltaic"]
    assert sum(kw <= 4 for kw in pv) / len(pv) > 0.8  # Mostly domestic rooftops.
    assert max(pv) > 1_000  # ...with a heavy tail of solar farms.


def test_generation_is_deterministic(register: pa.Table) -> None:
    assert sites.generate_sites(seed=7).equals(register)
    assert not sites.generate_sites(seed=8).equals(register)


def test_rows_look_like_the_fit_register(rows: list[dict]) -> None:
    for row in rows:
        district, area = row["postcode_district"], row["postcode_area"]
        assert gazetteer.is_postcode_district(district) and gazetteer.area_of(district) == area
        assert area != "BT"  # FIT was a Great Britain scheme.
        assert date(2010, 4, 1) <= row["commissioning_date"] <= date(2019, 3, 31)
        assert row["fit_end_date"] > row["commissioning_date"]
        assert row["tariff_band"] == sites.tariff_band(
            row["technology"], row["declared_capacity_kw"]
        )
        assert row["fit_rate_p_kwh"] > 0


def test_pinned_wind_site(rows: list[dict]) -> None:
    site = next(row for row in rows if row["fit_id"] == "4004")
    assert (site["technology"], site["declared_capacity_kw"], site["postcode_district"]) == (
        "Wind", 500.0, "RG17"
    )  # fmt: skip
    berkshire_wind = [
        row["fit_id"]
        for row in rows
        if row["technology"] == "Wind"
        and row["postcode_area"] in ("RG", "SL")
        and row["declared_capacity_kw"] >= 100
    ]
    assert berkshire_wind == ["4004"]


def test_the_plans_failing_query_returns_exactly_fit_4004(con: duckdb.DuckDBPyConnection) -> None:
    parsed = rules.parse("wind sites over 100kw in berkshire")
    found = sites.query_sites(con, parsed)
    assert [row["fit_id"] for row in found] == ["4004"]
    assert found[0]["declared_capacity_kw"] == 500.0
    # Without the location filter the plan's old parser returned every wind site.
    assert len(sites.query_sites(con, ParsedQuery(technology="Wind"), limit=10_000)) == 3_206


def test_table_persists_in_the_duckdb_file(tmp_path: Path, register: pa.Table) -> None:
    path = tmp_path / "register.duckdb"
    with duckdb.connect(str(path)) as writer:
        assert sites.load_sites(writer, "fit_sites", sites=register) == 40_194
    with duckdb.connect(str(path), read_only=True) as reader:
        assert reader.execute("SELECT count(*) FROM fit_sites").fetchone() == (40_194,)


def test_postcode_areas_do_not_match_by_prefix(con: duckdb.DuckDBPyConnection) -> None:
    def count(patterns: list[str]) -> int:
        parsed = ParsedQuery(query_type="aggregation", aggregation="count",
                             postcode_patterns=patterns)  # fmt: skip
        return sites.query_sites(con, parsed)[0]["site_count"]

    rg, rg17 = count(["RG"]), count(["RG17"])
    assert rg > rg17 > 0
    assert count(["R"]) == 0
    assert count(["RG17", "SL"]) == rg17 + count(["SL"])


def test_filters_to_sql_is_parameterised() -> None:
    where, params = sites.filters_to_sql(
        ParsedQuery(technology="Wind", capacity_min_kw=100, postcode_patterns=["RG", "RG17"])
    )
    assert "'" not in where
    assert params == ["Wind", 100.0, "RG", "RG17"]
    assert sites.filters_to_sql(ParsedQuery()) == ("TRUE", [])


def test_remaining_years_use_the_reference_date(con: duckdb.DuckDBPyConnection) -> None:
    parsed = ParsedQuery(technology="Wind", fit_remaining_max_years=10)
    found = sites.query_sites(con, parsed, limit=10_000)
    assert found and all(row["fit_end_date"] <= date(2036, 1, 1) for row in found)
    later = sites.query_sites(con, parsed, limit=10_000, reference_date=date(2030, 1, 1))
    assert len(later) > len(found)


def test_aggregations_and_comparisons(con: duckdb.DuckDBPyConnection) -> None:
    yorkshire = list(gazetteer.resolve("Yorkshire").postcode_patterns)  # type: ignore[union-attr]
    listed = sites.query_sites(
        con, ParsedQuery(technology="Wind", postcode_patterns=yorkshire), limit=10_000
    )
    counted = sites.query_sites(
        con,
        ParsedQuery(query_type="aggregation", aggregation="total_capacity", technology="Wind",
                    postcode_patterns=yorkshire),
    )  # fmt: skip
    assert counted[0]["site_count"] == len(listed)
    assert counted[0]["total_capacity_kw"] == pytest.approx(
        sum(row["declared_capacity_kw"] for row in listed)
    )
    compared = sites.query_sites(con, rules.parse("compare wind and solar in Yorkshire"))
    assert {row["technology"] for row in compared} == {"Wind", "Photovoltaic"}
    assert next(r for r in compared if r["technology"] == "Wind")["site_count"] == len(listed)


def test_revenue_columns(con: duckdb.DuckDBPyConnection) -> None:
    found = sites.query_sites(con, rules.parse("show regional adjusted revenue for all wind farms"))
    assert found and all(row["est_annual_revenue_gbp"] > 0 for row in found)
    assert all(isinstance(row["regional_factor"], float) for row in found)


def test_bad_table_names_are_refused(con: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(ValueError, match="plain SQL identifier"):
        sites.query_sites(con, ParsedQuery(), table="sites; DROP TABLE sites")
