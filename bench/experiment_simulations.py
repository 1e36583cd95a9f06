"""Simulations behind kaizend's experiment statistics (issue 6, "What must be shown" 1-3).

Model of an experiment, shared by every simulation here:

- Units (users) arrive one at a time; each is assigned to the challenger with the current
  step's share and succeeds with its arm's success probability (independent Bernoulli).
- Ramp: the challenger share is 10% for the first 1,000 units, 25% for the next 1,000, then
  50% up to the 10,000-unit horizon (``--ramp``). Each step is a stratum; every test combines
  the strata with inverse-variance weights (``control``/``treatment`` passed to the test as one
  ``SampleStats`` per step), never a naive pool across different weights.
- A tick every 100 units runs the gates in the experiment loop's order: significantly worse
  -> roll back (any step); otherwise, once the last step (50%) has its minimum sample (1,000
  units), significantly better -> promote. The first decision ends the experiment.
- "Significantly" is the two-sided test at alpha = 0.05 (its interval entirely above or below
  0), on the relative effect. The sequential test (mSPRT) is compared with the fixed-horizon
  Welch test peeked at every tick (the naive way), and with that Welch test looked at once,
  at the horizon (the baseline it is valid for).

Reports: A/A false promotions and false rollbacks (1,000 runs, 60% vs 60%, and 5% vs 5%
where early arms often have no successes); power for a
challenger at 65% vs 60% (promoted) and at 55% vs 60% (rolled back), with the median units to
the decision; SRM on 20,000 units configured as 50/50: the p-value of an exact 10,400/9,600
split, the share of runs flagged (p < 0.001) when each unit lands in one arm with probability
0.52, and the false-alarm rate of a true 50/50 split. ``--tune`` adds the sequential test's
numbers over a grid of tau.

Prints one JSON line. Run: ``.venv/bin/python bench/experiment_simulations.py [--reps N]``.

``--clustered`` (issue 13) runs instead the daemon's own unit-level analysis
(`models.experiments.units.step_data`, the function the SQL per-unit aggregation feeds, and
`models.experiments.policy.decide`) on clustered traffic: 4,000 users, each with a success
rate drawn from a Beta distribution of mean 0.5 and intra-user correlation ICC, and an
activity drawn log-normal with spread sigma; each tick brings 500 queries, a user's share of
them in proportion to its activity (Poisson); sticky assignment by a uniform hash per user
(challenger when the hash is below the step's share, as routing does); ramp 10/25/50%, 1,000
units per step (``min_units``), a step's maximum duration 40 ticks (20,000 queries), alpha
0.05, tau 0.1. Guardrails are off (the simulated answers never fail). Each user's history
(for the adjustment) is its queries of a pre-period, ``--pre-queries`` in all spread by
activity and answered at the user's own rate. One JSON line per A/A condition (ICC, sigma)
with the share of false decisions (promoted or rolled back), without and with the
adjustment; then two lines for a challenger at 0.55 against 0.50, at ICC 0.1 and at ICC 0.3
(sigma 1.0), without and with the adjustment on the same simulated traffic: the share
promoted, the median units (summed over the steps, in the earlier steps and in the deciding
step) and queries to a decision (an undecided run counting as never), and the median
correlation of the units' pre-period and in-experiment (linearised) values at the decision.
A last line compares the two at equal power (ICC 0.3): with a step's maximum of 168 ticks
(the daemon's default of 7 days, at a tick an hour), the units and queries by which 50%, 80%
and 90% of the experiments were promoted, i.e. what each design needs for that power (None
when it never gets there).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kaizend.models.experiments.policy import Policy, StepData  # noqa: E402
from kaizend.models.experiments.policy import decide as policy_decide  # noqa: E402
from kaizend.models.experiments.stats import (  # noqa: E402
    DEFAULT_TAU,
    SampleStats,
    TestResult,
    sequential_ttest,
    srm_pvalue,
    ttest,
)
from kaizend.models.experiments.units import step_data  # noqa: E402

from bench.record import record  # noqa: E402

RAMP: tuple[tuple[float, int], ...] = ((0.10, 1000), (0.25, 1000), (0.50, 1000))
"""(challenger share, minimum units) per step; the last step runs to the horizon."""


@dataclass(frozen=True)
class Trajectory:
    """Per-step cumulative statistics at every tick: arrays shaped (steps, reps, ticks)."""

    control: list[SampleStats]
    treatment: list[SampleStats]
    tick_units: np.ndarray
    """Units seen by the end of each tick, shape (ticks,)."""
    promote_from: int
    """First tick index at which the last step has its minimum sample."""


def simulate(
    rng: np.random.Generator,
    reps: int,
    p_control: float,
    p_treatment: float,
    *,
    ramp: tuple[tuple[float, int], ...] = RAMP,
    horizon: int = 10_000,
    tick: int = 100,
) -> Trajectory:
    """Simulate ``reps`` experiments, returning per-step cumulative arm statistics per tick."""
    ticks = horizon // tick
    ends = np.cumsum([units for _, units in ramp[:-1]])
    tick_units = tick * np.arange(1, ticks + 1)
    # Step of each tick; step boundaries are multiples of the tick size.
    step = np.searchsorted(ends, tick_units, side="left")
    shares = np.array([share for share, _ in ramp])[step]
    n_t = rng.binomial(tick, np.broadcast_to(shares, (reps, ticks)))
    n_c = tick - n_t
    k_t = rng.binomial(n_t, p_treatment)
    k_c = rng.binomial(n_c, p_control)
    control, treatment = [], []
    for s in range(len(ramp)):
        mask = step == s
        cum = [np.cumsum(np.where(mask, x, 0), axis=1) for x in (n_c, k_c, n_t, k_t)]
        control.append(SampleStats.proportion(cum[1], cum[0]))
        treatment.append(SampleStats.proportion(cum[3], cum[2]))
    last_start = int(ends[-1]) if len(ends) else 0
    promote_from = int(np.searchsorted(tick_units, last_start + ramp[-1][1]))
    return Trajectory(control, treatment, tick_units, promote_from)


def decide(result: TestResult, traj: Trajectory) -> tuple[np.ndarray, np.ndarray]:
    """First decision per run: (+1 promote / -1 roll back / 0 none, units at the decision)."""
    worse = np.asarray(result.is_worse)
    better = np.asarray(result.is_better).copy()
    better[:, : traj.promote_from] = False
    # Roll back wins over promote when both fire on one tick (they cannot with one CI).
    fired = worse | better
    any_fired = fired.any(axis=1)
    first = np.argmax(fired, axis=1)
    rows = np.arange(fired.shape[0])
    decision = np.where(worse[rows, first], -1, np.where(better[rows, first], 1, 0))
    decision = np.where(any_fired, decision, 0)
    units = np.where(any_fired, traj.tick_units[first], -1)
    return decision, units


def summarise(decision: np.ndarray, units: np.ndarray) -> dict[str, float | int | None]:
    """Rates of each decision and the median units to a decision."""
    decided = units[decision != 0]
    return {
        "promoted": round(float(np.mean(decision == 1)), 4),
        "rolled_back": round(float(np.mean(decision == -1)), 4),
        "undecided": round(float(np.mean(decision == 0)), 4),
        "median_units_to_decision": int(np.median(decided)) if decided.size else None,
    }


def run_scenario(
    rng: np.random.Generator, reps: int, p_control: float, p_treatment: float, tau: float
) -> dict[str, dict[str, float | int | None]]:
    """One scenario under the sequential test, the peeked Welch test and Welch at the horizon."""
    traj = simulate(rng, reps, p_control, p_treatment)
    seq = sequential_ttest(traj.control, traj.treatment, tau=tau)
    naive = ttest(traj.control, traj.treatment)
    once = ttest(at_tick(traj.control, -1), at_tick(traj.treatment, -1))
    once_decision = np.where(once.is_worse, -1, np.where(once.is_better, 1, 0))
    return {
        "sequential": summarise(*decide(seq, traj)),
        "welch_peeking_every_tick": summarise(*decide(naive, traj)),
        "welch_once_at_horizon": summarise(once_decision, np.full(reps, traj.tick_units[-1])),
    }


def at_tick(strata: list[SampleStats], index: int) -> list[SampleStats]:
    """The per-step statistics of every run at one tick: arrays shaped (reps,)."""
    return [
        SampleStats(np.asarray(s.n)[:, index], np.asarray(s.sum)[:, index], s.sum_squares[:, index])
        for s in strata
    ]


def srm_detection(
    rng: np.random.Generator, reps: int, true_share: float, units: int = 20_000
) -> dict[str, float]:
    """Share of runs flagged (p < 0.001) when the true split is ``true_share`` vs 50/50."""
    treated = rng.binomial(units, true_share, size=reps)
    pvalues = np.array([srm_pvalue([units - t, t], [0.5, 0.5]) for t in treated])
    return {
        "flagged_p_below_0.001": round(float(np.mean(pvalues < 0.001)), 4),
        "median_p": float(f"{np.median(pvalues):.3g}"),
    }


CLUSTERED_CONDITIONS: tuple[tuple[float, float], ...] = ((0.0, 0.0), (0.1, 1.0), (0.3, 1.0),
                                                         (0.3, 1.5))  # fmt: skip
"""(ICC, activity sigma) of the A/A conditions."""
USERS = 4000
TICK_QUERIES = 500
TICK_S = 3600.0
MAX_STEP_TICKS = 40
EQUAL_POWER_STEP_TICKS = 168
"""A step's maximum for the equal-power line: the daemon's default ``max_step_s`` (7 days)
at a tick an hour, so that both designs reach the powers compared."""
POWERS = (0.5, 0.8, 0.9)


@dataclass(frozen=True)
class Population:
    """Simulated users: per user its success rate, share of traffic, hash and history."""

    rate: np.ndarray
    activity: np.ndarray
    """Each user's share of the queries (sums to 1)."""
    hash: np.ndarray
    pre_queries: np.ndarray
    pre_successes: np.ndarray


