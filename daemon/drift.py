"""Drift reports inside the daemon: on the scheduler's interval and on demand, and acting on
what they find.

For each task: read the windows (a database cursor in a thread, under the orchestrator's
guard, like every write of the daemon's), compute the report on the daemon's background
thread (`daemon.background`: embedding the query texts takes seconds to minutes and must
neither block the event loop nor take the CPU from ingestion), store it, update the
Prometheus gauges, and, when a deciding input check drifted or the champion's success rate
alarmed, fire the task's drift trigger (`Orchestrator.request(..., drift=True)`, which
honours ``triggers.<task>.on_drift``), logged loudly. A trigger that fired less than the
task's ``cooldown_s`` ago is not fired again: drift that persists does not retrain every day.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import duckdb
from kaizend.core import metrics
from kaizend.core.config import Settings
from kaizend.core.errors import KaizendError
from kaizend.daemon.background import BackgroundThread
from kaizend.daemon.orchestrator import Orchestrator, OrchestratorStopped
from kaizend.models.drift.report import (
    CachedEmbedder,
    ReportCancelled,
    ReportInputs,
    TaskReport,
    compute,
    gather,
)
from kaizend.models.task import TextEncoder
from kaizend.storage.drift import DriftStore
from kaizend.storage.jobs import JobStore

log = logging.getLogger(__name__)


class DriftMonitor:
    """Computes, stores and acts on drift reports; `run` is the scheduler's job."""

    def __init__(
        self, settings: Settings, orchestrator: Orchestrator, background: BackgroundThread
    ) -> None:
        self.settings = settings
        self.orchestrator = orchestrator
        self.background = background
        """Where reports are computed, below the event path's priority."""
        self._lock = asyncio.Lock()
        self._embedder: CachedEmbedder | None = None
        self._stopping = threading.Event()

    def stop(self) -> None:
        """Abandon a report being computed (between embedding chunks) and start no other."""
        self._stopping.set()

    def _embed(self, encoder: TextEncoder | None) -> CachedEmbedder | None:
        if encoder is None:
            return None
        if self._embedder is None or self._embedder.key != encoder.key:
            self._embedder = CachedEmbedder(encoder, stop=self._stopping)
        return self._embedder

    async def run(
        self, tasks: Sequence[str] | None = None, trigger: str = "schedule"
    ) -> list[TaskReport]:
        """One report per task (every task when None), one run at a time."""
        names = list(tasks or self.orchestrator.tasks)
        unknown = [name for name in names if name not in self.orchestrator.tasks]
        if unknown:
            raise KaizendError(
                f"unknown task {unknown[0]!r}; one of {', '.join(self.orchestrator.tasks)}"
            )
        reports = []
        async with self._lock:
            for name in names:
                if self._stopping.is_set():
                    break
                try:
                    reports.append(await self._report(name, trigger))
                except (ReportCancelled, OrchestratorStopped) as err:
                    log.info("drift report of %s abandoned: %s", name, err)
                    break
                except Exception:  # noqa: BLE001 - one task's trouble must not stop the others
                    log.exception("drift report of %s failed", name)
        return reports

    async def _report(self, task: str, trigger: str) -> TaskReport:
        started = time.perf_counter()
        now = datetime.now(UTC)
        log.info("drift report of %s started (%s)", task, trigger)
        inputs: ReportInputs = await self.orchestrator.db(
            functools.partial(gather, settings=self.settings, task=task, now=now)
        )
        embed = self._embed(inputs.encoder)
        report = await self.background.run(
            compute, inputs, self.settings, embed, torch=embed is not None
        )
        report = dataclasses.replace(report, action=await self._act(report))
        await self.orchestrator.db(
            lambda con: DriftStore(con).add(report.report_row(trigger), report.check_rows())
        )
        _export(report)
        level = logging.WARNING if report.input_drift or report.performance_alarm else logging.INFO
        log.log(
            level,
            "drift report %s of %s in %.1f s: %d checks, input drift %s, performance alarm %s%s",
            report.report_id, task, time.perf_counter() - started, len(report.checks),
            report.input_drift, report.performance_alarm,
            f"; {report.action}" if report.action else "",
        )  # fmt: skip
        return report

    async def _act(self, report: TaskReport) -> str | None:
        """Fire the task's drift trigger when the report calls for it; say what was done."""
        if not (report.input_drift or report.performance_alarm):
            return None
        task = report.task
        reasons = "; ".join(report.reasons())
        if report.performance_alarm:
            log.error("PERFORMANCE ALARM on the %s champion: %s", task, reasons)
        if report.input_drift:
            log.warning("INPUT DRIFT in %s traffic: %s", task, reasons)
        triggers = self.settings.tasks[task].triggers
        if not triggers.on_drift:
            return f"tasks.{task}.triggers.on_drift is false: no training"
        last = await self.orchestrator.db(lambda con: JobStore(con).latest(task))
        cooldown = timedelta(seconds=triggers.cooldown_s)
        if last is not None and datetime.now(UTC) - last.requested_at < cooldown:
            return (
                f"no training: {last.job_id} was requested at {last.requested_at:%Y-%m-%d %H:%M}, "
                f"within tasks.{task}.triggers.cooldown_s"
            )
        kind = "performance alarm" if report.performance_alarm else "drift"
        job = await self.orchestrator.request(task, f"{kind}: {reasons}", drift=True)
        log.warning("training %s of %s is %s after the drift report", job.job_id, task, job.state)
        return f"training {job.job_id} {job.state}"


def _export(report: TaskReport) -> None:
    """The report's numbers as Prometheus gauges."""
    task = report.task
    metrics.DRIFT_REPORTS.labels(task).inc()
    metrics.DRIFT_DETECTED.labels(task).set(float(report.input_drift))
    for check in report.checks:
        if check.kind == "input" and check.decisive and check.score is not None:
            labels = (task, check.field, check.method)
            metrics.DRIFT_SCORE.labels(*labels).set(check.score)
            metrics.DRIFT_THRESHOLD.labels(*labels).set(check.threshold)
        if check.kind == "performance" and check.score is not None and check.version_id:
            labels = (task, check.version_id)
            metrics.PERFORMANCE_CUSUM.labels(*labels).set(check.score)
            metrics.PERFORMANCE_ALARM.labels(*labels).set(float(check.drifted))
            metrics.CHAMPION_BASELINE_SUCCESS_RATE.labels(*labels).set(
                check.detail["baseline_rate"]
            )
            if check.detail.get("window_success_rate") is not None:
                metrics.CHAMPION_SUCCESS_RATE.labels(*labels).set(
                    check.detail["window_success_rate"]
                )


def report_offline(
    con: duckdb.DuckDBPyConnection, settings: Settings, tasks: Sequence[str]
) -> list[TaskReport]:
    """Reports computed in this process from a read-only database (the daemon is down).

    Nothing is stored and no training is started: the daemon does that when it runs.
    """
    from kaizend.models.drift.report import text_encoder

    now = datetime.now(UTC)
    encoder = text_encoder(con, settings)
    embed = CachedEmbedder(encoder) if encoder is not None else None
    return [compute(gather(con, settings, task, now), settings, embed) for task in tasks]
