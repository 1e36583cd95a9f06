"""A synthetic FIT site register, its DuckDB table, and execution of parsed queries against it.

The register imitates Ofgem's Feed-in Tariff installation report at the scale of the FIT
plan: 40,194 installations, 3,206 of them wind, nearly all the rest small domestic
solar. It is generated from a seed, so a test or an evaluation always sees the same sites.

Two facts are pinned because the plan's acceptance case depends on them: FIT 4004 is a
500 kW wind site in RG17 (Berkshire) and no other wind site of 100 kW or more lies in
RG or SL, so "wind sites over 100kw in berkshire" has exactly one answer. FIT 1585 exists.

Northern Ireland (BT) never appears: the FIT scheme covered Great Britain only.
"""

from __future__ import annotations

import math
import random
import re
from bisect import bisect_right
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from kaizend.models.fit import gazetteer
from kaizend.models.fit.schema import TECHNOLOGIES, ParsedQuery

if TYPE_CHECKING:
    import duckdb

SITE_COUNT = 40_194
REFERENCE_DATE = date(2026, 1, 1)
"""'Today' for fit_remaining_max_years unless a caller passes another reference date."""

# Non-PV counts; PV is the remainder. 3,206 wind is the plan's figure. With it, PV can be at
# most 92% of 40,194 sites, so "about 95% PV" is read as "about 90%": 36,388 sites.
TECHNOLOGY_COUNTS: dict[str, int] = {
    "Wind": 3_206,
    "Hydro": 300,
    "Anaerobic digestion": 120,
    "Micro CHP": 180,
}

PINNED_FIT_IDS: tuple[str, ...] = ("1585", "4004")
# (fit_id, technology, kW, district, commissioned) of the plan's acceptance-case site.
_PINNED_WIND_SITE = ("4004", "Wind", 500.0, "RG17", date(2013, 6, 14))

SCHEMA = pa.schema([
    pa.field("fit_id", pa.string(), nullable=False),
    pa.field("technology", pa.string(), nullable=False),
    pa.field("declared_capacity_kw", pa.float64(), nullable=False),
    pa.field("postcode_district", pa.string(), nullable=False),
    pa.field("postcode_area", pa.string(), nullable=False),
    pa.field("region", pa.string(), nullable=False),
    pa.field("commissioning_date", pa.date32(), nullable=False),
    pa.field("tariff_band", pa.string(), nullable=False),
    pa.field("fit_rate_p_kwh", pa.float64(), nullable=False),
    pa.field("fit_end_date", pa.date32(), nullable=False),
])  # fmt: skip

_SCHEME_OPENED = date(2010, 4, 1)
_SCHEME_CLOSED = date(2019, 3, 31)

# (upper bound kW inclusive, band name, 2010 generation tariff p/kWh), after Ofgem's tables.
_BANDS: dict[str, tuple[tuple[float, str, float], ...]] = {
    "Photovoltaic": (
        (4, "PV 0-4kW", 41.3), (10, "PV >4-10kW", 36.1), (50, "PV >10-50kW", 31.4),
        (100, "PV >50-100kW", 31.4), (150, "PV >100-150kW", 29.3),
        (250, "PV >150-250kW", 29.3), (5000, "PV >250kW-5MW", 29.3),
    ),
    "Wind": (
        (1.5, "Wind 0-1.5kW", 34.5), (15, "Wind >1.5-15kW", 26.7), (100, "Wind >15-100kW", 24.1),
        (500, "Wind >100-500kW", 18.8), (1500, "Wind >500kW-1.5MW", 9.4),
        (5000, "Wind >1.5-5MW", 4.5),
    ),
    "Hydro": (
        (15, "Hydro 0-15kW", 19.9), (100, "Hydro >15-100kW", 17.8),
        (500, "Hydro >100-500kW", 11.0), (2000, "Hydro >500kW-2MW", 11.0),
        (5000, "Hydro >2-5MW", 4.5),
    ),
    "Anaerobic digestion": (
        (250, "AD 0-250kW", 11.5), (500, "AD >250-500kW", 11.5), (5000, "AD >500kW-5MW", 9.0),
    ),
    "Micro CHP": ((2, "Micro CHP 0-2kW", 10.0),),
}  # fmt: skip