def population(
    rng: np.random.Generator, icc: float, sigma: float, pre_queries: int, users: int = USERS
) -> Population:
    """Users with a Beta(mean 0.5, ICC ``icc``) success rate and log-normal(``sigma``)
    activity; ICC 0 gives every user the rate 0.5. Their history: ``pre_queries`` queries
    spread by activity, answered at the user's own rate."""
    if icc > 0:
        k = 1.0 / icc - 1.0  # a + b of the Beta: ICC = 1 / (a + b + 1)
        rate = rng.beta(0.5 * k, 0.5 * k, users)
    else:
        rate = np.full(users, 0.5)
    activity = np.exp(sigma * rng.standard_normal(users))
    activity /= activity.sum()
    pre = rng.poisson(pre_queries * activity).astype(float)
    return Population(rate, activity, rng.random(users), pre, rng.binomial(pre.astype(int), rate))


def unit_tables(
    pop: Population, queries: np.ndarray, successes: np.ndarray, challenger: np.ndarray
) -> dict[str, dict[str, np.ndarray]]:
    """Per arm, the per-unit table `storage.experiments.unit_metrics` returns (its primary
    columns): every user with a query in the step is a unit."""
    seen = queries > 0
    out = {}
    for arm, mask in (("champion", seen & ~challenger), ("challenger", seen & challenger)):
        out[arm] = {
            "queries": queries[mask], "successes": successes[mask],
            "pre_queries": pop.pre_queries[mask], "pre_successes": pop.pre_successes[mask],
        }  # fmt: skip
    return out


