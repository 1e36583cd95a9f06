"""Unit-level analysis: ratio metrics over the units of randomisation with the delta method,
the adjustment with each unit's history (CUPED), and the glue from per-unit tables.

Reference values: gbstats 0.8.0 (GrowthBook's stats engine), ``RatioStatistic(...).mean``
and ``.variance`` on the same per-unit data; the adjusted difference is the treatment
coefficient of the common-slope regression (ANCOVA) fitted by numpy's least squares.
"""

from __future__ import annotations

import importlib.util
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from kaizend.models.experiments.stats import (
    SampleStats,
    UnitValues,
    ratio_stats,
    sequential_ttest,
    ttest,
)
from kaizend.models.experiments.units import step_data
from kaizend.storage.events import EventStore
from kaizend.storage.experiments import UNIT_COLUMNS, unit_metrics

ROOT = Path(__file__).resolve().parents[3]
T0 = datetime(2026, 11, 23, 10, tzinfo=UTC)

# gbstats 0.8.0: RatioStatistic(n=10, m_statistic=SampleMeanStatistic(n=10, sum=sum(Y),
# sum_squares=sum(Y*Y)), d_statistic=SampleMeanStatistic(... X ...), m_d_sum_of_products=...)
Y_C = np.array([3, 0, 1, 4, 2, 0, 5, 1, 1, 2.0])
X_C = np.array([4, 1, 2, 9, 2, 1, 6, 3, 1, 5.0])
GBSTATS_C = (0.5588235294117647, 0.06783057886971872)
Y_T = np.array([1, 0, 2, 2, 0, 7, 1.0])
X_T = np.array([1, 3, 2, 4, 1, 9, 2.0])
GBSTATS_T = (0.5909090909090909, 0.12355144229674664)


def test_a_ratio_over_units_has_gbstats_delta_method_variance() -> None:
    summary = ratio_stats(UnitValues(Y_C, X_C), UnitValues(Y_T, X_T), binary=True)
    for stats, (mean, variance), n in (
        (summary.control, GBSTATS_C, 10), (summary.treatment, GBSTATS_T, 7),
    ):  # fmt: skip
        assert stats.n == n
        assert stats.mean == pytest.approx(mean, rel=1e-12)
        assert stats.variance == pytest.approx(variance, rel=1e-9)
    assert summary.units == (10, 7) and summary.denominators == (34.0, 22.0)
    assert not summary.adjusted and summary.variance_removed == 0.0


def test_one_query_per_unit_is_the_per_query_analysis() -> None:
    rng = np.random.default_rng(1)
    y_c, y_t = rng.binomial(1, 0.5, 400).astype(float), rng.binomial(1, 0.6, 300).astype(float)
    summary = ratio_stats(UnitValues(y_c, np.ones(400)), UnitValues(y_t, np.ones(300)), binary=True)
    per_query = ttest(
        SampleStats.from_values(y_c),
        SampleStats.from_values(y_t),
    )
    per_unit = ttest(summary.control, summary.treatment)
    assert per_unit.effect == pytest.approx(per_query.effect, rel=1e-12)
    assert per_unit.standard_error == pytest.approx(per_query.standard_error, rel=1e-9)
    # n/(n-1): the sample variance against p(1-p).
    assert summary.design_effect == pytest.approx(1.0, abs=0.01)


def clustered(rng: np.random.Generator, users: int, icc: float, lift: float = 0.0):
    """Users with a Beta success rate (mean 0.5, intra-user correlation icc) and log-normal
    activity; returns per-user (successes, queries, pre-successes, pre-queries, arm)."""
    ab = 1 / icc - 1
    p = rng.beta(0.5 * ab, 0.5 * ab, users)
    arm = rng.random(users) < 0.5
    activity = np.exp(rng.normal(0, 1.0, users))
    queries = rng.poisson(3 * activity) + 1
    successes = rng.binomial(queries, np.clip(p + lift * arm, 0, 1))
    pre_queries = rng.poisson(3 * activity) * (rng.random(users) < 0.7)  # 30% without history
    pre_successes = rng.binomial(pre_queries, p)
    return successes.astype(float), queries.astype(float), pre_successes, pre_queries, arm


def values(y, x, pre_y, pre_x, mask, adjust: bool) -> UnitValues:
    z = np.column_stack([pre_y, pre_x, pre_x > 0]).astype(float) if adjust else None
    return UnitValues(y[mask], x[mask], None if z is None else z[mask])


