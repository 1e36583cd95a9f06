"""models.experiments.stats against published reference values, and small simulations.

Reference values: R's ``t.test(extra ~ group, data = sleep)`` (Welch), scipy's
``ttest_ind(equal_var=False)`` on raw data, the ``scipy.stats.chisquare`` documentation
examples, the closed form of a 1-df chi-square, the normal-approximation sample size formula,
and the mSPRT / asymptotic-confidence-sequence formulas of the papers cited in the module.
The simulations are bench/experiment_simulations.py with fewer runs and a fixed seed.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from kaizend.core.errors import KaizendError, StatisticsError
from kaizend.models.experiments.stats import (
    DEFAULT_TAU,
    SampleStats,
    required_sample_size,
    sequential_ttest,
    srm_pvalue,
    ttest,
)
from scipy import stats as sps

ROOT = Path(__file__).resolve().parents[3]

# R: with(sleep, t.test(extra[group == 1], extra[group == 2]))
SLEEP_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
SLEEP_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    """The simulation script, imported as a module (it is not a package)."""
    path = ROOT / "bench" / "experiment_simulations.py"
    spec = importlib.util.spec_from_file_location("kaizend_bench_experiment_simulations", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------
# SampleStats


def test_sample_stats_moments_match_numpy() -> None:
    values = [3.0, 1.5, 4.0, 1.0, 5.5, 9.0]
    s = SampleStats.from_values(values)
    assert s.n == 6
    assert s.mean == pytest.approx(np.mean(values))
    assert s.variance == pytest.approx(np.var(values, ddof=1))
    assert s.std == pytest.approx(np.std(values, ddof=1))


def test_proportion_is_the_summary_of_zero_one_values() -> None:
    p = SampleStats.proportion(7, 20)
    raw = SampleStats.from_values([1] * 7 + [0] * 13)
    assert (p.n, p.sum, p.sum_squares) == (20, 7, 7)
    assert p.mean == pytest.approx(raw.mean)
    assert p.variance == pytest.approx(raw.variance)


def test_adding_samples_equals_summarising_their_union() -> None:
    a, b = [1.0, 2.0, 3.0], [10.0, -4.0]
    combined = SampleStats.from_values(a) + SampleStats.from_values(b)
    assert combined == SampleStats.from_values(a + b)
    assert sum([SampleStats.from_values(a), SampleStats.from_values(b)]) == combined


def test_small_samples_have_undefined_moments_not_errors() -> None:
    assert math.isnan(SampleStats.empty().mean)
    assert math.isnan(SampleStats.from_values([4.0]).variance)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"n": -1, "sum": 0, "sum_squares": 0}, "n"),
        ({"n": 3, "sum": 1, "sum_squares": -1}, "sum_squares"),
        ({"n": 3, "sum": float("nan"), "sum_squares": 1}, "sum"),
    ],
)
def test_invalid_sample_stats_are_rejected_with_the_field_named(
    kwargs: dict[str, float], argument: str
) -> None:
    with pytest.raises(StatisticsError) as info:
        SampleStats(**kwargs)
    assert info.value.argument == argument
    assert isinstance(info.value, ValueError) and isinstance(info.value, KaizendError)


def test_proportion_rejects_more_successes_than_units() -> None:
    with pytest.raises(StatisticsError, match="between 0 and n"):
        SampleStats.proportion(11, 10)


# ---------------------------------------------------------------------------------------------
# Welch t-test


def test_welch_matches_r_sleep_example() -> None:
    # R 4.x: t = -1.8608, df = 17.776, p-value = 0.07939,
    # 95 percent confidence interval: -3.3654832  0.2054832
    result = ttest(
        SampleStats.from_values(SLEEP_2), SampleStats.from_values(SLEEP_1), relative=False
    )
    assert result.method == "welch-t"
    assert result.effect == pytest.approx(0.75 - 2.33)
    assert result.statistic == pytest.approx(-1.8608, abs=5e-5)
    assert result.df == pytest.approx(17.776, abs=5e-4)
    assert result.p_value == pytest.approx(0.07939, abs=5e-6)
    assert result.ci == pytest.approx((-3.3654832, 0.2054832), abs=1e-7)
    assert not result.significant and not result.is_better and not result.is_worse


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_welch_matches_scipy_on_raw_data(alternative: str) -> None:
    rng = np.random.default_rng(7)
    control = rng.normal(10.0, 2.0, size=40)
    treatment = rng.normal(10.8, 3.5, size=25)
    expected = sps.ttest_ind(treatment, control, equal_var=False, alternative=alternative)
    result = ttest(
        SampleStats.from_values(control),
        SampleStats.from_values(treatment),
        relative=False,
        alternative=alternative,  # type: ignore[arg-type]
        alpha=0.1,
    )
    assert result.statistic == pytest.approx(expected.statistic, rel=1e-10)
    assert result.df == pytest.approx(expected.df, rel=1e-10)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-9)
    low, high = expected.confidence_interval(confidence_level=0.9)
    assert result.ci == pytest.approx((low, high), rel=1e-9)


def test_proportions_go_through_the_same_welch_test() -> None:
    control = [1] * 120 + [0] * 80
    treatment = [1] * 150 + [0] * 70
    expected = sps.ttest_ind(treatment, control, equal_var=False)
    result = ttest(
        SampleStats.proportion(120, 200), SampleStats.proportion(150, 220), relative=False
    )
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-9)
    assert result.effect == pytest.approx(150 / 220 - 0.6)


def test_one_sided_p_is_half_the_two_sided_in_its_direction() -> None:
    c, t = SampleStats.proportion(600, 1000), SampleStats.proportion(640, 1000)
    two = ttest(c, t)
    greater = ttest(c, t, alternative="greater")
    less = ttest(c, t, alternative="less")
    assert greater.p_value == pytest.approx(two.p_value / 2)
    assert less.p_value == pytest.approx(1 - two.p_value / 2)
    assert greater.ci_upper == math.inf and less.ci_lower == -math.inf
    # Duality: the one-sided bound excludes 0 exactly when p < alpha.
    assert greater.is_better == greater.significant


def test_relative_effect_uses_the_delta_method() -> None:
    c, t = SampleStats.proportion(600, 1000), SampleStats.proportion(650, 1000)
    result = ttest(c, t)
    mc, mt = 0.6, 0.65
    vc, vt = c.variance, t.variance
    se = math.sqrt(vt / (1000 * mc**2) + mt**2 * vc / (1000 * mc**4))
    assert result.relative and result.effect == pytest.approx(mt / mc - 1)
    assert result.standard_error == pytest.approx(se)
    # The relative and absolute tests tell nearly the same story on the same data.
    absolute = ttest(c, t, relative=False)
    assert result.statistic == pytest.approx(absolute.statistic, rel=0.06)


def test_delta_method_interval_covers_the_true_lift_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(11)
    reps, n, p_c, p_t = 4000, 1500, 0.60, 0.63
    control = SampleStats.proportion(rng.binomial(n, p_c, size=reps), n)
    treatment = SampleStats.proportion(rng.binomial(n, p_t, size=reps), n)
    result = ttest(control, treatment, relative=True)
    true_lift = p_t / p_c - 1
    coverage = np.mean((result.ci_lower <= true_lift) & (true_lift <= result.ci_upper))
    assert 0.935 <= coverage <= 0.965
    seq = sequential_ttest(control, treatment, relative=True)
    assert np.mean((seq.ci_lower <= true_lift) & (true_lift <= seq.ci_upper)) >= 0.99


# ---------------------------------------------------------------------------------------------
# Undefined cases


def test_fewer_than_two_units_gives_p_one_with_a_reason() -> None:
    for test in (ttest, sequential_ttest):
        result = test(SampleStats.proportion(1, 1), SampleStats.proportion(5, 10))
        assert result.p_value == 1.0
        assert result.ci == (-math.inf, math.inf)
        assert result.reason == "fewer than 2 units in an arm"
        assert not result.significant and not result.is_better and not result.is_worse


def test_zero_variance_in_both_arms_is_not_significant() -> None:
    result = ttest(SampleStats.proportion(0, 50), SampleStats.proportion(50, 50), relative=False)
    assert result.effect == 1.0  # the point estimate is still reported
    assert result.p_value == 1.0 and result.reason == "zero variance in both arms"
    # One arm without variance is fine: the other carries the uncertainty.
    one = ttest(SampleStats.proportion(0, 50), SampleStats.proportion(25, 50), relative=False)
    assert one.reason is None and one.p_value < 1e-6


def test_zero_control_mean_leaves_the_relative_effect_undefined() -> None:
    c, t = SampleStats.from_values([-1.0, 1.0, 0.0]), SampleStats.from_values([2.0, 3.0, 4.0])
    result = sequential_ttest(c, t, relative=True)
    assert math.isnan(result.effect) and result.p_value == 1.0
    assert "control mean is 0" in (result.reason or "")
    assert ttest(c, t, relative=False).reason is None


def test_vectorised_results_mark_undefined_entries() -> None:
    control = SampleStats.proportion(np.array([0, 300]), np.array([1, 500]))
    treatment = SampleStats.proportion(np.array([0, 340]), np.array([1, 500]))
    result = ttest(control, treatment)
    assert result.p_value[0] == 1.0 and result.p_value[1] < 0.05
    assert list(result.reason) == ["fewer than 2 units in an arm", ""]


# ---------------------------------------------------------------------------------------------
# Stratified (ramp steps)


def test_one_stratum_equals_the_plain_test() -> None:
    c, t = SampleStats.proportion(300, 500), SampleStats.proportion(330, 480)
    assert ttest([c], [t]).p_value == pytest.approx(ttest(c, t).p_value)
    assert ttest([c], [t]).method == "stratified-welch-t"


def test_strata_are_combined_with_inverse_null_variance_weights() -> None:
    strata_c = [SampleStats.proportion(90, 150), SampleStats.proportion(400, 700)]
    strata_t = [SampleStats.proportion(12, 20), SampleStats.proportion(450, 700)]
    result = ttest(strata_c, strata_t, relative=False)
    pairs = list(zip(strata_c, strata_t, strict=True))
    effects = [t.mean - c.mean for c, t in pairs]
    variances = [c.variance / c.n + t.variance / t.n for c, t in pairs]
    # Weights: 1 / the stratum's variance under the null, from both arms' units together.
    weights = np.array([1 / ((c + t).variance * (1 / c.n + 1 / t.n)) for c, t in pairs])
    shares = weights / weights.sum()
    assert result.effect == pytest.approx(np.dot(shares, effects))
    assert result.standard_error == pytest.approx(math.sqrt(np.dot(shares**2, variances)))


def test_stratified_welch_keeps_its_level_at_a_low_success_rate() -> None:
    # Weights from each stratum's own variance estimate would favour strata where the
    # challenger happened to have fewer successes (smaller variance) and drift "worse".
    rng = np.random.default_rng(9)
    reps, p = 4000, 0.05
    sizes = [(900, 100), (750, 250), (4000, 4000)]
    control = [SampleStats.proportion(rng.binomial(c, p, size=reps), c) for c, _ in sizes]
    treatment = [SampleStats.proportion(rng.binomial(t, p, size=reps), t) for _, t in sizes]
    result = ttest(control, treatment, relative=True)
    assert np.mean(result.is_worse) <= 0.035 and np.mean(result.is_better) <= 0.035


def test_stratification_avoids_simpsons_paradox_of_a_naive_pool() -> None:
    # The success rate drops from 80% to 50% between steps while the challenger's share goes
    # from 10% to 50%; the challenger is 2 points better in both steps.
    c = [SampleStats.proportion(7200, 9000), SampleStats.proportion(2500, 5000)]
    t = [SampleStats.proportion(820, 1000), SampleStats.proportion(2600, 5000)]
    stratified = ttest(c, t, relative=False)
    pooled = ttest(c[0] + c[1], t[0] + t[1], relative=False)
    assert stratified.effect == pytest.approx(0.02, abs=1e-3)
    assert pooled.effect < -0.1 and pooled.is_worse  # the naive pool calls it much worse


def test_an_empty_stratum_contributes_nothing() -> None:
    c, t = SampleStats.proportion(300, 500), SampleStats.proportion(330, 480)
    empty = SampleStats.empty()
    assert ttest([c, empty], [t, empty]).p_value == pytest.approx(ttest(c, t).p_value)


def test_mismatched_strata_are_rejected() -> None:
    c = SampleStats.proportion(3, 5)
    with pytest.raises(StatisticsError, match="strata"):
        ttest([c, c], [c])


# ---------------------------------------------------------------------------------------------
# Sequential test


def _floored_variance(c: SampleStats, t: SampleStats) -> float:
    """Welch variance of the absolute effect, floored at its value under the null."""
    union = c + t
    return max(c.variance / c.n + t.variance / t.n, union.variance * (1 / c.n + 1 / t.n))


def test_sequential_matches_the_msprt_formula() -> None:
    # Johari et al. (2022): Lambda = sqrt(V/(V+t^2)) exp(t^2 theta^2 / (2 V (V+t^2))),
    # with the mixing sd on the effect scale t = tau * s, s^2 = V * n_eff.
    c, t = SampleStats.proportion(1180, 2000), SampleStats.proportion(1290, 2000)
    tau = 0.07
    result = sequential_ttest(c, t, relative=False, tau=tau)
    theta = 0.645 - 0.59
    v = _floored_variance(c, t)
    t2 = tau**2 * v * 1000  # n_eff = 1 / (1/2000 + 1/2000)
    lam = math.sqrt(v / (v + t2)) * math.exp(t2 * theta**2 / (2 * v * (v + t2)))
    assert result.p_value == pytest.approx(1 / lam)
    assert result.df == math.inf and result.tau == tau


def test_sequential_interval_is_the_asymptotic_confidence_sequence() -> None:
    # Waudby-Smith et al. (2024): sigma * sqrt(2 (n rho^2 + 1) / (n^2 rho^2)
    #   * log(sqrt(n rho^2 + 1) / alpha)), with n = n_eff and sigma^2 = V n_eff.
    c, t = SampleStats.proportion(610, 1000), SampleStats.proportion(280, 400)
    result = sequential_ttest(c, t, relative=False, alpha=0.05, tau=0.1)
    n = 1 / (1 / 1000 + 1 / 400)
    v = _floored_variance(c, t)
    sigma, rho = math.sqrt(v * n), 0.1
    half = sigma * math.sqrt(
        2 * (n * rho**2 + 1) / (n**2 * rho**2) * math.log(math.sqrt(n * rho**2 + 1) / 0.05)
    )
    assert result.ci == pytest.approx((result.effect - half, result.effect + half))


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_sequential_p_value_and_interval_agree(alternative: str) -> None:
    # p <= alpha exactly when the interval excludes 0; sweep effects across the boundary.
    treated = np.arange(500, 700)
    control = SampleStats.proportion(np.full(treated.shape, 600), 1000)
    result = sequential_ttest(
        control,
        SampleStats.proportion(treated, 1000),
        alternative=alternative,  # type: ignore[arg-type]
    )
    excludes_zero = (result.ci_lower > 0) | (result.ci_upper < 0)
    assert np.array_equal(result.p_value <= 0.05, excludes_zero)
    assert excludes_zero.any() and not excludes_zero.all()


def test_one_sided_sequential_is_more_powerful_in_its_direction_and_wider_than_welch() -> None:
    c, t = SampleStats.proportion(600, 2000), SampleStats.proportion(680, 2000)
    two = sequential_ttest(c, t)
    greater = sequential_ttest(c, t, alternative="greater")
    assert greater.p_value < two.p_value
    assert greater.ci_lower > two.ci_lower
    fixed = ttest(c, t)
    assert two.ci_lower < fixed.ci_lower and two.ci_upper > fixed.ci_upper


def test_sequential_variance_floor_stops_a_tiny_all_failure_arm_looking_worse() -> None:
    # 10 challenger units, all failures, against a 10% control rate: Welch sees zero variance
    # in the small arm and calls it significantly worse; the sequential test does not.
    control, treatment = SampleStats.proportion(90, 900), SampleStats.proportion(0, 10)
    assert ttest(control, treatment, relative=False).is_worse
    assert not sequential_ttest(control, treatment, relative=False).is_worse
    assert not sequential_ttest(control, treatment, relative=True).is_worse


def test_aa_at_a_low_success_rate_keeps_false_rollbacks_low(bench: ModuleType) -> None:
    rng = np.random.default_rng(505)
    seq = bench.run_scenario(rng, 300, 0.05, 0.05, DEFAULT_TAU)["sequential"]
    assert seq["promoted"] + seq["rolled_back"] <= 0.03


@pytest.mark.parametrize("tau", [0.0, -1.0, float("inf")])
def test_sequential_rejects_a_bad_tau(tau: float) -> None:
    c = SampleStats.proportion(3, 5)
    with pytest.raises(StatisticsError) as info:
        sequential_ttest(c, c, tau=tau)
    assert info.value.argument == "tau"


@pytest.mark.parametrize(
    ("kwargs", "argument"), [({"alpha": 1.5}, "alpha"), ({"alternative": "bigger"}, "alternative")]
)
def test_invalid_test_arguments_are_named(kwargs: dict[str, object], argument: str) -> None:
    c = SampleStats.proportion(3, 5)
    with pytest.raises(StatisticsError) as info:
        ttest(c, c, **kwargs)  # type: ignore[arg-type]
    assert info.value.argument == argument


# ---------------------------------------------------------------------------------------------
# Sample-ratio mismatch


def test_srm_matches_the_scipy_chisquare_examples() -> None:
    # scipy.stats.chisquare docs: statistic 2.0, p = 0.84914503608460956 (uniform), and
    # statistic 3.5, p = 0.62338762774958223 against f_exp [16, 16, 16, 16, 16, 8].
    counts = [16, 18, 16, 14, 12, 12]
    assert srm_pvalue(counts, [1] * 6) == pytest.approx(0.84914503608460956, rel=1e-12)
    assert srm_pvalue(counts, [2, 2, 2, 2, 2, 1]) == pytest.approx(0.62338762774958223)


def test_srm_catches_52_48_configured_as_50_50() -> None:
    # Chi-square with 1 df: p = erfc(sqrt(x / 2)); x = 2 * 400^2 / 10,000 = 32.
    p = srm_pvalue([9_600, 10_400], [50, 50])
    assert p == pytest.approx(math.erfc(4.0), rel=1e-9)
    assert p < 0.001
    assert srm_pvalue([9_960, 10_040], [0.5, 0.5]) > 0.5


def test_srm_edge_cases() -> None:
    assert srm_pvalue([0, 0], [0.5, 0.5]) == 1.0
    assert srm_pvalue([10, 3], [1.0, 0.0]) == 0.0  # units in an arm with weight 0
    assert srm_pvalue([10, 0], [1.0, 0.0]) == 1.0
    with pytest.raises(StatisticsError):
        srm_pvalue([1, 2, 3], [0.5, 0.5])
    with pytest.raises(StatisticsError):
        srm_pvalue([1, 2], [0.0, 0.0])


# ---------------------------------------------------------------------------------------------
# Sample size


def test_fixed_sample_size_matches_the_normal_formula() -> None:
    # n per arm = (z_{1-alpha/2} + z_power)^2 (p1 q1 + p2 q2) / delta^2
    #           = (1.959964 + 0.841621)^2 * (0.24 + 0.2275) / 0.05^2 = 1467.0 -> 1468
    plan = required_sample_size(0.60, 0.05, alpha=0.05, power=0.8)
    assert (plan.control_units, plan.treatment_units) == (1468, 1468)
    assert plan.days(daily_units=500) == pytest.approx(2936 / 500)
    relative = required_sample_size(0.60, 0.05 / 0.60, relative=True)
    assert relative.total_units == plan.total_units
    assert required_sample_size(0.60, 0.05, alternative="greater").total_units < 2936


def test_planned_sample_sizes_deliver_their_power() -> None:
    rng = np.random.default_rng(5)
    reps = 3000
    for sequential in (False, True):
        plan = required_sample_size(0.60, 0.05, power=0.8, sequential=sequential)
        n_c, n_t = plan.control_units, plan.treatment_units
        control = SampleStats.proportion(rng.binomial(n_c, 0.60, size=reps), n_c)
        treatment = SampleStats.proportion(rng.binomial(n_t, 0.65, size=reps), n_t)
        test = sequential_ttest if sequential else ttest
        power = np.mean(test(control, treatment, relative=False).is_better)
        assert 0.77 <= power <= 0.84, (sequential, power)


def test_sequential_plan_is_longer_and_metric_plans_use_std() -> None:
    fixed = required_sample_size(0.60, 0.05)
    assert required_sample_size(0.60, 0.05, sequential=True).total_units > fixed.total_units
    # Latency-like metric: mean 200 ms, sd 80 ms, detect 10 ms.
    plan = required_sample_size(200.0, 10.0, std=80.0, power=0.8)
    assert plan.control_units == math.ceil(7.848879 * 2 * 80.0**2 / 10.0**2)


@pytest.mark.parametrize(
    ("args", "kwargs", "argument"),
    [
        ((0.6, 0.0), {}, "minimum_detectable_effect"),
        ((0.98, 0.05), {}, "baseline"),
        ((0.6, 0.05), {"power": 1.0}, "power"),
        ((0.6, -0.05), {"alternative": "greater"}, "alternative"),
        ((0.6, 0.05), {"treatment_share": 0.0}, "treatment_share"),
    ],
)
def test_sample_size_rejects_impossible_plans(
    args: tuple[float, float], kwargs: dict[str, object], argument: str
) -> None:
    with pytest.raises(StatisticsError) as info:
        required_sample_size(*args, **kwargs)  # type: ignore[arg-type]
    assert info.value.argument == argument


# ---------------------------------------------------------------------------------------------
# Simulations (fast versions of bench/experiment_simulations.py)


def test_aa_sequential_keeps_false_promotions_low_while_peeking_welch_does_not(
    bench: ModuleType,
) -> None:
    rng = np.random.default_rng(101)
    result = bench.run_scenario(rng, 400, 0.60, 0.60, DEFAULT_TAU)
    seq, naive = result["sequential"], result["welch_peeking_every_tick"]
    assert seq["promoted"] <= 0.03 and seq["promoted"] + seq["rolled_back"] <= 0.05
    # Peeking at a fixed-horizon test every 100 units: ~10% promoted, ~30% decided in all.
    assert naive["promoted"] + naive["rolled_back"] >= 0.2
    assert naive["promoted"] > 2 * seq["promoted"] + 0.03


def test_a_better_challenger_is_promoted_through_the_ramp(bench: ModuleType) -> None:
    rng = np.random.default_rng(202)
    seq = bench.run_scenario(rng, 300, 0.60, 0.65, DEFAULT_TAU)["sequential"]
    assert seq["promoted"] >= 0.92 and seq["rolled_back"] == 0.0
    assert 3000 <= seq["median_units_to_decision"] <= 6000


def test_a_worse_challenger_is_rolled_back(bench: ModuleType) -> None:
    rng = np.random.default_rng(303)
    seq = bench.run_scenario(rng, 300, 0.60, 0.55, DEFAULT_TAU)["sequential"]
    assert seq["rolled_back"] >= 0.95 and seq["promoted"] == 0.0


def test_srm_simulation_catches_a_52_48_split(bench: ModuleType) -> None:
    rng = np.random.default_rng(404)
    assert bench.srm_detection(rng, 200, 0.52)["flagged_p_below_0.001"] >= 0.95
    assert bench.srm_detection(rng, 200, 0.50)["flagged_p_below_0.001"] <= 0.02
