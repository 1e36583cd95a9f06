"""From the per-unit table of one ramp step to what the policy decides on.

`storage.experiments.unit_metrics` sums every metric per unit (the unit of randomisation);
this turns one step's two arms into a `StepData`: per metric, a `SampleStats` per arm from
`stats.ratio_stats` (the ratio over units with its delta-method variance, adjusted with each
unit's pre-period numerator, denominator and a has-history indicator when ``adjust``), and
for the primary metric the units and queries per arm, the design effect and the variance the
adjustment removed. The daemon and ``bench/experiment_simulations.py`` both go through here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from kaizend.models.experiments.policy import PRIMARY, StepData
from kaizend.models.experiments.stats import RatioSummary, UnitValues, ratio_stats
from kaizend.storage.experiments import BINARY_METRICS, METRICS, UnitTable


def summarise(units: UnitTable, metric: str, *, adjust: bool) -> UnitValues:
    """One arm's ``metric`` per unit, with its pre-period covariates when ``adjust``."""
    numerator, denominator = METRICS[metric]
    covariates = None
    if adjust:
        pre_numerator = units[f"pre_{numerator}"]
        pre_denominator = units[f"pre_{denominator}"]
        has_history = (pre_denominator > 0).astype(float)
        covariates = np.column_stack([pre_numerator, pre_denominator, has_history])
    return UnitValues(units[numerator], units[denominator], covariates)


def compare(
    champion: UnitTable, challenger: UnitTable, metric: str, *, adjust: bool
) -> RatioSummary:
    """Both arms of ``metric`` summarised for the tests."""
    return ratio_stats(
        summarise(champion, metric, adjust=adjust),
        summarise(challenger, metric, adjust=adjust),
        adjust=adjust,
        binary=metric in BINARY_METRICS,
    )


def step_data(
    units: Mapping[str, UnitTable],
    *,
    weight: float,
    elapsed_s: float,
    adjust: bool,
    metrics: Iterable[str] = tuple(METRICS),
) -> StepData:
    """The `StepData` of one step from its per-unit tables (``{"champion": ..., "challenger":
    ...}``); ``metrics`` limits the work to those the policy looks at (``PRIMARY`` always)."""
    champion, challenger = units["champion"], units["challenger"]
    summaries = {
        metric: compare(champion, challenger, metric, adjust=adjust)
        for metric in dict.fromkeys((PRIMARY, *metrics))
    }
    primary = summaries[PRIMARY]
    return StepData(
        weight=weight,
        elapsed_s=elapsed_s,
        champion={metric: s.control for metric, s in summaries.items()},
        challenger={metric: s.treatment for metric, s in summaries.items()},
        queries=primary.denominators,
        design_effect=primary.design_effect,
        adjusted=primary.adjusted,
        variance_removed=primary.variance_removed,
    )