def pre_correlation(table: dict[str, np.ndarray]) -> float:
    """Correlation of the units' linearised pre-period and in-experiment success, among the
    units with history (what the adjustment exploits)."""
    has = table["pre_queries"] > 0
    if has.sum() < 3:
        return float("nan")

    def linearised(y: np.ndarray, x: np.ndarray) -> np.ndarray:
        return (y - y.sum() / x.sum() * x) / x.mean()

    post = linearised(table["successes"][has], table["queries"][has])
    pre = linearised(table["pre_successes"][has], table["pre_queries"][has])
    return float(np.corrcoef(post, pre)[0, 1])


def clustered_experiment(
    seed: int,
    icc: float,
    sigma: float,
    lift: float,
    adjust: bool,
    pre_queries: int,
    max_step_ticks: int = MAX_STEP_TICKS,
) -> dict[str, float]:
    """One simulated experiment driven by the policy to its end: its action, and the units
    (summed over steps) and queries at the decision."""
    rng = np.random.default_rng(seed)
    pop = population(rng, icc, sigma, pre_queries)
    policy = Policy(min_units=1000, max_duration_s=max_step_ticks * TICK_S, guardrails=())
    treated_rate = np.clip(pop.rate + lift, 0.0, 1.0)
    done: list[StepData] = []
    weight = policy.weights[0]
    queries = np.zeros(USERS)
    successes = np.zeros(USERS)
    elapsed = 0.0
    spent_units = spent_queries = 0.0
    while True:
        challenger = pop.hash < weight
        new = rng.poisson(TICK_QUERIES * pop.activity)
        queries += new
        successes += rng.binomial(new, np.where(challenger, treated_rate, pop.rate))
        elapsed += TICK_S
        tables = unit_tables(pop, queries, successes, challenger)
        current = step_data(tables, weight=weight, elapsed_s=elapsed, adjust=adjust, metrics=())
        decision = policy_decide([*done, current], policy)
        units = current.champion["success"].n + current.challenger["success"].n
        if decision.action == "advance":
            done.append(current)
            spent_units += units
            spent_queries += sum(current.queries)
            next_weight = policy.next_weight(weight)
            assert next_weight is not None
            weight, elapsed = next_weight, 0.0
            queries, successes = np.zeros(USERS), np.zeros(USERS)
        elif decision.action != "hold":
            return {
                "action": decision.action,
                "units": spent_units + units,
                "earlier_steps_units": spent_units,
                "last_step_units": units,
                "queries": spent_queries + sum(current.queries),
                "variance_removed": current.variance_removed,
                "pre_correlation": pre_correlation(
                    {k: np.concatenate([t[k] for t in tables.values()]) for k in tables["champion"]}
                ),
                "design_effect": current.design_effect,
            }


