"""The experiment loop: from a challenger to a promotion or a rollback, one tick at a time.

Every tick (APScheduler) it starts an experiment for each task whose registry names a
challenger and has none running (a task left without one takes the newest candidate that
passed the offline gate against its champion while another was the challenger), then, for
each running experiment, sums every ramp step's metrics per unit in DuckDB with each unit's
pre-period history (`models.experiments.units`), asks `models.experiments.policy.decide` for
the action, appends the decision with its numbers to ``experiment_decisions``, and applies
it: the next step's share in the routing bucket, or the registry's promotion or rollback with
the routing back to one version.

Operators act through the same object (``kaizend promote|rollback|challenge|experiments
pause|resume``):
a paused experiment sends all traffic to the champion and takes no decisions; resuming opens
a new step at the paused step's share (its data is a stratum of its own). The registry is the
source of truth for routing: `sync_routing` writes every task's entry from it at start-up,
and every tick rewrites an entry that differs from it (deleted, or changed by another writer).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
from kaizend.core import metrics
from kaizend.core.config import Settings
from kaizend.core.errors import KaizendError
from kaizend.daemon.ollama import publish_in_background
from kaizend.handlers.routing import Routing, put_routing
from kaizend.models.experiments.policy import Decision, Policy, StepData, decide
from kaizend.models.experiments.units import step_data
from kaizend.storage.events import EventStore
from kaizend.storage.experiments import Experiment, ExperimentStore, unit_metrics
from kaizend.storage.registry import Registry, Status, VersionRecord
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from pydantic import ValidationError

log = logging.getLogger(__name__)


class ExperimentRefused(KaizendError, ValueError):
    """An operator's request that does not fit the current state (says what does)."""


def policy_from(settings: Settings) -> Policy:
    e = settings.experiments
    return Policy(
        weights=tuple(e.steps), min_units=e.min_units, min_duration_s=e.min_step_s,
        max_duration_s=e.max_step_s, alpha=e.alpha, srm_alpha=e.srm_alpha, tau=e.tau,
        guardrails=tuple(e.guardrails), guardrail_tolerance=dict(e.guardrail_tolerance),
    )  # fmt: skip


