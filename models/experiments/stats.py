"""Statistics for A/B experiments: pure functions over summary statistics.

Every test here takes :class:`SampleStats` -- count, sum and sum of squares of a metric per arm
-- so the experiment loop aggregates events in DuckDB and never ships raw values around. A
proportion (success rate) is a ``SampleStats`` whose sum and sum of squares are both the number
of successes, so rates go through the same tests as means.

Public face
    - :class:`SampleStats` -- ``SampleStats(n, sum, sum_squares)``; ``+`` combines two samples.
    - :func:`ttest` -- fixed-horizon Welch two-sample t-test (relative or absolute effect).
    - :func:`sequential_ttest` -- always-valid test (normal-mixture mSPRT / asymptotic
      confidence sequence), for every decision taken while data is still arriving.
    - :func:`srm_pvalue` -- sample-ratio mismatch, chi-square against the configured weights.
    - :func:`ratio_stats` -- a ratio metric over the units of randomisation (delta method),
      optionally adjusted with each unit's pre-experiment values (CUPED), as ``SampleStats``
      for the tests above.
    - :func:`required_sample_size` -- how many units (and days) an experiment likely needs.

Conventions
    - ``effect`` is ``treatment - control`` (absolute) or ``treatment / control - 1``
      (relative). "Better" means a higher metric; for a metric where lower is better (latency,
      error rate) read :attr:`TestResult.is_worse` as "better", or swap the alternative.
    - ``alternative="greater"`` tests H1: effect > 0, ``"less"`` H1: effect < 0.
    - Ramp steps: ``control`` and ``treatment`` may each be a sequence of ``SampleStats``, one
      per stratum (ramp step); strata are matched by position and their effects combined with
      inverse-variance weights, the variance taken under the null (from both arms' units
      together) so that a weight does not depend on the effect it weighs. Never pool units
      collected under different traffic weights into one ``SampleStats``: if the metric
      drifts while the share changes, the pooled comparison is biased (Simpson's paradox);
      the stratified estimate is not.
    - Vectorised: the fields of a ``SampleStats`` may be numpy arrays of one shape (many
      experiments or many ticks at once); the result's fields are then arrays of that shape.

Undefined cases never raise; they return ``p_value == 1.0``, an interval of ``(-inf, inf)``,
``standard_error`` NaN and a ``reason``: fewer than 2 units in an arm, zero variance in both
arms (e.g. 0 of 50 against 50 of 50), or a control mean of 0 for a relative effect (``effect`` NaN).
Such a result never counts as significant. A stratum with one of these problems contributes
nothing to a stratified estimate; the result is undefined only if every stratum is.

Fixed-horizon test (:func:`ttest`)
    Welch's t-test: ``t = effect / se`` with ``se^2 = v_t/n_t + v_c/n_c`` and
    Welch-Satterthwaite degrees of freedom. For the relative effect ``r = m_t/m_c - 1`` the
    delta method gives ``se^2 = v_t/(n_t m_c^2) + m_t^2 v_c/(n_c m_c^4)``, with the same
    Satterthwaite construction on those two terms; across strata ``se^2`` is the weighted sum
    ``sum_k w_k^2 se_k^2`` with the weights normalised to 1. Valid once, at a horizon fixed in
    advance: peeking at it every tick and stopping at the first p < alpha inflates false
    positives (``bench/experiment_simulations.py`` measures by how much).

Sequential test (:func:`sequential_ttest`)
    A normal-mixture sequential probability ratio test (mSPRT; Johari, Koomen, Pekelis
    & Walsh, "Always valid inference: continuous monitoring of A/B tests", Operations Research
    70(3), 2022), which is also the two-sample asymptotic confidence sequence of
    Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas ("Time-uniform central limit theory and
    asymptotic confidence sequences", Annals of Statistics, 2024), boundary from Howard,
    Ramdas, McAuliffe & Sekhon ("Time-uniform, nonparametric, nonasymptotic confidence
    sequences", Annals of Statistics 49(2), 2021). With estimate ``theta``, its variance ``V``
    (as in the Welch test), effective sample size ``n_eff = 1/(1/n_c + 1/n_t)`` and mixing
    distribution ``N(0, tau_eff^2)`` on the effect, the likelihood-ratio martingale is::

        Lambda = sqrt(V / (V + tau_eff^2)) * exp(tau_eff^2 theta^2 / (2 V (V + tau_eff^2)))

    ``tau`` (the argument) is the mixing standard deviation in *standardised* units, effect
    divided by the per-unit standard deviation ``s = sqrt(V n_eff)``, so one value serves
    relative and absolute effects and any metric: ``tau_eff = tau s``. Writing
    ``rho = tau^2 n_eff`` and ``z = theta / sqrt(V)``, the always-valid p-value is
    ``min(1, 1/Lambda)`` and the confidence sequence is::

        theta +- sqrt(V) * sqrt((1 + rho)/rho * (2 log(1/alpha) + log(1 + rho)))

    By Ville's inequality the chance that ``p <= alpha`` at *any* tick, under no effect, is at
    most alpha (asymptotically: the variance is estimated), however often one looks. One-sided
    alternatives use the half-normal mixture over effects of that sign, which multiplies
    ``Lambda`` by ``2 Phi(z sqrt(rho/(1+rho)))``; the one-sided bound is found numerically.
    The p-value at one look is already always valid; a caller may keep the running minimum.
    ``V`` is floored at its value under the null, ``v_u (1/n_c + 1/n_t)`` (divided by
    ``m_c^2`` for a relative effect), where ``v_u`` is the variance of both arms' units
    together: early in a ramp the challenger may hold ten units, all failures, whose variance
    estimate of 0 would make the test call it worse at once (simulated A/A at a 5% success
    rate: ~20% false rollbacks without the floor, ~1% with it). The floor is asymptotically
    inactive under the null and only conservative otherwise.
    A smaller ``tau`` is tighter late (small effects, long experiments), a larger one early.
    Across strata: with inverse-variance weights the score and the information add up over
    ramp steps, so the mixture stays a martingale across them; the null-variance weights used
    here coincide with those asymptotically under the null.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from kaizend.core.errors import StatisticsError
from scipy import optimize
from scipy import stats as sps

Alternative = Literal["two-sided", "greater", "less"]

ALTERNATIVES: tuple[str, ...] = ("two-sided", "greater", "less")

# Tuned with bench/experiment_simulations.py (4,000 runs per case, ramp 10% -> 25% -> 50%, a
# look every 100 units): power for 65% vs 60% within 10,000 units peaks at tau = 0.1 (97.7%;
# 96.5-97.4% for tau in 0.05-0.15), as does rollback of 55% vs 60% (98.0%); units to a decision
# stop shrinking there. The A/A false-positive rate does not depend on tau (0.4-1.2% either
# way). 0.1 standardised is about a 5-point change on a 60% success rate.
DEFAULT_TAU = 0.1

Number = float | int | np.ndarray


@dataclass(frozen=True)
class SampleStats:
    """Summary statistics of one arm's metric: count, sum and sum of squares.

    A proportion (k successes out of n) is ``SampleStats(n, k, k)``: its values are 0 or 1, so
    the sum of squares equals the sum. Fields may be numpy arrays of one shape (vectorised).
    """

    n: Number
    """Number of units (observations) in the arm."""
    sum: Number
    """Sum of the metric over the units."""
    sum_squares: Number
    """Sum of the squared metric over the units."""

    def __post_init__(self) -> None:
        n = np.asarray(self.n, dtype=float)
        ss = np.asarray(self.sum_squares, dtype=float)
        if np.any(~np.isfinite(n)) or np.any(n < 0):
            raise StatisticsError("n", f"SampleStats.n must be a finite count >= 0, got {self.n}")
        if np.any(~np.isfinite(ss)) or np.any(ss < 0):
            raise StatisticsError(
                "sum_squares",
                f"SampleStats.sum_squares must be finite and >= 0, got {self.sum_squares}",
            )
        if np.any(~np.isfinite(np.asarray(self.sum, dtype=float))):
            raise StatisticsError("sum", f"SampleStats.sum must be finite, got {self.sum}")

    @classmethod
    def from_values(cls, values: Sequence[float] | np.ndarray) -> SampleStats:
        """Summarise raw per-unit values (any iterable of numbers)."""
        v = np.asarray(values, dtype=float).ravel()
        return cls(n=int(v.size), sum=float(v.sum()), sum_squares=float(np.dot(v, v)))

    @classmethod
    def proportion(cls, successes: Number, n: Number) -> SampleStats:
        """A success rate: ``successes`` out of ``n`` units, as 0/1 values."""
        k = np.asarray(successes, dtype=float)
        if np.any(k < 0) or np.any(k > np.asarray(n, dtype=float)):
            raise StatisticsError(
                "successes", f"successes must be between 0 and n, got {successes} of {n}"
            )
        return cls(n=n, sum=successes, sum_squares=successes)

    @classmethod
    def empty(cls) -> SampleStats:
        """No units; the identity of ``+``."""
        return cls(n=0, sum=0.0, sum_squares=0.0)

    @property
    def mean(self) -> Number:
        """Sample mean; NaN with no units."""
        n = np.asarray(self.n, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            return _out(np.where(n > 0, np.asarray(self.sum, dtype=float) / n, np.nan))

    @property
    def variance(self) -> Number:
        """Unbiased sample variance (ddof=1); NaN below 2 units."""
        n = np.asarray(self.n, dtype=float)
        s = np.asarray(self.sum, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            # Clamped at 0: sum_squares - sum^2/n can go slightly negative by cancellation.
            centred = np.maximum(np.asarray(self.sum_squares, dtype=float) - s * s / n, 0.0)
            return _out(np.where(n >= 2, centred / (n - 1), np.nan))

    @property
    def std(self) -> Number:
        """Sample standard deviation (ddof=1); NaN below 2 units."""
        return _out(np.sqrt(np.asarray(self.variance, dtype=float)))

    def __add__(self, other: object) -> SampleStats:
        if not isinstance(other, SampleStats):
            return NotImplemented
        return SampleStats(
            n=self.n + other.n,
            sum=self.sum + other.sum,
            sum_squares=self.sum_squares + other.sum_squares,
        )

    def __radd__(self, other: object) -> SampleStats:
        # Lets the builtin sum() start from 0.
        if isinstance(other, int) and other == 0:
            return self
        return NotImplemented


@dataclass(frozen=True)
class TestResult:
    """The outcome of one comparison of treatment (challenger) against control (champion).

    Scalar inputs give float fields; array-valued ``SampleStats`` give arrays of their shape.
    """

    __test__ = False  # not a pytest test class, despite the name

    method: str
    """``"welch-t"`` or ``"msprt-normal-mixture"``, prefixed ``"stratified-"`` when the arms
    were given as sequences of strata."""
    relative: bool
    """Whether ``effect`` is relative (``treatment/control - 1``) or absolute."""
    alternative: str
    """``"two-sided"``, ``"greater"`` (H1: effect > 0) or ``"less"`` (H1: effect < 0)."""
    alpha: float
    """Significance level; the interval has coverage ``1 - alpha``."""
    effect: Number
    """Point estimate of the effect (across strata: weighted, see the module docstring)."""
    standard_error: Number
    """Standard error of ``effect``; NaN when the test is undefined."""
    ci_lower: Number
    """Lower confidence bound (``-inf`` for ``"less"`` or an undefined test)."""
    ci_upper: Number
    """Upper confidence bound (``+inf`` for ``"greater"`` or an undefined test)."""
    p_value: Number
    """p-value (always valid for the sequential test); 1.0 when the test is undefined."""
    statistic: Number
    """``effect / standard_error``: t (Welch) or z (sequential)."""
    df: Number
    """Welch-Satterthwaite degrees of freedom; ``inf`` for the (asymptotic) sequential test."""
    control_mean: Number
    """Control mean pooled over strata (descriptive only)."""
    treatment_mean: Number
    """Treatment mean pooled over strata (descriptive only)."""
    n_control: Number
    """Control units, over all strata."""
    n_treatment: Number
    """Treatment units, over all strata."""
    tau: float | None = None
    """Standardised mixing standard deviation of the sequential test; None for Welch."""
    reason: str | np.ndarray | None = None
    """Why the test is undefined (None when it is defined); per element for arrays."""

    @property
    def ci(self) -> tuple[Number, Number]:
        """The confidence interval as ``(lower, upper)``."""
        return (self.ci_lower, self.ci_upper)

    @property
    def significant(self) -> bool | np.ndarray:
        """Whether the null hypothesis is rejected at ``alpha``."""
        return _out_bool(np.asarray(self.p_value) <= self.alpha)

    @property
    def is_better(self) -> bool | np.ndarray:
        """Treatment significantly higher: the whole interval lies above 0."""
        return _out_bool(np.asarray(self.ci_lower) > 0)

    @property
    def is_worse(self) -> bool | np.ndarray:
        """Treatment significantly lower: the whole interval lies below 0."""
        return _out_bool(np.asarray(self.ci_upper) < 0)


@dataclass(frozen=True)
class SampleSizePlan:
    """How many units an experiment needs to detect a given effect with a given power."""

    control_units: int
    """Units needed in the control arm."""
    treatment_units: int
    """Units needed in the treatment arm."""
    alpha: float
    """Significance level planned for."""
    power: float
    """Probability of a significant result when the effect is exactly the one planned for."""
    sequential: bool
    """Planned for :func:`sequential_ttest` (True) or the fixed-horizon :func:`ttest`."""

    @property
    def total_units(self) -> int:
        """Units over both arms."""
        return self.control_units + self.treatment_units

    def days(self, daily_units: float) -> float:
        """Days to collect :attr:`total_units` at ``daily_units`` units per day (all arms)."""
        if not daily_units > 0:
            raise StatisticsError("daily_units", f"daily_units must be > 0, got {daily_units}")
        return self.total_units / daily_units


# ---------------------------------------------------------------------------------------------
# Public tests


def ttest(
    control: SampleStats | Sequence[SampleStats],
    treatment: SampleStats | Sequence[SampleStats],
    *,
    relative: bool = True,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
) -> TestResult:
    """Fixed-horizon Welch two-sample t-test of treatment against control.

    ``relative=True`` tests ``treatment/control - 1`` (delta method), otherwise the difference
    of means. Pass sequences of ``SampleStats`` (one per ramp step, matched by position) for a
    stratified test. Valid for one look at a horizon fixed in advance; for decisions taken
    while data arrives use :func:`sequential_ttest`. See the module docstring for formulas and
    the behaviour in undefined cases (never raises on data, only on invalid arguments).
    """
    _check_common(alpha, alternative)
    est = _estimate(control, treatment, relative)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(est.variance)
        t = est.effect / se
        df = est.df
        if alternative == "two-sided":
            p = 2.0 * sps.t.sf(np.abs(t), df)
            q = sps.t.ppf(1.0 - alpha / 2.0, df)
            lo, hi = est.effect - q * se, est.effect + q * se
        elif alternative == "greater":
            p = sps.t.sf(t, df)
            lo, hi = est.effect - sps.t.ppf(1.0 - alpha, df) * se, np.full_like(t, np.inf)
        else:
            p = sps.t.cdf(t, df)
            lo, hi = np.full_like(t, -np.inf), est.effect + sps.t.ppf(1.0 - alpha, df) * se
    return _result(est, "welch-t", relative, alternative, alpha, se, t, df, p, lo, hi, None)


def sequential_ttest(
    control: SampleStats | Sequence[SampleStats],
    treatment: SampleStats | Sequence[SampleStats],
    *,
    relative: bool = True,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
    tau: float = DEFAULT_TAU,
) -> TestResult:
    """Always-valid sequential test (normal-mixture mSPRT) of treatment against control.

    Same arguments and result as :func:`ttest`, plus ``tau``: the standard deviation of the
    normal mixing distribution over the *standardised* effect (effect / per-unit standard
    deviation). The p-value and confidence interval stay valid when the test is repeated after
    every batch of data and the experiment stops at the first significant look: the chance of
    ever rejecting a true null is at most ``alpha``. ``df`` is ``inf`` (normal approximation).
    Formulas and references are in the module docstring.
    """
    _check_common(alpha, alternative)
    if not (isinstance(tau, int | float) and math.isfinite(tau) and tau > 0):
        raise StatisticsError("tau", f"tau must be a finite number > 0, got {tau!r}")
    est = _estimate(control, treatment, relative, null_variance_floor=True)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        se = np.sqrt(est.variance)
        z = est.effect / se
        rho = tau * tau * est.n_eff
        shrink = rho / (1.0 + rho)
        log_lambda = -0.5 * np.log1p(rho) + 0.5 * shrink * z * z
        if alternative == "two-sided":
            half = se * np.sqrt((2.0 * math.log(1.0 / alpha) + np.log1p(rho)) / shrink)
            lo, hi = est.effect - half, est.effect + half
        else:
            sign = 1.0 if alternative == "greater" else -1.0
            log_lambda = log_lambda + math.log(2.0) + sps.norm.logcdf(sign * np.sqrt(shrink) * z)
            bound = se * _one_sided_boundary(rho, alpha)
            if alternative == "greater":
                lo, hi = est.effect - bound, np.full_like(z, np.inf)
            else:
                lo, hi = np.full_like(z, -np.inf), est.effect + bound
        p = np.minimum(1.0, np.exp(-log_lambda))
    df = np.full_like(np.asarray(z, dtype=float), np.inf)
    return _result(
        est, "msprt-normal-mixture", relative, alternative, alpha, se, z, df, p, lo, hi, tau
    )


def srm_pvalue(
    counts: Sequence[float] | np.ndarray, weights: Sequence[float] | np.ndarray
) -> float:
    """p-value of a sample-ratio mismatch: chi-square goodness of fit of ``counts`` per arm
    against the *configured* traffic ``weights`` (any positive scale; normalised here).

    No units gives 1.0. Units in an arm configured with weight 0 give 0.0 (a certain mismatch:
    chi-square is undefined there). Arms with weight 0 and no units are ignored.
    """
    c = np.asarray(counts, dtype=float).ravel()
    w = np.asarray(weights, dtype=float).ravel()
    if c.size != w.size or c.size == 0:
        raise StatisticsError(
            "weights", f"need one weight per count, got {c.size} counts and {w.size} weights"
        )
    if np.any(~np.isfinite(c)) or np.any(c < 0):
        raise StatisticsError("counts", f"counts must be finite and >= 0, got {list(c)}")
    if np.any(~np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
        raise StatisticsError(
            "weights", f"weights must be finite, >= 0 and not all 0, got {list(w)}"
        )
    total = c.sum()
    if total == 0:
        return 1.0
    expected = total * w / w.sum()
    if np.any((expected == 0) & (c > 0)):
        return 0.0
    keep = expected > 0
    if keep.sum() < 2:
        return 1.0
    statistic = float(np.sum((c[keep] - expected[keep]) ** 2 / expected[keep]))
    if keep.sum() == 2:  # one degree of freedom: the same tail, without scipy's overhead
        return math.erfc(math.sqrt(statistic / 2.0))
    return float(sps.chi2.sf(statistic, int(keep.sum()) - 1))


def required_sample_size(
    baseline: float,
    minimum_detectable_effect: float,
    *,
    std: float | None = None,
    relative: bool = False,
    alpha: float = 0.05,
    power: float = 0.8,
    treatment_share: float = 0.5,
    alternative: Alternative = "two-sided",
    sequential: bool = False,
    tau: float = DEFAULT_TAU,
) -> SampleSizePlan:
    """Units needed to detect ``minimum_detectable_effect`` with probability ``power``.

    ``baseline`` is the control's success rate, or its mean when ``std`` (the per-unit
    standard deviation, assumed equal in both arms) is given. The effect is absolute, or a
    fraction of ``baseline`` with ``relative=True``. ``treatment_share`` is the challenger's
    share of traffic. With ``sequential=True`` the plan is for :func:`sequential_ttest` with
    this ``tau``: the horizon by which at least ``power`` of experiments with that effect will
    have been decided (an upper bound: many stop earlier). Normal approximation. Under a ramp,
    early steps at a small share carry less information: plan with the last step's share and
    add the units spent in earlier steps for a conservative estimate. ``plan.days(daily)``
    turns the plan into days.
    """
    _check_common(alpha, alternative)
    if not 0 < power < 1:
        raise StatisticsError("power", f"power must be in (0, 1), got {power}")
    if not 0 < treatment_share < 1:
        raise StatisticsError(
            "treatment_share", f"treatment_share must be in (0, 1), got {treatment_share}"
        )
    delta = minimum_detectable_effect * baseline if relative else minimum_detectable_effect
    if not (math.isfinite(delta) and delta != 0):
        raise StatisticsError(
            "minimum_detectable_effect",
            f"the effect to detect must be finite and non-zero, got {minimum_detectable_effect}"
            + (" relative to a baseline of 0" if relative and baseline == 0 else ""),
        )
    if alternative == "greater" and delta < 0 or alternative == "less" and delta > 0:
        raise StatisticsError(
            "alternative", f"an effect of {delta:+g} cannot be detected with '{alternative}'"
        )
    if std is None:
        treated = baseline + delta
        if not (0 <= baseline <= 1 and 0 <= treated <= 1):
            raise StatisticsError(
                "baseline",
                f"as success rates, baseline ({baseline}) and baseline + effect ({treated}) "
                "must lie in [0, 1]; pass std= for a metric that is not a rate",
            )
        var_c, var_t = baseline * (1 - baseline), treated * (1 - treated)
    else:
        if not (math.isfinite(std) and std > 0):
            raise StatisticsError("std", f"std must be a finite number > 0, got {std}")
        var_c = var_t = std * std
    share = treatment_share
    # Variance of the estimated difference is k / N for N units in total.
    k = var_c / (1 - share) + var_t / share
    if k == 0:
        raise StatisticsError("baseline", "both arms have zero variance: nothing to detect")
    z_power = sps.norm.ppf(power)
    one_sided = alternative != "two-sided"
    if not sequential:
        z_alpha = sps.norm.ppf(1 - alpha) if one_sided else sps.norm.ppf(1 - alpha / 2)
        total = k * (z_alpha + z_power) ** 2 / delta**2
    else:
        if not (math.isfinite(tau) and tau > 0):
            raise StatisticsError("tau", f"tau must be a finite number > 0, got {tau!r}")

        def margin(units: float) -> float:
            rho = tau * tau * units * share * (1 - share)
            if one_sided:
                boundary = float(_one_sided_boundary(np.asarray(rho), alpha))
            else:
                boundary = math.sqrt((1 + rho) / rho * (2 * math.log(1 / alpha) + math.log1p(rho)))
            return abs(delta) * math.sqrt(units / k) - boundary - z_power

        hi = k * (sps.norm.ppf(1 - alpha / 2) + z_power) ** 2 / delta**2
        while margin(hi) < 0:
            hi *= 2
        total = optimize.brentq(margin, 1e-9, hi, xtol=1e-6)
    treatment_units = math.ceil(total * share)
    control_units = math.ceil(total * (1 - share))
    return SampleSizePlan(control_units, treatment_units, alpha, power, sequential)


# ---------------------------------------------------------------------------------------------
# Unit-level ratio metrics and the adjustment with each unit's history


@dataclass(frozen=True)
class UnitValues:
    """One arm's units (the units of randomisation) for one ratio metric.

    The arm's metric is ``sum(numerator) / sum(denominator)`` over its units: a success rate
    is successes over queries, each unit contributing however many queries it asked.
    ``covariates`` (optional, shape ``(units, k)``) are values fixed before the experiment
    started, such as each unit's pre-period numerator and denominator and a has-history
    indicator; a unit without history has zeros (and indicator 0).
    """

    numerator: np.ndarray
    denominator: np.ndarray
    covariates: np.ndarray | None = None


@dataclass(frozen=True)
class RatioSummary:
    """Both arms of one ratio metric summarised for the tests of this module."""

    control: SampleStats
    """``n`` units with mean the (adjusted) ratio and per-unit variance its delta-method
    variance times ``n``: the Welch and sequential tests take it as they take any mean."""
    treatment: SampleStats
    adjusted: bool
    """Whether the regression adjustment was applied (covariates given, enough units)."""
    variance_removed: float
    """Share of the variance of the difference between the arms that the adjustment removed
    (0 when not adjusted)."""
    design_effect: float
    """Variance of the difference with units as the unit of analysis over the variance if
    every query were independent (binary metrics only; NaN otherwise or when undefined)."""
    units: tuple[int, int]
    """Units in (control, treatment)."""
    denominators: tuple[float, float]
    """Sum of the denominator (queries, for a rate) in (control, treatment)."""


def ratio_stats(
    control: UnitValues, treatment: UnitValues, *, adjust: bool = True, binary: bool = False
) -> RatioSummary:
    """Summarise a ratio metric measured per unit in two arms, for :func:`ttest` and
    :func:`sequential_ttest`.

    Delta method (Deng, Knoblich & Lu, "Applying the Delta Method in Metric Analytics", KDD
    2018): an arm's ratio ``R = sum(y)/sum(x)`` over its ``n`` units has variance
    ``var(l)/n`` with the linearised unit values ``l_i = (y_i - R x_i) / mean(x)``; it is
    returned as a ``SampleStats`` of ``n`` values with mean ``R`` and variance ``var(l)``, so
    units, not queries, are what the tests count.

    Adjustment (CUPED, Deng, Xu, Kohavi & Walker, WSDM 2013; for ratio metrics on the
    linearised values as GrowthBook and Statsig do): with covariates ``z`` fixed before the
    experiment, ``theta`` is the least-squares fit of ``l`` on ``z`` within arms, pooled over
    both arms, and each arm's estimate becomes ``R - theta . (mean_arm(z) - mean_both(z))``
    with per-unit variance ``var(l - theta . z)``. The covariates do not depend on the
    assignment, so the estimate stays unbiased (units without history carry zeros and an
    indicator); the always-valid test applied to it stays valid because it only sees a mean
    and a variance. Not applied with fewer units than covariates + 2 per arm.
    """
    arms = []
    for values in (control, treatment):
        y = np.asarray(values.numerator, dtype=float).ravel()
        x = np.asarray(values.denominator, dtype=float).ravel()
        if y.shape != x.shape:
            raise StatisticsError(
                "denominator", f"{y.size} numerators but {x.size} denominators: one per unit"
            )
        z = None
        if values.covariates is not None:
            z = np.asarray(values.covariates, dtype=float)
            z = z.reshape(y.size, z.shape[-1] if z.ndim > 1 else 1)
        arms.append((y, x, z))
    n = [y.size for y, _, _ in arms]
    x_sum = [float(x.sum()) for _, x, _ in arms]
    ratio, lin = [], []
    for (y, x, _), nk, xs in zip(arms, n, x_sum, strict=True):
        if nk == 0 or xs <= 0:
            ratio.append(math.nan)
            lin.append(np.zeros(nk))
            continue
        r = float(y.sum()) / xs
        ratio.append(r)
        lin.append((y - r * x) / (xs / nk))
    var = [float(v.dot(v)) / (k - 1) if k >= 2 else 0.0 for v, k in zip(lin, n, strict=True)]
    adj_ratio, adj_var = list(ratio), list(var)
    k_cov = arms[0][2].shape[1] if arms[0][2] is not None else 0
    adjusted = (
        adjust
        and k_cov > 0
        and arms[1][2] is not None
        and all(math.isfinite(r) for r in ratio)
        and min(n) >= k_cov + 2
    )
    if adjusted:
        zs = [z for _, _, z in arms]
        centred = [z - z.mean(axis=0) for z in zs]
        s_zz = sum(c.T @ c for c in centred)
        s_zl = sum(c.T @ v for c, v in zip(centred, lin, strict=True))
        theta = np.linalg.pinv(s_zz) @ s_zl
        both = np.concatenate(zs).mean(axis=0)
        for i in range(2):
            resid = lin[i] - centred[i] @ theta
            adj_ratio[i] = ratio[i] - float(theta @ (zs[i].mean(axis=0) - both))
            adj_var[i] = float(resid.dot(resid)) / (n[i] - 1)
    stats_out = []
    for r, v, k in zip(adj_ratio, adj_var, n, strict=True):
        if not math.isfinite(r):
            stats_out.append(SampleStats.empty())  # no denominator: nothing measured
            continue
        stats_out.append(SampleStats(n=k, sum=k * r, sum_squares=max(k - 1, 0) * v + k * r * r))
    removed, design = 0.0, math.nan
    if min(n) >= 2:
        before = var[0] / n[0] + var[1] / n[1]
        after = adj_var[0] / n[0] + adj_var[1] / n[1]
        if adjusted and before > 0:
            removed = 1.0 - after / before
        if binary and all(xs > 0 for xs in x_sum):
            independent = sum(r * (1 - r) / xs for r, xs in zip(ratio, x_sum, strict=True))
            if independent > 0:
                design = before / independent
    return RatioSummary(
        control=stats_out[0], treatment=stats_out[1], adjusted=bool(adjusted),
        variance_removed=removed, design_effect=design, units=(n[0], n[1]),
        denominators=(x_sum[0], x_sum[1]),
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Internals


@dataclass(frozen=True)
class _Estimate:
    """An effect estimate, combined over strata, before any test is applied."""

    effect: np.ndarray
    variance: np.ndarray
    df: np.ndarray
    n_eff: np.ndarray
    usable: np.ndarray
    reason: np.ndarray
    control_mean: np.ndarray
    treatment_mean: np.ndarray
    n_control: np.ndarray
    n_treatment: np.ndarray
    stratified: bool


def _check_common(alpha: float, alternative: str) -> None:
    if not (isinstance(alpha, int | float) and 0 < alpha < 1):
        raise StatisticsError("alpha", f"alpha must be in (0, 1), got {alpha!r}")
    if alternative not in ALTERNATIVES:
        raise StatisticsError(
            "alternative", f"alternative must be one of {ALTERNATIVES}, got {alternative!r}"
        )


def _as_strata(arm: SampleStats | Sequence[SampleStats], name: str) -> list[SampleStats]:
    if isinstance(arm, SampleStats):
        return [arm]
    strata = list(arm)
    if not strata or not all(isinstance(s, SampleStats) for s in strata):
        raise StatisticsError(
            name, f"{name} must be a SampleStats or a non-empty sequence of SampleStats"
        )
    return strata


def _estimate(
    control: SampleStats | Sequence[SampleStats],
    treatment: SampleStats | Sequence[SampleStats],
    relative: bool,
    *,
    null_variance_floor: bool = False,
) -> _Estimate:
    cs, ts = _as_strata(control, "control"), _as_strata(treatment, "treatment")
    if len(cs) != len(ts):
        raise StatisticsError(
            "treatment", f"control has {len(cs)} strata but treatment has {len(ts)}"
        )

    fields = [
        [np.asarray(getattr(s, f), dtype=float) for s in arm]
        for arm in (cs, ts)
        for f in ("n", "sum", "sum_squares")
    ]
    try:
        shape = np.broadcast_shapes(*(a.shape for field in fields for a in field))
    except ValueError as err:
        raise StatisticsError(
            "control", "the fields of every SampleStats must broadcast to one shape"
        ) from err
    nc, sc, qc, nt, st, qt = (
        np.stack([np.broadcast_to(a, shape) for a in field]) for field in fields
    )
    # Arrays are (strata, *shape); axis 0 is summed away below.
    with np.errstate(divide="ignore", invalid="ignore"):
        mc, mt = sc / nc, st / nt
        vc = np.where(nc >= 2, np.maximum(qc - sc * mc, 0.0) / (nc - 1), np.nan)
        vt = np.where(nt >= 2, np.maximum(qt - st * mt, 0.0) / (nt - 1), np.nan)
        if relative:
            raw = mt / mc - 1.0
            term_c = mt * mt * vc / (nc * mc**4)
            term_t = vt / (nt * mc * mc)
        else:
            raw = mt - mc
            term_c = vc / nc
            term_t = vt / nt
        var_k = term_c + term_t
        # Variance of the two arms' units together: what both share under "no effect".
        nu, su = nc + nt, sc + st
        vu = np.maximum(qc + qt - su * su / nu, 0.0) / (nu - 1)
        if null_variance_floor:
            # Early in a ramp an arm may hold ten units, all failures: its variance estimate is
            # 0 and the test grows wildly overconfident. The floor is this variance evaluated
            # at the null (both arms with variance vu, treatment mean equal to control mean),
            # which is stable; asymptotically inactive under the null, conservative otherwise.
            var_null = vu * (1.0 / nc + 1.0 / nt) / (mc * mc if relative else 1.0)
            var_k = np.maximum(var_k, var_null)
        ok = (nc >= 2) & (nt >= 2) & np.isfinite(var_k) & (var_k > 0) & np.isfinite(raw)
        # Stratum weights: inverse variance *under the null*. Weights from each stratum's own
        # estimate would correlate with its effect (for a rate, fewer challenger successes
        # means a smaller variance, so a larger weight), biasing the combination downward.
        design = vu * (1.0 / nc + 1.0 / nt) / ((su / nu) ** 2 if relative else 1.0)
        weight = np.where(ok, 1.0 / np.where(ok & (design > 0), design, 1.0), 0.0)
        total_weight = weight.sum(axis=0)
        usable = total_weight > 0
        share = weight / np.where(usable, total_weight, 1.0)
        combined = (share * np.where(ok, raw, 0.0)).sum(axis=0)
        variance = (share * share * np.where(ok, var_k, 0.0)).sum(axis=0)
        # Welch-Satterthwaite over every per-arm, per-stratum variance term.
        df_terms = share**4 * (term_c**2 / (nc - 1) + term_t**2 / (nt - 1))
        df = variance**2 / np.where(ok, df_terms, 0.0).sum(axis=0)
        n_eff = np.where(ok, nc * nt / (nc + nt), 0.0).sum(axis=0)
        pooled_nc, pooled_nt = nc.sum(axis=0), nt.sum(axis=0)
        pooled_mc, pooled_mt = sc.sum(axis=0) / pooled_nc, st.sum(axis=0) / pooled_nt
    if len(cs) == 1:
        point = np.where(np.isfinite(raw[0]), raw[0], np.nan)
        few = (nc[0] < 2) | (nt[0] < 2)
        zero_mean = relative & (mc[0] == 0)
        reason = np.select(
            [usable, few, zero_mean, var_k[0] == 0],
            [
                "",
                "fewer than 2 units in an arm",
                "control mean is 0: relative effect undefined",
                "zero variance in both arms",
            ],
            default="non-finite statistics",
        )
    else:
        point = np.full(usable.shape, np.nan)
        reason = np.where(
            usable,
            "",
            "no stratum has 2+ units per arm, non-zero variance"
            + (" and a non-zero control mean" if relative else ""),
        )
    return _Estimate(
        effect=np.where(usable, combined, point),
        variance=np.where(usable, variance, np.nan),
        df=np.where(usable, df, np.nan),
        n_eff=n_eff,
        usable=usable,
        reason=reason,
        control_mean=pooled_mc,
        treatment_mean=pooled_mt,
        n_control=pooled_nc,
        n_treatment=pooled_nt,
        stratified=not isinstance(control, SampleStats),
    )


def _one_sided_boundary(rho: np.ndarray, alpha: float) -> np.ndarray:
    """z where the one-sided (half-normal) mixture reaches 1/alpha, for each rho.

    Solves ``c z^2 / 2 + log Phi(sqrt(c) z) = log(1/alpha) + log(1 + rho)/2 - log 2`` with
    ``c = rho/(1+rho)``; the left side increases in z, so bisection (vectorised) is safe.
    """
    rho = np.asarray(rho, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = rho / (1.0 + rho)
        target = math.log(1.0 / alpha) + 0.5 * np.log1p(rho) - math.log(2.0)
        lo = np.zeros_like(rho)
        # At hi the quadratic alone exceeds target + 1 and log Phi(positive) > -0.7.
        hi = np.sqrt(2.0 * (target + 1.0) / c)
        for _ in range(80):
            mid = 0.5 * (lo + hi)
            above = 0.5 * c * mid * mid + sps.norm.logcdf(np.sqrt(c) * mid) >= target
            hi = np.where(above, mid, hi)
            lo = np.where(above, lo, mid)
    return np.where(rho > 0, hi, np.nan)


def _result(
    est: _Estimate,
    method: str,
    relative: bool,
    alternative: str,
    alpha: float,
    se: np.ndarray,
    statistic: np.ndarray,
    df: np.ndarray,
    p: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    tau: float | None,
) -> TestResult:
    ok = est.usable
    reason = est.reason
    if reason.ndim == 0:
        reason_out: str | np.ndarray | None = str(reason) or None
    else:
        reason_out = reason
    return TestResult(
        method=("stratified-" if est.stratified else "") + method,
        relative=relative,
        alternative=alternative,
        alpha=float(alpha),
        effect=_out(est.effect),
        standard_error=_out(np.where(ok, se, np.nan)),
        ci_lower=_out(np.where(ok, lo, -np.inf)),
        ci_upper=_out(np.where(ok, hi, np.inf)),
        p_value=_out(np.where(ok, np.clip(p, 0.0, 1.0), 1.0)),
        statistic=_out(np.where(ok, statistic, np.nan)),
        df=_out(np.where(ok, df, np.nan)),
        control_mean=_out(est.control_mean),
        treatment_mean=_out(est.treatment_mean),
        n_control=_out(est.n_control),
        n_treatment=_out(est.n_treatment),
        tau=tau,
        reason=reason_out,
    )


def _out(x: np.ndarray | float) -> Number:
    """A Python float for 0-d values, the array otherwise."""
    a = np.asarray(x, dtype=float)
    return float(a) if a.ndim == 0 else a


def _out_bool(x: np.ndarray) -> bool | np.ndarray:
    return bool(x) if np.ndim(x) == 0 else x