def _clustered_batch(args: tuple[list[int], float, float, float, bool, int, int]) -> list[dict]:
    seeds, *rest = args
    return [clustered_experiment(seed, *rest) for seed in seeds]


def run_clustered(
    seeds: list[int],
    icc: float,
    sigma: float,
    lift: float,
    adjust: bool,
    pre_queries: int,
    workers: int,
    max_step_ticks: int = MAX_STEP_TICKS,
) -> list[dict[str, float]]:
    """``clustered_experiment`` for every seed, over ``workers`` processes."""
    chunks = [seeds[i::workers] for i in range(workers)]
    jobs = [
        (chunk, icc, sigma, lift, adjust, pre_queries, max_step_ticks) for chunk in chunks if chunk
    ]
    if workers <= 1:
        return [r for job in jobs for r in _clustered_batch(job)]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers) as pool:
        return [r for batch in pool.map(_clustered_batch, jobs) for r in batch]


def _median_to_decision(runs: list[dict[str, float]], key: str) -> float | None:
    """Median ``key`` at the decision over every run, an undecided run counting as never
    (None when over half are undecided)."""
    values = [r[key] if r["action"] in ("promote", "rollback") else np.inf for r in runs]
    median = float(np.median(values))
    return median if np.isfinite(median) else None


