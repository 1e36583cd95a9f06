"""The experiment loop: from a challenger to a promotion or a rollback, one tick at a time.

Every tick (APScheduler) it starts an experiment for each task whose registry names a
challenger and has none running, then, for each running experiment, aggregates every ramp
step's per-arm metrics in DuckDB, asks `models.experiments.policy.decide` for the action,
appends the decision with its numbers to ``experiment_decisions``, and applies it: the next
step's share in the routing bucket, or the registry's promotion or rollback with the routing
back to one version.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from nats.js.kv import KeyValue

from core import metrics
from core.config import Settings
from handlers.routing import Routing, put_routing
from models.experiments.policy import Decision, Policy, StepData, decide
from models.experiments.stats import SampleStats
from storage.events import EventStore
from storage.experiments import Experiment, ExperimentStore, arm_metrics
from storage.registry import Registry

log = logging.getLogger(__name__)


def policy_from(settings: Settings) -> Policy:
    e = settings.experiments
    return Policy(
        weights=tuple(e.steps), min_units=e.min_units, min_duration_s=e.min_step_s,
        max_duration_s=e.max_step_s, alpha=e.alpha, srm_alpha=e.srm_alpha, tau=e.tau,
        guardrails=tuple(e.guardrails),
    )  # fmt: skip


class ExperimentLoop:
    """Runs inside the daemon; `tick` is its scheduler job."""

    def __init__(self, settings: Settings, store: EventStore, routing: KeyValue) -> None:
        self.settings = settings
        self.store = store
        self.routing = routing
        self.policy = policy_from(settings)
        self._lock = asyncio.Lock()

    async def tick(self) -> dict[str, Decision]:
        """One pass over every task; returns the decision taken per experiment."""
        async with self._lock:
            for experiment in await asyncio.to_thread(self._start_new):
                first = self.policy.weights[0]
                log.info(
                    "experiment %s started: %s vs %s at %.0f%%",
                    experiment.experiment_id, experiment.challenger, experiment.champion,
                    first * 100,
                )  # fmt: skip
                await self._route(experiment, self.policy.weights[0])
            decisions = {}
            for experiment, decision in await asyncio.to_thread(self._decide_all):
                decisions[experiment.experiment_id] = decision
                await self._apply(experiment, decision)
            return decisions

    def _start_new(self) -> list[Experiment]:
        started = []
        with self.store.cursor() as con:
            registry, experiments = Registry(con), ExperimentStore(con)
            tasks = [row[0] for row in con.execute(
                "SELECT DISTINCT task FROM current_aliases WHERE alias = 'challenger' "
                "AND version_id IS NOT NULL").fetchall()]  # fmt: skip
            for task in tasks:
                if experiments.active_for(task) is not None:
                    continue
                champion = registry.alias(task, "champion")
                challenger = registry.alias(task, "challenger")
                if champion and challenger:
                    started.append(
                        experiments.create(task, champion, challenger, self.policy.weights[0])
                    )
        return started

    def _step_data(self, con: Any, experiment: Experiment) -> list[StepData]:
        data = []
        for step in ExperimentStore(con).steps(experiment.experiment_id):
            arms = arm_metrics(
                con, task=experiment.task, champion=experiment.champion,
                challenger=experiment.challenger, start=step.started_at, end=step.ended_at,
                attribution_s=self.settings.experiments.attribution_s,
            )  # fmt: skip
            end = step.ended_at or _now()
            data.append(StepData(
                weight=step.weight, elapsed_s=(end - step.started_at).total_seconds(),
                champion={k: SampleStats(*v) for k, v in arms["champion"].items()},
                challenger={k: SampleStats(*v) for k, v in arms["challenger"].items()},
            ))  # fmt: skip
        return data

    def _decide_all(self) -> list[tuple[Experiment, Decision]]:
        out = []
        with self.store.cursor() as con:
            experiments = ExperimentStore(con)
            for experiment in experiments.running():
                steps = self._step_data(con, experiment)
                decision = decide(steps, self.policy)
                current = steps[-1]
                test = decision.test
                experiments.log(experiment.experiment_id, {
                    "step": len(steps), "weight": current.weight,
                    "n_champion": current.champion["success"].n,
                    "n_challenger": current.challenger["success"].n,
                    "champion_value": test.control_mean if test else None,
                    "challenger_value": test.treatment_mean if test else None,
                    "metric": decision.metric,
                    "effect": test.effect if test else None,
                    "ci_lower": test.ci_lower if test else None,
                    "ci_upper": test.ci_upper if test else None,
                    "p_value": test.p_value if test else None,
                    "alpha": self.policy.alpha, "srm_p_value": decision.srm_p_value,
                    "gate": decision.gate, "action": decision.action, "reason": decision.reason,
                })  # fmt: skip
                out.append((experiment, decision))
                _export(experiment.task, len(steps), current)
        return out

    async def _route(self, experiment: Experiment, weight: float) -> None:
        await put_routing(self.routing, Routing(
            task=experiment.task, champion=experiment.champion,
            challenger=experiment.challenger, challenger_weight=weight,
            experiment_id=experiment.experiment_id, salt=experiment.salt,
        ))  # fmt: skip

    async def _apply(self, experiment: Experiment, decision: Decision) -> None:
        action = decision.action
        if action == "hold":
            return
        if action == "advance":
            step = len(await asyncio.to_thread(self._steps, experiment))
            weight = self.policy.weights[step]
            await asyncio.to_thread(self._next_step, experiment, weight)
            await self._route(experiment, weight)
            log.info("experiment %s: step %d at %.0f%%: %s", experiment.experiment_id,
                     step + 1, weight * 100, decision.reason)  # fmt: skip
            return
        winner = experiment.challenger if action == "promote" else experiment.champion
        await asyncio.to_thread(self._finish, experiment, decision)
        metrics.EXPERIMENT_STEP.labels(experiment.task).set(0)
        metrics.EXPERIMENT_CHALLENGER_SHARE.labels(experiment.task).set(0)
        await put_routing(self.routing, Routing(task=experiment.task, champion=winner))
        log.warning("experiment %s %s: %s", experiment.experiment_id, action, decision.reason)

    def _steps(self, experiment: Experiment) -> list[Any]:
        with self.store.cursor() as con:
            return ExperimentStore(con).steps(experiment.experiment_id)

    def _next_step(self, experiment: Experiment, weight: float) -> None:
        with self.store.cursor() as con:
            ExperimentStore(con).next_step(experiment.experiment_id, weight)

    def _finish(self, experiment: Experiment, decision: Decision) -> None:
        reason = f"experiment {experiment.experiment_id}: {decision.reason}"
        status = {"promote": "promoted", "rollback": "rolled_back"}.get(
            decision.action, "inconclusive"
        )
        with self.store.cursor() as con:
            registry = Registry(con)
            if decision.action == "promote":
                registry.promote(experiment.challenger, reason)
            else:
                registry.reject(experiment.challenger, reason)
            ExperimentStore(con).finish(experiment.experiment_id, status, decision.reason)


def _export(task: str, step: int, current: StepData) -> None:
    """The running experiment's step, share and per-arm success as Prometheus gauges."""
    metrics.EXPERIMENT_STEP.labels(task).set(step)
    metrics.EXPERIMENT_CHALLENGER_SHARE.labels(task).set(current.weight)
    for arm, values in (("champion", current.champion), ("challenger", current.challenger)):
        success = values["success"]
        metrics.EXPERIMENT_UNITS.labels(task, arm).set(success.n)
        if success.n:
            metrics.EXPERIMENT_SUCCESS_RATE.labels(task, arm).set(success.sum / success.n)


def _now() -> datetime:
    return datetime.now(UTC)