# Tariff degression: from each date, new installations got the 2010 rate times this factor.
_DEGRESSION: dict[str, tuple[tuple[date, float], ...]] = {
    "Photovoltaic": (
        (date(2010, 4, 1), 1.0), (date(2011, 8, 1), 0.97), (date(2012, 3, 3), 0.51),
        (date(2012, 8, 1), 0.39), (date(2013, 5, 1), 0.37), (date(2014, 4, 1), 0.34),
        (date(2015, 4, 1), 0.31), (date(2016, 2, 8), 0.106), (date(2017, 4, 1), 0.101),
        (date(2018, 4, 1), 0.095),
    ),
    "Wind": (
        (date(2010, 4, 1), 1.0), (date(2012, 12, 1), 0.88), (date(2014, 4, 1), 0.80),
        (date(2016, 2, 8), 0.40), (date(2017, 4, 1), 0.37), (date(2018, 4, 1), 0.35),
    ),
    "Hydro": (
        (date(2010, 4, 1), 1.0), (date(2012, 12, 1), 1.07), (date(2014, 4, 1), 1.0),
        (date(2016, 2, 8), 0.40), (date(2018, 4, 1), 0.37),
    ),
    "Anaerobic digestion": (
        (date(2010, 4, 1), 1.0), (date(2012, 12, 1), 1.05), (date(2014, 4, 1), 0.90),
        (date(2016, 2, 8), 0.45), (date(2018, 4, 1), 0.50),
    ),
    "Micro CHP": (
        (date(2010, 4, 1), 1.0), (date(2011, 12, 1), 1.1), (date(2012, 12, 1), 1.25),
        (date(2014, 4, 1), 1.32), (date(2016, 2, 8), 1.30),
    ),
}  # fmt: skip

# Share of each commissioning year (2010 from April, 2019 to March): the 2011-12 solar
# rush before the tariff cut, and the collapse after the 2016 review.
_YEAR_WEIGHTS: dict[str, tuple[float, ...]] = {
    "Photovoltaic": (5, 25, 22, 12, 12, 14, 4, 3, 2.5, 0.5),
    "Wind": (6, 12, 15, 16, 18, 20, 8, 3, 1.5, 0.5),
    "Hydro": (4, 8, 10, 14, 18, 20, 12, 8, 5, 1),
    "Anaerobic digestion": (3, 8, 12, 16, 20, 20, 10, 6, 4, 1),
    "Micro CHP": (8, 14, 14, 14, 14, 14, 9, 7, 5, 1),
}

# Relative density of installations per postcode area, by the area's region.
_REGION_WEIGHTS: dict[str, dict[str, float]] = {
    "Photovoltaic": {
        "South West": 1.6, "South East": 1.3, "East of England": 1.3, "East Midlands": 1.1,
        "West Midlands": 1.0, "Yorkshire and the Humber": 0.9, "North West": 0.8,
        "North East": 0.8, "London": 0.35, "Wales": 1.0, "Scotland": 0.6,
    },
    "Wind": {
        "Scotland": 3.0, "Wales": 1.8, "South West": 1.6, "North East": 1.5, "North West": 1.4,
        "Yorkshire and the Humber": 1.4, "East of England": 1.2, "East Midlands": 1.0,
        "West Midlands": 0.6, "South East": 0.4, "London": 0.02,
    },
    "Hydro": {
        "Scotland": 5.0, "Wales": 4.0, "North West": 2.5, "Yorkshire and the Humber": 0.8,
        "North East": 0.8, "South West": 0.7, "West Midlands": 0.3, "East Midlands": 0.3,
        "South East": 0.2, "East of England": 0.1, "London": 0.01,
    },
    "Anaerobic digestion": {
        "East of England": 2.0, "East Midlands": 1.8, "Yorkshire and the Humber": 1.5,
        "South West": 1.5, "West Midlands": 1.3, "North West": 1.0, "South East": 0.9,
        "Scotland": 0.8, "Wales": 0.8, "North East": 0.8, "London": 0.05,
    },
    "Micro CHP": {
        "London": 1.5, "South East": 1.2, "North West": 1.1, "Scotland": 0.8,
    },
}  # fmt: skip