def test_clustered_queries_keep_their_level_over_units_but_not_over_queries() -> None:
    rng = np.random.default_rng(7)
    covered_units = covered_queries = covered_adjusted = 0
    removed = []
    runs = 300
    for _ in range(runs):
        y, x, pre_y, pre_x, arm = clustered(rng, 2000, icc=0.3)
        summary = ratio_stats(
            values(y, x, pre_y, pre_x, ~arm, False), values(y, x, pre_y, pre_x, arm, False),
            binary=True,
        )  # fmt: skip
        covered_units += ttest(summary.control, summary.treatment).p_value > 0.05
        naive = [SampleStats.proportion(y[m].sum(), x[m].sum()) for m in (~arm, arm)]
        covered_queries += ttest(*naive).p_value > 0.05
        adjusted = ratio_stats(
            values(y, x, pre_y, pre_x, ~arm, True), values(y, x, pre_y, pre_x, arm, True),
            binary=True,
        )  # fmt: skip
        assert adjusted.adjusted and summary.design_effect > 1.5
        removed.append(adjusted.variance_removed)
        covered_adjusted += ttest(adjusted.control, adjusted.treatment).p_value > 0.05
    assert covered_units / runs >= 0.92 and covered_adjusted / runs >= 0.92
    assert covered_queries / runs < 0.85  # queries as if independent: far too many "effects"
    assert np.median(removed) > 0.2  # the history predicts a good share of each user's rate


def test_the_adjusted_difference_is_the_common_slope_regression() -> None:
    # A mean metric (denominator 1 per unit): CUPED's difference with theta pooled within
    # arms is ANCOVA's treatment coefficient.
    rng = np.random.default_rng(3)
    n = 500
    z = rng.normal(size=(n, 2))
    arm = rng.random(n) < 0.4
    y = 1.0 + 0.3 * arm + z @ np.array([0.8, -0.5]) + rng.normal(size=n)
    summary = ratio_stats(
        UnitValues(y[~arm], np.ones((~arm).sum()), z[~arm]),
        UnitValues(y[arm], np.ones(arm.sum()), z[arm]),
    )
    design = np.column_stack([np.ones(n), arm, z - z.mean(axis=0)])
    coefficients = np.linalg.lstsq(design, y, rcond=None)[0]
    difference = summary.treatment.mean - summary.control.mean
    assert difference == pytest.approx(coefficients[1], rel=1e-10)
    assert summary.adjusted and 0.3 < summary.variance_removed < 0.6


def test_the_adjustment_is_unbiased_when_only_some_units_have_history() -> None:
    rng = np.random.default_rng(11)
    effects = []
    for _ in range(400):
        y, x, pre_y, pre_x, arm = clustered(rng, 1000, icc=0.2, lift=0.05)
        s = ratio_stats(
            values(y, x, pre_y, pre_x, ~arm, True), values(y, x, pre_y, pre_x, arm, True)
        )
        effects.append(s.treatment.mean - s.control.mean)
    # The lift on a rate clipped to [0, 1] is a little under 0.05.
    assert np.mean(effects) == pytest.approx(0.048, abs=0.003)


def test_an_arm_without_a_denominator_measures_nothing() -> None:
    summary = ratio_stats(UnitValues(np.zeros(5), np.zeros(5)), UnitValues(Y_T, X_T))
    assert summary.control.n == 0 and not summary.adjusted
    assert sequential_ttest(summary.control, summary.treatment).p_value == 1.0


def table(queries, successes, pre_queries=None, pre_successes=None) -> dict[str, np.ndarray]:
    n = len(queries)
    out = {column: np.zeros(n) for column in UNIT_COLUMNS}
    out["queries"], out["successes"] = np.asarray(queries, float), np.asarray(successes, float)
    if pre_queries is not None:
        out["pre_queries"] = np.asarray(pre_queries, float)
        out["pre_successes"] = np.asarray(pre_successes, float)
    return out