class ExperimentLoop:
    """Runs inside the daemon; `tick` is its scheduler job."""

    def __init__(self, settings: Settings, store: EventStore, routing: KeyValue) -> None:
        self.settings = settings
        self.store = store
        self.routing = routing
        self._lock = asyncio.Lock()
        self._tasks: tuple[str, ...] = ()

    # -- routing ----------------------------------------------------------------------------

    def _entry(
        self, con: duckdb.DuckDBPyConnection, task: str, experiment: Experiment | None
    ) -> Routing:
        """The routing entry the registry and ``experiment`` (running, paused or None) call
        for now."""
        registry = Registry(con)
        if experiment is None or experiment.status not in ("running", "paused"):
            champion = registry.alias(task, "champion") or f"{task}-v0"
            return Routing(
                task=task, champion=champion, champion_artifact=registry.get(champion).artifact_path
            )
        weight = 0.0
        if experiment.status == "running":
            weight = ExperimentStore(con).steps(experiment.experiment_id)[-1].weight
        return Routing(
            task=task, champion=experiment.champion, challenger=experiment.challenger,
            challenger_weight=weight, experiment_id=experiment.experiment_id,
            salt=experiment.salt,
            champion_artifact=registry.get(experiment.champion).artifact_path,
            challenger_artifact=registry.get(experiment.challenger).artifact_path,
            shadow=self._settings(task).experiments.shadow and experiment.status == "running",
        )  # fmt: skip

    async def _route(self, task: str, experiment: Experiment | None) -> Routing:
        def entry() -> Routing:
            with self.store.cursor() as con:
                current = (
                    None
                    if experiment is None
                    else ExperimentStore(con).get(experiment.experiment_id)
                )
                return self._entry(con, task, current)

        routing = await asyncio.to_thread(entry)
        await put_routing(self.routing, routing)
        return routing

    async def sync_routing(self, tasks: Iterable[str]) -> None:
        """Make every task's entry what the registry and its active experiment call for
        (start-up); every tick then reconciles the same ``tasks`` (`_reconcile`)."""
        self._tasks = tuple(tasks)
        await self._reconcile(startup=True)

    async def _reconcile(self, *, startup: bool = False) -> None:
        """Rewrite each task's routing entry that differs from the registry's (deleted,
        unreadable, or changed by another writer); an entry that agrees is left alone."""
        for task in self._tasks:

            def wanted(task: str = task) -> Routing:
                with self.store.cursor() as con:
                    return self._entry(con, task, ExperimentStore(con).active_for(task))

            routing = await asyncio.to_thread(wanted)
            try:
                entry = await self.routing.get(task)
                stored: Routing | str = Routing.model_validate_json(entry.value or b"")
            except KeyNotFoundError:  # never written, or deleted
                stored = "no entry"
            except ValidationError as err:
                stored = f"an unreadable entry ({err.error_count()} errors)"
            if stored == routing:
                continue
            await put_routing(self.routing, routing)
            if not startup:
                log.warning("routing of %s restored from the registry: the bucket held %s",
                            task, stored)  # fmt: skip

    def _settings(self, task: str) -> Settings:
        """The settings of ``task``'s experiments: its ``[tasks.<name>.experiments]``
        overrides applied (an experiment of a task no longer declared keeps the defaults)."""
        return self.settings.for_task(task) if task in self.settings.tasks else self.settings

    def policy(self, task: str) -> Policy:
        return policy_from(self._settings(task))

    # -- the tick ---------------------------------------------------------------------------

    async def tick(self) -> dict[str, Decision]:
        """One pass over every task; returns the decision taken per experiment."""
        async with self._lock:
            for experiment in await asyncio.to_thread(self._start_new):
                log.info(
                    "experiment %s started: %s vs %s at %.0f%%",
                    experiment.experiment_id, experiment.challenger, experiment.champion,
                    self.policy(experiment.task).weights[0] * 100,
                )  # fmt: skip
                await self._route(experiment.task, experiment)
            decisions = {}
            for experiment, decision in await asyncio.to_thread(self._decide_all):
                decisions[experiment.experiment_id] = decision
                await self._apply(experiment, decision)
            await self._reconcile()
            return decisions

    def _start_new(self) -> list[Experiment]:
        started = []
        with self.store.cursor() as con:
            registry, experiments = Registry(con), ExperimentStore(con)
            _queue_next(con)
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
                        experiments.create(task, champion, challenger, self.policy(task).weights[0])
                    )
        return started

    def _step_data(self, con: Any, experiment: Experiment) -> list[StepData]:
        e = self._settings(experiment.task).experiments
        pre_start = experiment.created_at - timedelta(days=e.cuped_window_days)
        data = []
        for step in ExperimentStore(con).steps(experiment.experiment_id):
            units = unit_metrics(
                con, task=experiment.task, champion=experiment.champion,
                challenger=experiment.challenger, start=step.started_at, end=step.ended_at,
                attribution_s=e.attribution_s, latency_budget_ms=e.latency_budget_ms,
                pre_start=pre_start if e.cuped else None, pre_end=experiment.created_at,
            )  # fmt: skip
            end = step.ended_at or _now()
            data.append(step_data(
                units, weight=step.weight, elapsed_s=(end - step.started_at).total_seconds(),
                adjust=e.cuped,
            ))  # fmt: skip
        return data

    def _decide_all(self) -> list[tuple[Experiment, Decision]]:
        out = []
        with self.store.cursor() as con:
            experiments = ExperimentStore(con)
            for experiment in experiments.running():
                steps = self._step_data(con, experiment)
                policy = self.policy(experiment.task)
                decision = decide(steps, policy)
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
                    "alpha": policy.alpha, "srm_p_value": decision.srm_p_value,
                    "gate": decision.gate, "action": decision.action, "reason": decision.reason,
                    "queries_champion": current.queries[0],
                    "queries_challenger": current.queries[1],
                    "design_effect": _finite(current.design_effect),
                    "adjusted": current.adjusted, "variance_removed": current.variance_removed,
                })  # fmt: skip
                out.append((experiment, decision))
                _export(experiment.task, len(steps), current)
        return out

    async def _apply(self, experiment: Experiment, decision: Decision) -> None:
        action = decision.action
        if action == "hold":
            return
        if action == "advance":
            steps = await asyncio.to_thread(self._steps, experiment)
            weight = self.policy(experiment.task).next_weight(steps[-1].weight)
            assert weight is not None, "the policy advances only before the last step"
            await asyncio.to_thread(self._next_step, experiment, weight)
            await self._route(experiment.task, experiment)
            log.info("experiment %s: step %d at %.0f%%: %s", experiment.experiment_id,
                     len(steps) + 1, weight * 100, decision.reason)  # fmt: skip
            return
        status = {"promote": "promoted", "rollback": "rolled_back"}.get(action, "inconclusive")
        verdict = {"promote": "champion", "rollback": "rejected"}.get(action, "rejected")
        await self._finish(experiment, status, decision.reason, challenger=verdict)

    async def _finish(
        self, experiment: Experiment, status: str, reason: str, *, challenger: Status
    ) -> None:
        """End ``experiment`` with its challenger ``champion`` (promoted), ``rejected`` or
        ``candidate`` (withdrawn without a verdict): the registry, the routing, Ollama."""
        why = f"experiment {experiment.experiment_id}: {reason}"

        def record() -> None:
            with self.store.cursor() as con:
                registry = Registry(con)
                if challenger == "champion":
                    registry.promote(experiment.challenger, why)
                elif challenger == "candidate":
                    registry.withdraw(experiment.challenger, why)
                else:
                    registry.reject(experiment.challenger, why)
                ExperimentStore(con).finish(experiment.experiment_id, status, reason)

        await asyncio.to_thread(record)
        metrics.EXPERIMENT_STEP.labels(experiment.task).set(0)
        metrics.EXPERIMENT_CHALLENGER_SHARE.labels(experiment.task).set(0)
        await self._route(experiment.task, None)
        log.warning("experiment %s %s: %s", experiment.experiment_id, status, reason)
        if challenger == "champion":
            await self._promoted(experiment.challenger)

    async def _promoted(self, version_id: str) -> None:
        """A new champion: published to Ollama when one is configured (in the background;
        a failure is logged and the promotion stands)."""
        if self.settings.ollama.url:
            publish_in_background(self.settings, self.store, version_id)

    def _steps(self, experiment: Experiment) -> list[Any]:
        with self.store.cursor() as con:
            return ExperimentStore(con).steps(experiment.experiment_id)

    def _next_step(self, experiment: Experiment, weight: float) -> None:
        with self.store.cursor() as con:
            ExperimentStore(con).next_step(experiment.experiment_id, weight)

    # -- operators --------------------------------------------------------------------------

    def _experiment(self, experiment_id: str) -> Experiment:
        with self.store.cursor() as con:
            try:
                return ExperimentStore(con).get(experiment_id)
            except LookupError as err:
                raise ExperimentRefused(str(err)) from err

    async def pause(self, experiment_id: str, reason: str) -> Experiment:
        """Stop the challenger's traffic and the decisions until `resume`."""
        return await self._switch(experiment_id, "running", "pause", reason)

    async def resume(self, experiment_id: str, reason: str) -> Experiment:
        """Carry on at the paused step's share, in a new step."""
        return await self._switch(experiment_id, "paused", "resume", reason)

    async def _switch(
        self, experiment_id: str, expected: str, action: str, reason: str
    ) -> Experiment:
        """Pause or resume (``action``) an experiment that is ``expected``, then route."""
        async with self._lock:
            experiment = await asyncio.to_thread(self._experiment, experiment_id)
            if experiment.status != expected:
                raise ExperimentRefused(
                    f"experiment {experiment_id} is {experiment.status}, not {expected}"
                )

            def record() -> None:
                with self.store.cursor() as con:
                    getattr(ExperimentStore(con), action)(experiment_id, reason)

            await asyncio.to_thread(record)
            await self._route(experiment.task, experiment)
            log.warning("experiment %s: %s (%s)", experiment_id, action, reason)
            return await asyncio.to_thread(self._experiment, experiment_id)

    def _version(self, con: duckdb.DuckDBPyConnection, task: str, version_id: str) -> VersionRecord:
        record = Registry(con).find(version_id)
        if record is None or record.task != task:
            raise ExperimentRefused(f"no {task} version {version_id!r}: see `kaizend models list`")
        if record.status == "champion":
            raise ExperimentRefused(f"{version_id} is already the {task} champion")
        return record

    async def challenge(self, task: str, version_id: str, reason: str) -> VersionRecord:
        """Make ``version_id`` the challenger by hand (the offline gate skipped): the next
        tick starts its experiment. Any registered version but the champion will do, an
        earlier champion or a rejected candidate too."""
        async with self._lock:

            def record() -> VersionRecord:
                with self.store.cursor() as con:
                    found = self._version(con, task, version_id)
                    active = ExperimentStore(con).active_for(task)
                    if active is not None:
                        raise ExperimentRefused(
                            f"experiment {active.experiment_id} of {task} is {active.status}: "
                            "promote, roll back or let it finish first"
                        )
                    Registry(con).make_challenger(
                        version_id, f"challenger by an operator: {reason}"
                    )
                    return found

            found = await asyncio.to_thread(record)
            log.warning("%s made the %s challenger by an operator: %s", version_id, task, reason)
            return found

    async def promote(self, task: str, version_id: str, reason: str) -> VersionRecord:
        """Make ``version_id`` the champion now, whatever an experiment says (it ends)."""
        async with self._lock:

            def check() -> tuple[VersionRecord, Experiment | None]:
                with self.store.cursor() as con:
                    record = self._version(con, task, version_id)
                    return record, ExperimentStore(con).active_for(task)

            record, experiment = await asyncio.to_thread(check)
            why = f"promoted by an operator: {reason}"
            if experiment is not None and experiment.challenger == version_id:
                await self._finish(experiment, "promoted", why, challenger="champion")
                return record
            if experiment is not None:  # another challenger: withdrawn, not judged
                await self._finish(
                    experiment, "stopped", f"{version_id} {why}", challenger="candidate"
                )

            def record_promotion() -> None:
                with self.store.cursor() as con:
                    Registry(con).promote(version_id, why)

            await asyncio.to_thread(record_promotion)
            await self._route(task, None)
            log.warning("%s promoted to %s champion: %s", version_id, task, reason)
            await self._promoted(version_id)
            return record

    async def rollback(self, task: str, reason: str) -> str:
        """Roll back: a running experiment's challenger, else the champion to the one before.

        Returns the version that serves the task afterwards.
        """
        async with self._lock:

            def state() -> tuple[Experiment | None, str | None, str | None]:
                with self.store.cursor() as con:
                    registry = Registry(con)
                    return (
                        ExperimentStore(con).active_for(task),
                        registry.alias(task, "champion"),
                        registry.previous_champion(task),
                    )

            experiment, champion, previous = await asyncio.to_thread(state)
            why = f"rolled back by an operator: {reason}"
            if experiment is not None:
                await self._finish(experiment, "rolled_back", why, challenger="rejected")
                return experiment.champion
            if champion is None or previous is None:
                raise ExperimentRefused(
                    f"{task} has no experiment and no earlier champion to roll back to"
                )

            def record() -> None:
                with self.store.cursor() as con:
                    Registry(con).promote(previous, why, replaced="rejected", replaced_reason=why)

            await asyncio.to_thread(record)
            await self._route(task, None)
            log.warning("%s rolled back from %s to %s: %s", task, champion, previous, reason)
            await self._promoted(previous)
            return previous