# Typical annual capacity factors, and how much better or worse a region does; rough
# public figures, used only to estimate revenue, never to filter.
CAPACITY_FACTORS: dict[str, float] = {
    "Wind": 0.26, "Photovoltaic": 0.10, "Hydro": 0.37, "Anaerobic digestion": 0.80,
    "Micro CHP": 0.20,
}  # fmt: skip
REGIONAL_FACTORS: dict[str, dict[str, float]] = {
    "Wind": {
        "Scotland": 1.25, "Wales": 1.10, "North East": 1.10, "North West": 1.05,
        "Yorkshire and the Humber": 1.05, "South West": 1.05, "East of England": 1.0,
        "East Midlands": 0.95, "South East": 0.90, "West Midlands": 0.85, "London": 0.60,
    },
    "Photovoltaic": {
        "South West": 1.12, "South East": 1.10, "East of England": 1.06, "London": 1.02,
        "East Midlands": 1.0, "West Midlands": 0.99, "Wales": 0.98,
        "Yorkshire and the Humber": 0.94, "North West": 0.92, "North East": 0.92,
        "Scotland": 0.85,
    },
    "Hydro": {"Scotland": 1.10, "Wales": 1.05, "North West": 1.0},
}  # fmt: skip
_DEFAULT_REGIONAL_FACTOR = {"Hydro": 0.90}

_SITE_COLUMNS = ", ".join(field.name for field in SCHEMA)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def tariff_band(technology: str, capacity_kw: float) -> str:
    """The FIT tariff band of an installation, e.g. ("Wind", 500) -> "Wind >100-500kW"."""
    return _band(technology, capacity_kw)[1]


def _band(technology: str, capacity_kw: float) -> tuple[float, str, float]:
    bands = _BANDS[technology]
    for band in bands:
        if capacity_kw <= band[0]:
            return band
    return bands[-1]


def fit_rate(technology: str, capacity_kw: float, commissioned: date) -> float:
    """Generation tariff in p/kWh for an installation commissioned on `commissioned`."""
    base = _band(technology, capacity_kw)[2]
    steps = _DEGRESSION[technology]
    factor = steps[max(bisect_right([start for start, _ in steps], commissioned) - 1, 0)][1]
    return round(base * factor, 2)


def fit_end_date(technology: str, commissioned: date) -> date:
    """When the tariff stops: 20 years, 25 for solar commissioned before August 2012, 10 for
    micro CHP (the scheme's lifetimes)."""
    if technology == "Micro CHP":
        years = 10
    elif technology == "Photovoltaic" and commissioned < date(2012, 8, 1):
        years = 25
    else:
        years = 20
    try:
        return commissioned.replace(year=commissioned.year + years)
    except ValueError:  # 29 February in a year that has none.
        return commissioned.replace(year=commissioned.year + years, day=28)