def _at_power(runs: list[dict[str, float]], key: str, power: float) -> float | None:
    """``key`` by which a share ``power`` of the runs was promoted: the units (or queries) the
    design needs for that power, were it stopped there (None when it never reaches it)."""
    values = [r[key] if r["action"] == "promote" else np.inf for r in runs]
    value = float(np.quantile(values, power, method="inverted_cdf"))
    return value if np.isfinite(value) else None


def _saved(plain: float | None, adjusted: float | None) -> float | None:
    return round(1 - adjusted / plain, 3) if plain and adjusted else None


def _share(runs: list[dict[str, float]], *actions: str) -> float:
    return round(sum(r["action"] in actions for r in runs) / len(runs), 4)


def clustered_report(sims: int, seed: int, workers: int, pre_queries: int) -> list[dict]:
    """The JSON lines of ``--clustered``."""
    seeds = np.random.SeedSequence(seed).generate_state(sims).tolist()
    lines: list[dict] = []

    def both(
        icc: float, sigma: float, lift: float, ticks: int = MAX_STEP_TICKS
    ) -> tuple[list[dict], list[dict]]:
        return tuple(  # type: ignore[return-value]
            run_clustered(seeds, icc, sigma, lift, adjust, pre_queries, workers, ticks)
            for adjust in (False, True)
        )

    for icc, sigma in CLUSTERED_CONDITIONS:
        start = time.perf_counter()
        plain, adjusted = both(icc, sigma, 0.0)
        lines.append({
            "bench": "experiment_simulations_clustered", "icc": icc, "activity_sigma": sigma,
            "sims": sims, "false_decisions": _share(plain, "promote", "rollback"),
            "promoted": _share(plain, "promote"), "rolled_back": _share(plain, "rollback"),
            "false_decisions_adjusted": _share(adjusted, "promote", "rollback"),
            "median_design_effect": round(float(np.nanmedian(
                [r["design_effect"] for r in plain])), 2),
            "seconds": round(time.perf_counter() - start, 1),
        })  # fmt: skip
    for name, icc in (("power", 0.1), ("adjustment", 0.3)):
        start = time.perf_counter()
        plain, adjusted = both(icc, 1.0, 0.05)
        units = [_median_to_decision(runs, "units") for runs in (plain, adjusted)]
        queries = [_median_to_decision(runs, "queries") for runs in (plain, adjusted)]
        last = [_median_to_decision(runs, "last_step_units") for runs in (plain, adjusted)]
        earlier = [_median_to_decision(runs, "earlier_steps_units") for runs in (plain, adjusted)]
        lines.append({
            "bench": f"experiment_simulations_clustered_{name}", "icc": icc,
            "activity_sigma": 1.0, "control": 0.50, "challenger": 0.55, "sims": sims,
            "promoted": _share(plain, "promote"), "promoted_adjusted": _share(adjusted, "promote"),
            "median_units_to_decision": units[0], "median_units_to_decision_adjusted": units[1],
            "units_saved": round(1 - units[1] / units[0], 3) if all(units) else None,
            "median_units_in_deciding_step": last[0],
            "median_units_in_deciding_step_adjusted": last[1],
            "units_in_deciding_step_saved": round(1 - last[1] / last[0], 3) if all(last) else None,
            "median_units_in_earlier_steps": earlier[0],
            "median_units_in_earlier_steps_adjusted": earlier[1],
            "median_queries_to_decision": queries[0],
            "median_queries_to_decision_adjusted": queries[1],
            "queries_saved": round(1 - queries[1] / queries[0], 3) if all(queries) else None,
            "pre_queries": pre_queries,
            "median_pre_correlation": round(float(np.nanmedian(
                [r["pre_correlation"] for r in adjusted])), 3),
            "median_variance_removed": round(float(np.median(
                [r["variance_removed"] for r in adjusted])), 3),
            "seconds": round(time.perf_counter() - start, 1),
        })  # fmt: skip
    # At equal power: the units (queries) by which a share of the experiments was promoted,
    # a step lasting up to the daemon's default maximum so that both designs get there.
    start = time.perf_counter()
    plain, adjusted = both(0.3, 1.0, 0.05, EQUAL_POWER_STEP_TICKS)
    line: dict = {
        "bench": "experiment_simulations_clustered_equal_power", "icc": 0.3,
        "activity_sigma": 1.0, "control": 0.50, "challenger": 0.55, "sims": sims,
        "max_step_ticks": EQUAL_POWER_STEP_TICKS, "promoted": _share(plain, "promote"),
        "promoted_adjusted": _share(adjusted, "promote"),
    }  # fmt: skip
    for power in POWERS:
        for key, name in (("units", "units"), ("last_step_units", "units_in_deciding_step"),
                          ("queries", "queries")):  # fmt: skip
            values = [_at_power(runs, key, power) for runs in (plain, adjusted)]
            line[f"{name}_at_power_{power}"] = values[0]
            line[f"{name}_at_power_{power}_adjusted"] = values[1]
            line[f"{name}_at_power_{power}_saved"] = _saved(*values)
    line["seconds"] = round(time.perf_counter() - start, 1)
    lines.append(line)
    return lines