def test_step_data_counts_units_and_queries_and_says_what_the_adjustment_did() -> None:
    rng = np.random.default_rng(5)
    y, x, pre_y, pre_x, arm = clustered(rng, 1500, icc=0.3)
    units = {
        "champion": table(x[~arm], y[~arm], pre_x[~arm], pre_y[~arm]),
        "challenger": table(x[arm], y[arm], pre_x[arm], pre_y[arm]),
    }
    plain = step_data(units, weight=0.5, elapsed_s=60, adjust=False)
    assert plain.champion["success"].n == (~arm).sum()
    assert plain.queries == (x[~arm].sum(), x[arm].sum())
    assert plain.design_effect > 1.5 and not plain.adjusted and plain.variance_removed == 0
    assert set(plain.champion) == {"success", "correction_rate", "rating", "error_rate",
                                   "fallback_rate", "slow_rate", "latency_ms"}  # fmt: skip
    adjusted = step_data(units, weight=0.5, elapsed_s=60, adjust=True, metrics=())
    assert set(adjusted.champion) == {"success"}
    assert adjusted.adjusted and adjusted.variance_removed > 0.2
    assert adjusted.design_effect == pytest.approx(plain.design_effect)


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    """The simulation script, imported as a module (it is not a package)."""
    path = ROOT / "bench" / "experiment_simulations.py"
    spec = importlib.util.spec_from_file_location("kaizend_bench_units", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def events(user: int, arm: str, version: str, queries: int, successes: int, at: datetime):
    """``queries`` of one user at ``at``, the first ``successes`` rated 5, the others 2."""
    out = {"query_events": [], "feedback_events": []}
    for j in range(queries):
        qid = f"q-{user}-{arm}-{at.timestamp():.0f}-{j}"
        out["query_events"].append({
            "event_id": f"e-{qid}", "query_id": qid, "ts": at + timedelta(seconds=j),
            "task": "parser", "text": "t", "model_version": version, "arm": arm,
            "unit_id": f"user-{user}", "latency_ms": 5.0, "schema_version": 1, "ingested_at": at,
        })  # fmt: skip
        out["feedback_events"].append({
            "event_id": f"f-{qid}", "query_id": qid, "ts": at + timedelta(seconds=j + 1),
            "rating": 5 if j < successes else 2, "schema_version": 1, "ingested_at": at,
        })  # fmt: skip
    return out


def test_the_sql_aggregation_gives_the_tables_the_simulation_feeds_the_policy(
    tmp_path: Path, bench: ModuleType
) -> None:
    # The clustered simulation calls step_data on per-unit tables it builds itself; from the
    # same traffic stored as events, the daemon's SQL builds the same tables and decisions.
    rng = np.random.default_rng(13)
    pop = bench.population(rng, icc=0.3, sigma=1.0, pre_queries=600, users=200)
    queries = rng.poisson(800 * pop.activity).astype(float)
    successes = rng.binomial(queries.astype(int), pop.rate).astype(float)
    challenger = pop.hash < 0.25
    batch: dict[str, list] = {"query_events": [], "feedback_events": []}
    for i in range(200):
        arm, version = ("challenger", "v1") if challenger[i] else ("champion", "v0")
        for part in (
            events(i, arm, version, int(queries[i]), int(successes[i]), T0 + timedelta(hours=1)),
            events(i, "champion", "v-old", int(pop.pre_queries[i]), int(pop.pre_successes[i]),
                   T0 - timedelta(hours=5)),
        ):  # fmt: skip
            for table, rows in part.items():
                batch[table] += rows
    store = EventStore(tmp_path / "k.duckdb")
    store.write(batch)
    stored = unit_metrics(
        store.cursor(), task="parser", champion="v0", challenger="v1", start=T0, end=None,
        attribution_s=3600, pre_start=T0 - timedelta(days=1),
    )  # fmt: skip
    simulated = bench.unit_tables(pop, queries, successes, challenger)
    columns = ("queries", "successes", "pre_queries", "pre_successes")
    for arm in ("champion", "challenger"):
        rows = sorted(zip(*(stored[arm][c].tolist() for c in columns), strict=True))
        assert rows == sorted(zip(*(simulated[arm][c].tolist() for c in columns), strict=True))
        assert len(rows) > 10
    for adjust in (False, True):
        ours = step_data(stored, weight=0.25, elapsed_s=60, adjust=adjust, metrics=())
        theirs = step_data(simulated, weight=0.25, elapsed_s=60, adjust=adjust, metrics=())
        for arm in ("champion", "challenger"):
            a, b = getattr(ours, arm)["success"], getattr(theirs, arm)["success"]
            assert (a.n, a.sum, a.sum_squares) == pytest.approx((b.n, b.sum, b.sum_squares))
        assert ours.variance_removed == pytest.approx(theirs.variance_removed)


def test_units_at_a_power_are_those_by_which_that_share_of_experiments_was_promoted(
    bench: ModuleType,
) -> None:
    runs = [{"action": "promote", "units": u} for u in (300, 100, 200)]
    runs += [{"action": "inconclusive", "units": 50}, {"action": "rollback", "units": 10}]
    # Promoted by 100, 200, 300 units: 3 of 5 runs; the others never count.
    assert bench._at_power(runs, "units", 0.2) == 100
    assert bench._at_power(runs, "units", 0.6) == 300
    assert bench._at_power(runs, "units", 0.8) is None