_QUEUED = """
SELECT g.task, g.version_id FROM gate_decisions g
JOIN model_versions v USING (version_id)
JOIN current_aliases c ON c.task = g.task AND c.alias = 'champion' AND c.version_id = g.champion
WHERE g.passed AND v.status = 'candidate'
  AND g.task NOT IN (SELECT task FROM current_aliases
                     WHERE alias = 'challenger' AND version_id IS NOT NULL)
  AND g.task NOT IN (SELECT task FROM experiments WHERE status IN ('running', 'paused'))
QUALIFY row_number() OVER (PARTITION BY g.task ORDER BY g.decided_at DESC) = 1
"""


def _queue_next(con: duckdb.DuckDBPyConnection) -> None:
    """A task whose experiment ended takes its next candidate: the newest that passed the
    offline gate against the current champion while another was the challenger."""
    registry = Registry(con)
    for task, version_id in con.execute(_QUEUED).fetchall():
        registry.make_challenger(version_id, "offline gate passed while another was the "
                                 "challenger; the task is free")  # fmt: skip
        log.info("%s: queued candidate %s is the challenger", task, version_id)


def _export(task: str, step: int, current: StepData) -> None:
    """The running experiment's step, share and per-arm success as Prometheus gauges."""
    metrics.EXPERIMENT_STEP.labels(task).set(step)
    metrics.EXPERIMENT_CHALLENGER_SHARE.labels(task).set(current.weight)
    for arm, values in (("champion", current.champion), ("challenger", current.challenger)):
        success = values["success"]
        metrics.EXPERIMENT_UNITS.labels(task, arm).set(success.n)
        if success.n:
            metrics.EXPERIMENT_SUCCESS_RATE.labels(task, arm).set(success.sum / success.n)


def _finite(value: float) -> float | None:
    """NULL in the decision log for an undefined number."""
    return value if math.isfinite(value) else None


def _now() -> datetime:
    return datetime.now(UTC)
