"""The drift statistics on synthetic windows: false alarms near the configured level when
both windows come from one distribution, detection when they do not, at both window sizes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from kaizend.core.errors import StatisticsError
from kaizend.models.drift import stats
from scipy import stats as scipy_stats

ALPHA = 0.05
# FIT-like technology mix of the traffic, and the same with hydro and AD three times as common.
TECHNOLOGIES = ["Photovoltaic", "Wind", "none", "Hydro", "Anaerobic digestion", "Micro CHP"]
MIX = np.array([0.27, 0.24, 0.19, 0.12, 0.07, 0.07]) / 0.96
SHIFTED_MIX = np.array([0.20, 0.18, 0.14, 0.27, 0.16, 0.05])


def binomial_band(trials: int, level: float) -> tuple[float, float]:
    """The rates a test at ``level`` shows over ``trials`` with 99.9% probability."""
    low, high = scipy_stats.binom.interval(0.999, trials, level)
    return low / trials, high / trials


def test_psi_matches_its_formula_and_is_zero_for_equal_shares() -> None:
    ref, cur = np.array([50, 30, 20]), np.array([30, 30, 40])
    r, c = ref / 100, cur / 100
    assert stats.psi(ref, cur) == pytest.approx(float(np.sum((c - r) * np.log(c / r))))
    assert stats.psi([10, 20, 30], [20, 40, 60]) == pytest.approx(0.0)
    # An empty share does not make it infinite.
    assert math.isfinite(stats.psi([10, 0], [5, 5]))
    with pytest.raises(StatisticsError, match="same categories"):
        stats.psi([1, 2], [1, 2, 3])


def test_chi_square_agrees_with_scipy_and_pools_sparse_categories() -> None:
    ref, cur = np.array([120, 90, 60, 30]), np.array([100, 110, 50, 40])
    expected = scipy_stats.chi2_contingency(np.vstack([ref, cur]), correction=False)
    result = stats.chi_square(ref, cur)
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(expected.pvalue)
    # Categories seen once or twice are pooled before the test (expected counts under 5).
    sparse = stats.chi_square([100, 100, 1, 1, 0], [100, 100, 0, 2, 1])
    assert sparse.p_value > 0.5
    assert stats.chi_square([5, 0], [7, 0]).p_value == 1.0  # one category: nothing to test


def test_categories_keep_the_frequent_values_and_pool_the_rest_including_new_ones() -> None:
    counts = stats.align_categories(["a"] * 5 + ["b"] * 3 + ["c"], ["a", "d", "d"],
                                    max_categories=3)  # fmt: skip
    assert counts.labels == ("a", "b", stats.OTHER)
    assert counts.reference.tolist() == [5, 3, 1]
    assert counts.current.tolist() == [1, 0, 2]  # the new place name "d" is counted


@pytest.mark.parametrize(("n_ref", "n_cur"), [(300, 300), (2000, 300)])
def test_chi_square_false_alarm_rate_is_near_alpha(n_ref: int, n_cur: int) -> None:
    rng = np.random.default_rng(1)
    trials = 400
    # Many place names, most of them rare: the shape of the location field.
    places = np.array([1 / (i + 1) for i in range(400)])
    places /= places.sum()
    alarms = 0
    for _ in range(trials):
        counts = stats.align_categories(
            rng.choice(400, n_ref, p=places), rng.choice(400, n_cur, p=places)
        )
        alarms += stats.chi_square(counts.reference, counts.current).p_value < ALPHA
    low, high = binomial_band(trials, ALPHA)
    assert low <= alarms / trials <= high


def test_psi_flags_noise_on_small_windows_but_not_on_large_ones() -> None:
    """Why PSI decides only large windows: its no-drift value grows as the windows shrink."""
    rng = np.random.default_rng(2)
    places = np.array([1 / (i + 1) for i in range(40)])
    places /= places.sum()

    def alarm_rate(n: int) -> float:
        alarms = 0
        for _ in range(100):
            counts = stats.align_categories(
                rng.choice(40, n, p=places), rng.choice(40, n, p=places), max_categories=20
            )
            alarms += stats.psi(counts.reference, counts.current) > 0.1
        return alarms / 100

    assert alarm_rate(150) > 0.2
    assert alarm_rate(5000) == 0.0


def test_a_shifted_technology_mix_is_detected_by_both_methods() -> None:
    rng = np.random.default_rng(3)
    detected_small = 0
    for _ in range(50):
        counts = stats.align_categories(
            rng.choice(TECHNOLOGIES, 2000, p=MIX), rng.choice(TECHNOLOGIES, 300, p=SHIFTED_MIX)
        )
        detected_small += stats.chi_square(counts.reference, counts.current).p_value < 0.01
    assert detected_small >= 48
    large = stats.align_categories(
        rng.choice(TECHNOLOGIES, 5000, p=MIX), rng.choice(TECHNOLOGIES, 5000, p=SHIFTED_MIX)
    )
    assert stats.psi(large.reference, large.current) > 0.1


def test_new_place_names_are_detected() -> None:
    rng = np.random.default_rng(4)
    known = [f"place-{i}" for i in range(60)]
    unseen = [f"new-place-{i}" for i in range(60)]
    reference = rng.choice(known, 2000)
    current = np.concatenate([rng.choice(known, 180), rng.choice(unseen, 120)])
    counts = stats.align_categories(reference, current)
    assert stats.chi_square(counts.reference, counts.current).p_value < 1e-6
    assert stats.psi(counts.reference, counts.current) > 0.1
    same = stats.align_categories(reference, rng.choice(known, 300))
    assert stats.chi_square(same.reference, same.current).p_value > 0.001


def test_kolmogorov_smirnov_holds_its_level_and_detects_a_shift_on_small_windows() -> None:
    rng = np.random.default_rng(5)
    trials = 400
    alarms = sum(
        stats.ks(rng.lognormal(4, 1, 200), rng.lognormal(4, 1, 200)).p_value < ALPHA
        for _ in range(trials)
    )
    low, high = binomial_band(trials, ALPHA)
    assert low <= alarms / trials <= high
    shifted = sum(
        stats.ks(rng.normal(0, 1, 200), rng.normal(0.5, 1, 200)).p_value < ALPHA for _ in range(50)
    )
    assert shifted >= 48


def test_normalised_wasserstein_ignores_noise_and_trivia_on_large_windows() -> None:
    rng = np.random.default_rng(6)
    same = [stats.normalised_wasserstein(rng.normal(5, 2, 5000), rng.normal(5, 2, 5000))
            for _ in range(50)]  # fmt: skip
    assert max(same) < 0.1
    # A shift of a third of a standard deviation is drift; the scale does not matter.
    assert stats.normalised_wasserstein(rng.normal(5, 2, 5000), rng.normal(5.66, 2, 5000)) > 0.2
    assert stats.normalised_wasserstein(
        rng.normal(500, 200, 5000), rng.normal(566, 200, 5000)
    ) == pytest.approx(
        stats.normalised_wasserstein(rng.normal(5, 2, 5000), rng.normal(5.66, 2, 5000)), abs=0.05
    )
    # A trivial shift (0.05 sd) a test on 20,000 values calls significant stays under 0.1.
    ref, cur = rng.normal(0, 1, 20000), rng.normal(0.05, 1, 20000)
    assert stats.ks(ref, cur).p_value < ALPHA
    assert stats.normalised_wasserstein(ref, cur) < 0.1


def test_mmd_permutation_test_holds_its_level_and_detects_a_mean_shift() -> None:
    rng = np.random.default_rng(7)
    trials = 150
    alarms = 0
    for trial in range(trials):
        x, y = rng.normal(size=(40, 8)), rng.normal(size=(40, 8))
        alarms += stats.mmd_test(x, y, permutations=100, seed=trial).p_value < ALPHA
    low, high = binomial_band(trials, ALPHA)
    assert low <= alarms / trials <= high
    x, y = rng.normal(size=(200, 8)), rng.normal(size=(200, 8))
    y[:, 0] += 0.6
    shifted = stats.mmd_test(x, y, permutations=200)
    assert shifted.p_value < 0.01 and shifted.mmd2 > shifted.threshold
    # Large windows are subsampled to max_samples.
    big = stats.mmd_test(rng.normal(size=(3000, 8)), rng.normal(size=(3000, 8)), max_samples=300)
    assert (big.n_reference, big.n_current) == (300, 300)


def test_domain_classifier_auc_has_the_mann_whitney_spread_without_drift() -> None:
    """Scored on a held-out half, the AUC's no-drift spread is known: thresholds set from it
    hold their level at any window size."""
    rng = np.random.default_rng(8)
    trials, n = 200, 300
    aucs = np.array([
        stats.domain_classifier(rng.normal(size=(n, 16)), rng.normal(size=(n, 16)),
                                seed=trial).auc
        for trial in range(trials)
    ])  # fmt: skip
    null_sd = stats.auc_null_sd(n // 2)
    assert abs(aucs.mean() - 0.5) < 3 * null_sd / math.sqrt(trials)
    assert 0.8 * null_sd < aucs.std() < 1.2 * null_sd
    threshold = 0.5 + scipy_stats.norm.ppf(1 - ALPHA) * null_sd
    low, high = binomial_band(trials, ALPHA)
    assert low <= np.mean(aucs > threshold) <= high


def test_domain_classifier_separates_a_shift() -> None:
    rng = np.random.default_rng(9)
    x, y = rng.normal(size=(300, 16)), rng.normal(size=(500, 16))
    y[:, :3] += 0.4
    shifted = stats.domain_classifier(x, y)
    assert shifted.auc > 0.65
    assert shifted.n_per_window == 300  # balanced: the larger window is subsampled
    assert shifted.n_test_per_window == 150
    assert shifted.current_scores.mean() > shifted.reference_scores.mean()


def test_bernoulli_cusum_rarely_alarms_in_control_and_catches_a_drop() -> None:
    rng = np.random.default_rng(9)
    p0, h = 0.6, 10.0
    in_control = sum(
        stats.bernoulli_cusum(rng.random(3000) < p0, p0, p0 - 0.05).max() > h for _ in range(200)
    )
    # The in-control run to a false alarm is at least e^h (22,000) units: over 3,000 units
    # at most ~14% of the runs may alarm; far fewer do.
    assert in_control / 200 < 0.05
    dropped = [stats.bernoulli_cusum(rng.random(3000) < p0 - 0.08, p0, p0 - 0.05)
               for _ in range(100)]  # fmt: skip
    assert sum(path.max() > h for path in dropped) >= 95
    # The statistic never goes below zero and moves by the log-likelihood ratio.
    path = stats.bernoulli_cusum([0, 1, 1, 0], 0.6, 0.5)
    assert path[0] == pytest.approx(math.log(0.5 / 0.4))
    assert (path >= 0).all()
    with pytest.raises(StatisticsError, match="0 or 1"):
        stats.bernoulli_cusum([0, 2], 0.6, 0.5)
