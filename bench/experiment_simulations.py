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
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.experiments.stats import (  # noqa: E402
    DEFAULT_TAU,
    SampleStats,
    TestResult,
    sequential_ttest,
    srm_pvalue,
    ttest,
)

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


def main() -> None:
    """Run every simulation and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=1000, help="simulated experiments per case")
    parser.add_argument("--tau", type=float, default=DEFAULT_TAU, help="sequential test's tau")
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--tune", action="store_true", help="also sweep a grid of tau values")
    args = parser.parse_args()
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
    print(json.dumps(report))


if __name__ == "__main__":
    main()