def _log_uniform(rng: random.Random, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


_PV_DOMESTIC = (1.0, 1.5, 1.84, 2.0, 2.2, 2.5, 2.5, 2.75, 2.94, 3.0, 3.0, 3.2, 3.5, 3.6, 3.68,
                3.75, 3.92, 3.92, 3.96, 3.99, 3.99, 4.0)  # fmt: skip
_WIND_SIZES = (1.0, 2.5, 5.0, 6.0, 10.0, 11.0, 15.0, 20.0, 50.0, 60.0, 100.0, 225.0, 250.0,
               330.0, 500.0, 800.0, 900.0, 1500.0, 2300.0, 2500.0)  # fmt: skip
_WIND_WEIGHTS = (3, 4, 10, 8, 9, 8, 10, 6, 9, 2, 2, 3, 3, 2, 5, 2, 1.5, 1, 1, 0.5)
_AD_SIZES = (30, 60, 100, 150, 170, 190, 250, 330, 499, 500, 600, 800, 1000, 1200, 1500, 2000)
_AD_WEIGHTS = (1, 2, 2, 2, 1, 1, 4, 2, 5, 3, 2, 2, 3, 1, 2, 1)
_CHP_SIZES = (0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.5, 2.0)


def _capacity(rng: random.Random, technology: str) -> float:
    # Heavy-tailed like the real register: a few big farms among many household systems.
    draw = rng.random()
    if technology == "Photovoltaic":
        if draw < 0.86:
            return rng.choice(_PV_DOMESTIC)
        if draw < 0.955:
            return round(_log_uniform(rng, 4.01, 50), 2)
        if draw < 0.99:
            return round(_log_uniform(rng, 50, 250), 1)
        if draw < 0.998:
            return round(_log_uniform(rng, 250, 1000), 1)
        return round(_log_uniform(rng, 1000, 5000), 0)
    if technology == "Wind":
        return rng.choices(_WIND_SIZES, _WIND_WEIGHTS)[0]
    if technology == "Hydro":
        if draw < 0.45:
            return round(_log_uniform(rng, 1, 20), 1)
        if draw < 0.8:
            return round(_log_uniform(rng, 20, 100), 1)
        if draw < 0.95:
            return round(_log_uniform(rng, 100, 500), 1)
        return round(_log_uniform(rng, 500, 2000), 0)
    if technology == "Anaerobic digestion":
        return float(rng.choices(_AD_SIZES, _AD_WEIGHTS)[0])
    return rng.choice(_CHP_SIZES)


def _commissioned(rng: random.Random, technology: str) -> date:
    year = rng.choices(range(2010, 2020), _YEAR_WEIGHTS[technology])[0]
    start = max(date(year, 1, 1), _SCHEME_OPENED)
    end = min(date(year, 12, 31), _SCHEME_CLOSED)
    return start + timedelta(days=rng.randrange((end - start).days + 1))


def _area_weights() -> dict[str, tuple[list[str], list[float]]]:
    areas = [area for area in gazetteer.postcode_areas() if area != "BT"]
    regions = {area: gazetteer.region_of(area) for area in areas}
    central = {"EC": 0.05, "WC": 0.05}  # The City and the West End have few roofs of their own.
    weights: dict[str, tuple[list[str], list[float]]] = {}
    for technology in TECHNOLOGIES:
        table = _REGION_WEIGHTS[technology]
        weights[technology] = (
            areas,
            [table.get(regions[area], 1.0) * central.get(area, 1.0) for area in areas],
        )
    return weights


def _technology_counts(n: int) -> dict[str, int]:
    if n == SITE_COUNT:
        counts = dict(TECHNOLOGY_COUNTS)
    else:
        counts = {tech: round(count * n / SITE_COUNT) for tech, count in TECHNOLOGY_COUNTS.items()}
        counts["Wind"] = max(counts["Wind"], 1)
    counts["Photovoltaic"] = n - sum(counts.values())
    if counts["Photovoltaic"] < 1:
        raise ValueError(f"n={n} is too small for a register; use at least 10 sites")
    return counts


def generate_sites(seed: int = 7, n: int = SITE_COUNT) -> pa.Table:
    """Generate the register as a pyarrow Table with `SCHEMA` columns, one row per site.

    Deterministic for a given (seed, n); 40,194 rows take well under a second. A Table
    rather than a list of dicts because it loads into DuckDB in one bulk copy.
    """
    rng = random.Random(seed)
    counts = _technology_counts(n)
    technologies = [tech for tech in TECHNOLOGIES for _ in range(counts[tech])]
    technologies.remove("Wind")  # The pinned FIT 4004 is one of the wind sites.
    rng.shuffle(technologies)

    reserved = {int(fit_id) for fit_id in PINNED_FIT_IDS}
    pool = [number for number in range(1, max(60_000, 2 * n)) if number not in reserved]
    fit_ids = [str(number) for number in rng.sample(pool, n - 2)] + ["1585"]
    rng.shuffle(fit_ids)

    area_weights = _area_weights()
    area_districts = {area: gazetteer.districts(area) for area in gazetteer.postcode_areas()}
    regions: dict[str, str] = {}
    columns: dict[str, list[Any]] = {field.name: [] for field in SCHEMA}

    def add(fit_id: str, technology: str, capacity: float, district: str, when: date) -> None:
        if district not in regions:
            regions[district] = gazetteer.region_of(district)
        columns["fit_id"].append(fit_id)
        columns["technology"].append(technology)
        columns["declared_capacity_kw"].append(float(capacity))
        columns["postcode_district"].append(district)
        columns["postcode_area"].append(gazetteer.area_of(district))
        columns["region"].append(regions[district])
        columns["commissioning_date"].append(when)
        columns["tariff_band"].append(tariff_band(technology, capacity))
        columns["fit_rate_p_kwh"].append(fit_rate(technology, capacity, when))
        columns["fit_end_date"].append(fit_end_date(technology, when))

    pinned_at = rng.randrange(n)
    drawn = iter(zip(fit_ids, technologies, strict=True))
    for index in range(n):
        if index == pinned_at:
            add(*_PINNED_WIND_SITE)
            continue
        fit_id, technology = next(drawn)
        capacity = _capacity(rng, technology)
        areas, weights = area_weights[technology]
        area = rng.choices(areas, weights)[0]
        # Keep FIT 4004 the only wind site of 100 kW or more in Berkshire.
        while technology == "Wind" and capacity >= 100 and area in ("RG", "SL"):
            area = rng.choices(areas, weights)[0]
        district = rng.choice(area_districts[area])
        add(fit_id, technology, capacity, district, _commissioned(rng, technology))
    return pa.table(columns, schema=SCHEMA)


def _check_identifier(table: str) -> str:
    if not _IDENTIFIER.match(table):
        raise ValueError(f"table name {table!r} must be a plain SQL identifier like 'sites'")
    return table


def load_sites(
    con: duckdb.DuckDBPyConnection, table: str = "sites", *, sites: pa.Table | None = None
) -> int:
    """Create or replace `table` with the register (generated with defaults unless given).

    Loads in one bulk copy from Arrow; returns the number of rows loaded.
    """
    _check_identifier(table)
    sites = generate_sites() if sites is None else sites
    view = f"_arrow_{table}"
    con.register(view, sites)
    try:
        con.execute(f'CREATE OR REPLACE TABLE "{table}" AS SELECT * FROM "{view}"')
    finally:
        con.unregister(view)
    return sites.num_rows


def filters_to_sql(
    parsed: ParsedQuery, *, reference_date: date = REFERENCE_DATE
) -> tuple[str, list[Any]]:
    """The parse's filters as a parameterised WHERE condition (without the keyword).

    Capacity bounds are inclusive. A postcode area ("RG") matches `postcode_area` exactly,
    so "R" never matches "RG"; a district ("RG17") matches `postcode_district` exactly.
    `fit_remaining_max_years` keeps sites whose tariff ends at most that many years after
    `reference_date`. `location` alone does not filter: its postcodes do. Returns "TRUE"
    when nothing filters.
    """
    clauses: list[str] = []
    params: list[Any] = []
    if parsed.fit_id is not None:
        clauses.append("fit_id = ?")
        params.append(parsed.fit_id)
    if parsed.technology is not None:
        clauses.append("technology = ?")
        params.append(parsed.technology)
    elif parsed.technologies:
        clauses.append(f"technology IN ({', '.join('?' for _ in parsed.technologies)})")
        params.extend(parsed.technologies)
    if parsed.capacity_min_kw is not None:
        clauses.append("declared_capacity_kw >= ?")
        params.append(parsed.capacity_min_kw)
    if parsed.capacity_max_kw is not None:
        clauses.append("declared_capacity_kw <= ?")
        params.append(parsed.capacity_max_kw)
    if parsed.postcode_patterns:
        areas = [pattern for pattern in parsed.postcode_patterns if pattern.isalpha()]
        districts = [pattern for pattern in parsed.postcode_patterns if not pattern.isalpha()]
        matches = []
        for column, values in (("postcode_area", areas), ("postcode_district", districts)):
            if values:
                matches.append(f"{column} IN ({', '.join('?' for _ in values)})")
                params.extend(values)
        clauses.append(f"({' OR '.join(matches)})")
    if parsed.fit_remaining_max_years is not None:
        clauses.append("fit_end_date <= ?")
        params.append(
            reference_date + timedelta(days=round(parsed.fit_remaining_max_years * 365.25))
        )
    return (" AND ".join(clauses) or "TRUE"), params


def _case(mapping: dict[str, float], column: str, default: float) -> str:
    # Literals come from the constants above, never from user input.
    arms = " ".join(f"WHEN {column} = '{key}' THEN {value}" for key, value in mapping.items())
    return f"CASE {arms} ELSE {default} END"


def _regional_factor_sql() -> str:
    arms = " ".join(
        f"WHEN technology = '{tech}' THEN "
        f"{_case(factors, 'region', _DEFAULT_REGIONAL_FACTOR.get(tech, 1.0))}"
        for tech, factors in REGIONAL_FACTORS.items()
    )
    return f"CAST(CASE {arms} ELSE 1.0 END AS DOUBLE)"


def _revenue_sql(regional: bool) -> str:
    factor = f" * ({_regional_factor_sql()})" if regional else ""
    return (
        f"round(declared_capacity_kw * 8760 * ({_case(CAPACITY_FACTORS, 'technology', 0.1)})"
        f"{factor} * fit_rate_p_kwh / 100, 2)"
    )


def build_query(
    parsed: ParsedQuery,
    *,
    table: str = "sites",
    limit: int = 100,
    reference_date: date = REFERENCE_DATE,
) -> tuple[str, list[Any]]:
    """The full parameterised SELECT for a parse.

    search and fit_rate list matching sites, largest first (with a regional factor and an
    estimated annual generation revenue in GBP when asked); aggregation returns one row
    (`site_count`, plus `total_capacity_kw`), grouped by technology when several are named;
    comparison returns one summary row per technology.
    """
    _check_identifier(table)
    where, params = filters_to_sql(parsed, reference_date=reference_date)
    extras = []
    if parsed.include_regional:
        extras.append(f"{_regional_factor_sql()} AS regional_factor")
    if parsed.include_revenue:
        extras.append(f"{_revenue_sql(parsed.include_regional)} AS est_annual_revenue_gbp")
    grouped = parsed.query_type == "comparison" or (
        parsed.query_type == "aggregation" and bool(parsed.technologies)
    )
    if parsed.query_type in ("comparison", "aggregation"):
        measures = ["count(*) AS site_count"]
        if parsed.query_type == "comparison" or parsed.aggregation == "total_capacity":
            measures.append("round(sum(declared_capacity_kw), 2) AS total_capacity_kw")
        if parsed.query_type == "comparison":
            measures.append("round(avg(declared_capacity_kw), 2) AS mean_capacity_kw")
            measures.append("round(avg(fit_rate_p_kwh), 2) AS mean_fit_rate_p_kwh")
        if parsed.include_revenue:
            revenue = _revenue_sql(parsed.include_regional)
            measures.append(f"round(sum({revenue}), 2) AS est_annual_revenue_gbp")
        select = ", ".join(["technology", *measures] if grouped else measures)
        tail = " GROUP BY technology ORDER BY technology" if grouped else ""
        return f'SELECT {select} FROM "{table}" WHERE {where}{tail}', params
    select = ", ".join([_SITE_COLUMNS, *extras])
    order = " ORDER BY declared_capacity_kw DESC, CAST(fit_id AS BIGINT)"
    return f'SELECT {select} FROM "{table}" WHERE {where}{order} LIMIT ?', [*params, limit]


def query_sites(
    con: duckdb.DuckDBPyConnection,
    parsed: ParsedQuery,
    *,
    table: str = "sites",
    limit: int = 100,
    reference_date: date = REFERENCE_DATE,
) -> list[dict[str, Any]]:
    """Run a parse against the sites table: matching rows, or the aggregate/comparison rows."""
    sql, params = build_query(parsed, table=table, limit=limit, reference_date=reference_date)
    cursor = con.execute(sql, params)
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