def main() -> None:
    """Run every simulation and print one JSON line (``--clustered``: one per condition)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=1000, help="simulated experiments per case")
    parser.add_argument("--tau", type=float, default=DEFAULT_TAU, help="sequential test's tau")
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--tune", action="store_true", help="also sweep a grid of tau values")
    parser.add_argument(
        "--clustered", action="store_true", help="unit-level analysis on clustered users"
    )
    parser.add_argument("--sims", type=int, default=500, help="--clustered: runs per condition")
    parser.add_argument("--workers", type=int, default=2, help="--clustered: processes")
    parser.add_argument(
        "--pre-queries", type=int, default=5_000, help="--clustered: queries of the pre-period"
    )
    args = parser.parse_args()
    if args.clustered:
        for line in clustered_report(args.sims, args.seed, args.workers, args.pre_queries):
            record("experiment_simulations_clustered", line)
        return
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    report: dict[str, object] = {
        "bench": "experiment_simulations",
        "reps": args.reps,
        "tau": args.tau,
        "ramp": [{"share": share, "min_units": units} for share, units in RAMP],
        "horizon_units": 10_000,
        "tick_units": 100,
        "alpha": 0.05,
        "aa_60_vs_60": run_scenario(rng, args.reps, 0.60, 0.60, args.tau),
        "better_65_vs_60": run_scenario(rng, args.reps, 0.60, 0.65, args.tau),
        "worse_55_vs_60": run_scenario(rng, args.reps, 0.60, 0.55, args.tau),
        # Low success rate: small arms early in the ramp often have no successes at all.
        "aa_5_vs_5": run_scenario(rng, args.reps, 0.05, 0.05, args.tau),
        "srm_exact_10400_9600_configured_50_50_p": float(
            f"{srm_pvalue([10_400, 9_600], [0.5, 0.5]):.3g}"
        ),
        "srm_52_48_configured_50_50": srm_detection(rng, args.reps, 0.52),
        "srm_50_50_false_alarm": srm_detection(rng, args.reps, 0.50),
    }
    if args.tune:
        grid = {}
        for tau in (0.03, 0.05, 0.07, 0.1, 0.15, 0.2):
            grid[str(tau)] = {
                name: run_scenario(rng, args.reps, 0.60, p, tau)["sequential"]
                for name, p in (("aa", 0.60), ("better", 0.65), ("worse", 0.55))
            }
        report["tau_grid_sequential"] = grid
    report["seconds"] = round(time.perf_counter() - start, 2)
    record("experiment_simulations", report)


if __name__ == "__main__":
    main()
