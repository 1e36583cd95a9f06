"""From accumulated events to a registered candidate, unattended.

The orchestrator checks every task's triggers (soon after events with signal are committed,
and on the scheduler's interval), queues a training job when one fires, follows the jobs'
progress, registers each trained candidate with its lineage, and runs the offline gate on the
numbers the training subprocess measured. A failed job is retried with backoff on the same
snapshot (resuming its checkpoint). Only one job per task is queued or running at a time;
the workers run one training at a time each. A job is recorded before it is published: one
whose publish failed is published again at every check (its job id is the message id, so
JetStream keeps one copy), or fails after ``training.publish_timeout_s``; it never blocks its
task.

The daemon is the only writer of DuckDB: workers report over NATS and this module records.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import nats.errors
from kaizend.core import metrics
from kaizend.core.config import Settings
from kaizend.core.errors import ForgedResult, KaizendError, PathOutsideRoot
from kaizend.core.paths import confined
from kaizend.handlers.jobs import (
    RESULTS_CONSUMER,
    ChampionRef,
    JobResult,
    JobSpec,
    JobStatus,
    ensure_jobs_stream,
    result_subject,
    train_subject,
)
from kaizend.models.gate import decide
from kaizend.models.task import Task
from kaizend.models.training import TRAINING_SET_FILE
from kaizend.models.triggers import TriggerState, training_reason
from kaizend.storage.events import EventStore
from kaizend.storage.jobs import STATES, Job, JobStore
from kaizend.storage.registry import GateRecord, Registry, VersionRecord
from kaizend.storage.snapshots import export_snapshot
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig
from pydantic import ValidationError

log = logging.getLogger(__name__)

PROGRESS_LOG_INTERVAL_S = 30.0
SIGNAL_KINDS = ("feedback", "correction")


T = TypeVar("T")


class OrchestratorStopped(KaizendError, RuntimeError):
    """Work arrived after the orchestrator stopped (during the daemon's shutdown)."""


class TrainingRefused(KaizendError, ValueError):
    """A training request that cannot be honoured (unknown task, drift trigger disabled)."""


class Orchestrator:
    """Triggers, job queue and results, inside the daemon."""

    def __init__(self, settings: Settings, store: EventStore, tasks: Mapping[str, Task]) -> None:
        self.settings = settings
        self.training = settings.training
        self.store = store
        self.tasks = dict(tasks)
        self.nc: NATS | None = None
        self._lock = asyncio.Lock()
        self._check_soon = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._status_sub: Any = None
        self._db_lock = threading.Lock()
        self._closed = False
        self._results_sub: Any = None
        self._logged_at: dict[str, float] = {}
        self._publish_errors: dict[str, str] = {}

    # -- life cycle -------------------------------------------------------------------------

    async def _db(self, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """Run ``work`` on a cursor of its own in a thread; `stop` waits for it to finish, so
        no write is in flight when the daemon checkpoints and closes the database."""

        def locked() -> T:
            with self._db_lock:
                if self._closed:
                    raise OrchestratorStopped("the orchestrator has stopped")
                with self.store.cursor() as con:
                    return work(con)

        return await asyncio.to_thread(locked)

    async def db(self, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """`_db` for the daemon's other components (drift reports): their reads and writes
        are guarded the same way, so none is in flight when the database closes."""
        return await self._db(work)

    def _close(self) -> None:
        with self._db_lock:
            self._closed = True

    async def start(self, nc: NATS) -> None:
        self.nc = nc
        js = nc.jetstream()
        await ensure_jobs_stream(js, self.training, owner=True)
        self._status_sub = await nc.subscribe(self.training.status_subject, cb=self._on_status)
        results = await js.pull_subscribe(
            result_subject(self.training),
            durable=RESULTS_CONSUMER,
            stream=self.training.stream,
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, max_deliver=-1),
        )
        self._results_sub = results
        self._loops = [
            asyncio.create_task(self._result_loop(results), name="training-results"),
            asyncio.create_task(self._check_loop(), name="training-triggers"),
        ]
        self._check_soon.set()  # signal may have accumulated while the daemon was down

    async def stop(self) -> None:
        for loop in self._loops:
            loop.cancel()
        for loop in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        for sub in (self._status_sub, self._results_sub):
            if sub is not None:
                with contextlib.suppress(nats.errors.Error):
                    await sub.unsubscribe()
        await asyncio.to_thread(self._close)

    def notify_committed(self, kinds: Counter[str]) -> None:
        """The ingestor's hook: signal arrived, so check the triggers soon (cheap)."""
        if any(kinds.get(kind) for kind in SIGNAL_KINDS):
            self._check_soon.set()

    async def _check_loop(self) -> None:
        while True:
            await self._check_soon.wait()
            self._check_soon.clear()
            await self.check()
            await asyncio.sleep(1.0)  # at most one check a second while events stream in

    # -- triggers ---------------------------------------------------------------------------

    async def check(self) -> None:
        """Queue the retries that are due and the trainings whose trigger fires."""
        async with self._lock:
            for name, task in self.tasks.items():
                try:
                    await self._check_task(name, task)
                except Exception:  # noqa: BLE001 - one task's trouble must not stop the others
                    log.exception("trigger check of %s failed", name)
            try:
                await self._db(self._export_job_counts)
            except OrchestratorStopped:
                pass
            except Exception:  # noqa: BLE001 - metrics are best effort
                log.exception("could not count the training jobs for /metrics")

    def _export_job_counts(self, con: duckdb.DuckDBPyConnection) -> None:
        """The jobs-by-state gauge, zero for the states a task has no job in."""
        counts = dict(
            ((task, state), n)
            for task, state, n in con.execute(
                "SELECT task, state, count(*) FROM training_jobs GROUP BY ALL"
            ).fetchall()
        )
        for name in self.tasks:
            for state in STATES:
                metrics.TRAINING_JOBS.labels(name, state).set(counts.get((name, state), 0))

    async def _check_task(self, name: str, task: Task) -> None:
        def facts(con: duckdb.DuckDBPyConnection) -> tuple[Job | None, str | None]:
            jobs = JobStore(con)
            if jobs.active(name) is not None:
                return None, None
            retry = jobs.retry_due(
                name,
                max_attempts=self.training.max_attempts,
                backoff_s=self.training.retry_backoff_s,
            )
            if retry is not None or not self.training.auto:
                return retry, None
            latest = jobs.latest(name)
            succeeded = jobs.last_succeeded(name)
            now = datetime.now(UTC)
            since = latest.cutoff if latest else None
            last_trained = (
                succeeded.finished_at if succeeded else Registry(con).get(f"{name}-v0").created_at
            )
            state = TriggerState(
                new_signal=task.count_new_signal(con, since, now),
                last_requested=latest.requested_at if latest else None,
                last_trained=last_trained,
            )
            reason = training_reason(self.settings.tasks[name].triggers, state, now)
            return None, reason

        unpublished = await self._db(lambda con: JobStore(con).unpublished(name))
        if unpublished is not None:
            await self._publish_again(unpublished)
            return
        retry, reason = await self._db(facts)
        if retry is not None:
            await self._queue_retry(retry)
        elif reason is not None:
            await self.submit(name, reason)

    async def request(self, name: str, reason: str, *, drift: bool = False) -> Job:
        """Train ``name`` now (``kaizend train``, or a drift report when ``drift``).

        Skips threshold and cooldown; a job of the task already queued or running, or a failed
        one whose run waits for its retry, is returned instead of a second run.
        """
        if name not in self.tasks:
            raise TrainingRefused(f"unknown task {name!r}; one of {', '.join(self.tasks)}")
        if drift and not self.settings.tasks[name].triggers.on_drift:
            raise TrainingRefused(
                f"tasks.{name}.triggers.on_drift is false: drift does not retrain"
            )

        def in_flight(con: duckdb.DuckDBPyConnection) -> Job | None:
            jobs = JobStore(con)
            return jobs.active(name) or jobs.awaiting_retry(
                name, max_attempts=self.training.max_attempts
            )

        async with self._lock:
            active = await self._db(in_flight)
            if active is not None:
                return active
            return await self.submit(name, reason)

    async def submit(self, name: str, reason: str) -> Job:
        """Snapshot the task's events, record a queued job, and put it on the work queue."""
        cutoff = datetime.now(UTC)
        run_id = f"{name}-{cutoff:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:4]}"
        run_dir = self.settings.path(Path("runs") / run_id).resolve()

        def record(con: duckdb.DuckDBPyConnection) -> Job:
            started = time.perf_counter()
            snapshot = export_snapshot(con, name, cutoff, run_dir / "snapshot")
            champion = Registry(con).alias(name, "champion") or f"{name}-v0"
            job = JobStore(con).create(
                run_id=run_id, task=name, attempt=1, reason=reason, cutoff=cutoff,
                snapshot=snapshot, champion=champion, run_dir=str(run_dir),
            )  # fmt: skip
            log.info(
                "training %s queued (%s): snapshot %s in %.0f ms, champion %s",
                job.job_id, reason, snapshot, (time.perf_counter() - started) * 1e3, champion,
            )  # fmt: skip
            return job

        job = await self._db(record)
        await self._publish(job)
        return job

    async def _queue_retry(self, failed: Job) -> None:
        def record(con: duckdb.DuckDBPyConnection) -> Job:
            return JobStore(con).create(
                run_id=failed.run_id, task=failed.task, attempt=failed.attempt + 1,
                reason=f"retry {failed.attempt + 1}/{self.training.max_attempts} after: "
                f"{failed.error}",
                cutoff=failed.cutoff, snapshot=failed.snapshot,
                champion=failed.champion or f"{failed.task}-v0", run_dir=failed.run_dir,
            )  # fmt: skip

        job = await self._db(record)
        log.warning("training %s queued: %s", job.job_id, job.reason)
        await self._publish(job)

    async def _publish(self, job: Job) -> bool:
        """Put the queued ``job`` on the work queue; record that JetStream has it.

        A failure is logged and left to the trigger checks, which publish the job again
        (`_publish_again`): the row is written first, so the job is never lost, and its id is
        the message id, so JetStream drops a second copy.
        """
        assert self.nc is not None

        def champion_ref(con: duckdb.DuckDBPyConnection) -> ChampionRef:
            champion = job.champion or f"{job.task}-v0"
            artifact = Registry(con).get(champion).artifact_path
            builtin = self.tasks[job.task].builtin_version
            return ChampionRef(version_id=champion, artifact=str(artifact or builtin))

        spec = JobSpec(
            job_id=job.job_id, run_id=job.run_id, task=job.task, attempt=job.attempt,
            run_dir=job.run_dir, champion=await self._db(champion_ref),
            fresh_share=self.settings.for_task(job.task).training.fresh_share,
            benchmark_max_examples=(
                self.settings.for_task(job.task).training.gate_benchmark_max_examples
            ),
            timeout_s=self.training.job_timeout_s, snapshot=job.snapshot,
        )  # fmt: skip
        try:
            await self.nc.jetstream().publish(
                train_subject(self.training),
                spec.model_dump_json().encode(),
                headers={"Nats-Msg-Id": job.job_id},
            )
        except (nats.errors.Error, TimeoutError) as err:
            self._publish_errors[job.job_id] = f"{type(err).__name__}: {err}".rstrip(": ")
            log.error(
                "training %s is queued but NOT on the work queue (%s); publishing it again at "
                "the next trigger check, for at most %.0f s (training.publish_timeout_s)",
                job.job_id, self._publish_errors[job.job_id], self.training.publish_timeout_s,
            )  # fmt: skip
            return False
        await self._db(lambda con: JobStore(con).published(job.job_id))
        self._publish_errors.pop(job.job_id, None)
        return True

    async def _publish_again(self, job: Job) -> None:
        """A queued job whose publish failed: publish it again, or fail it once it has
        waited ``training.publish_timeout_s`` (its retry follows, as for any failure)."""
        waited = (datetime.now(UTC) - job.requested_at).total_seconds()
        if waited < self.training.publish_timeout_s:
            if await self._publish(job):
                log.warning("training %s published after %.0f s", job.job_id, waited)
            return
        cause = self._publish_errors.pop(job.job_id, "JetStream never acknowledged it")
        error = (
            f"not published to the work queue within {self.training.publish_timeout_s:.0f} s "
            f"(training.publish_timeout_s): {cause}"
        )
        await self._db(lambda con: JobStore(con).finished(job.job_id, succeeded=False, error=error))
        _count_finished(job, "failed")
        log.error("training %s FAILED: %s", job.job_id, error)

    # -- what workers report ------------------------------------------------------------------

    async def _on_status(self, msg: Msg) -> None:
        try:
            status = JobStatus.model_validate_json(msg.data)
        except ValidationError as err:
            log.warning("malformed training status ignored: %s", err)
            return

        def record(con: duckdb.DuckDBPyConnection) -> None:
            jobs = JobStore(con)
            if status.state == "started":
                jobs.started(status.job_id, worker=status.worker, pid=status.pid)
            elif status.state == "progress" and status.progress:
                jobs.progressed(status.job_id, status.progress)
            elif status.state == "interrupted":
                jobs.interrupted(status.job_id, f"worker {status.worker} stopped")

        try:
            await self._db(record)
        except Exception:  # noqa: BLE001 - progress is best effort
            log.exception("could not record the status of %s", status.job_id)
        self._log_status(status)

    def _log_status(self, status: JobStatus) -> None:
        if status.state == "progress" and status.progress:
            now = time.monotonic()
            if now - self._logged_at.get(status.job_id, 0.0) < PROGRESS_LOG_INTERVAL_S:
                return
            self._logged_at[status.job_id] = now
            p = status.progress
            log.info(
                "training %s: step %s/%s, loss %.4f, ETA %.0f s",
                status.job_id, p.get("step"), p.get("total_steps"), p.get("loss", float("nan")),
                p.get("eta_s", float("nan")),
            )  # fmt: skip
        elif status.state == "phase":
            log.info("training %s: %s", status.job_id, status.phase)
        else:
            log.info("training %s %s on %s (pid %s)", status.job_id, status.state,
                     status.worker, status.pid)  # fmt: skip

    async def _result_loop(self, results: Any) -> None:
        while True:
            try:
                msgs = await results.fetch(1, timeout=1.0)
            except (nats.errors.TimeoutError, TimeoutError):
                continue
            for msg in msgs:
                try:
                    result = JobResult.model_validate_json(msg.data)
                except ValidationError as err:
                    log.error("malformed training result dropped: %s", err)
                    await msg.term()
                    continue
                try:
                    await self._db(functools.partial(self._record_result, result=result))
                except Exception:  # noqa: BLE001 - redelivered, and logged until it works
                    log.exception("could not record the result of %s", result.job_id)
                    await msg.nak(delay=5.0)
                    continue
                await msg.ack()
                self._check_soon.set()  # a failure may be retried, new signal may be waiting

    def _record_result(self, con: duckdb.DuckDBPyConnection, *, result: JobResult) -> None:
        jobs = JobStore(con)
        job = jobs.find(result.job_id)
        if job is not None and job.state in ("succeeded", "failed"):
            return  # a redelivered result already recorded
        try:
            job = self._matching_job(job, result)
        except (ForgedResult, PathOutsideRoot) as err:
            reason = err.reason if isinstance(err, ForgedResult) else err
            log.warning("training result for %s refused: %s", result.job_id, reason)
            return
        if not result.succeeded or result.result is None:
            jobs.finished(
                job.job_id, succeeded=False, error=result.error, retryable=result.retryable
            )
            _count_finished(job, "failed")
            left = self.training.max_attempts - job.attempt if result.retryable else 0
            log.error(
                "training %s FAILED on %s: %s (%s)", job.job_id, result.worker, result.error,
                f"{left} attempts left" if left > 0 else "no attempts left",
            )  # fmt: skip
            return
        version_id = self._register(con, job, result.result)
        jobs.finished(job.job_id, succeeded=True, version_id=version_id)
        _count_finished(job, "succeeded")

    def _matching_job(self, job: Job | None, result: JobResult) -> Job:
        """``job`` when ``result`` is its report: same task, attempt and snapshot, and a
        version directory inside the job's run directory (which lies under the runs)."""
        if job is None:
            raise ForgedResult(result.job_id, "no job with this id was queued")
        for name, queued, reported in (
            ("task", job.task, result.task),
            ("attempt", job.attempt, result.attempt),
            ("snapshot", job.snapshot, result.snapshot),
        ):
            if queued != reported:
                raise ForgedResult(result.job_id, f"its {name} {reported!r} is not {queued!r}")
        if result.succeeded and result.result is not None:
            run_dir = confined(job.run_dir, self.settings.runs_path, key="job.run_dir")
            version_dir = confined(
                str(result.result.get("version_dir")), run_dir, key="result.version_dir"
            )
            if not version_dir.is_dir():
                raise ForgedResult(result.job_id, f"its version directory {version_dir} is missing")
            result.result["version_dir"] = str(version_dir)
        return job

    def _register_version(
        self, con: duckdb.DuckDBPyConnection, job: Job, outcome: dict[str, Any], champion: str
    ) -> VersionRecord:
        """The candidate's registry row and its lineage rows (inside the caller's transaction)."""
        registry = Registry(con)
        record = registry.register(
            job.task,
            base_model=outcome.get("base_model") or registry.get(champion).base_model,
            reason=f"trained by run {job.run_id} ({job.reason})",
            artifact_path=outcome["version_dir"],
            parent_version=champion,
            training_run=job.run_id,
            metrics={
                "training": outcome.get("training", {}),
                "training_set": outcome.get("training_set", {}),
                "evaluation": outcome.get("reports", {}),
            },
        )
        lineage_file = Path(job.run_dir) / TRAINING_SET_FILE
        if lineage_file.is_file():
            lineage = json.loads(lineage_file.read_text())
            jobs = JobStore(con)
            jobs.record_events(job.run_id, "train", lineage.get("event_ids", {}))
            jobs.record_events(job.run_id, "fresh", lineage.get("fresh_event_ids", {}))
        return record

    def _register(self, con: duckdb.DuckDBPyConnection, job: Job, outcome: dict[str, Any]) -> str:
        """Register the candidate with its lineage, then apply the offline gate."""
        task = self.tasks[job.task]
        registry = Registry(con)
        champion = job.champion or f"{job.task}-v0"
        # A result redelivered after a crash half-way through finds its version registered;
        # a gate row means its status was set too (one transaction), so nothing is left.
        done = con.execute(
            "SELECT v.version_id, count(g.version_id) FROM model_versions v "
            "LEFT JOIN gate_decisions g USING (version_id) WHERE v.training_run = ? "
            "GROUP BY v.version_id",
            [job.run_id],
        ).fetchone()
        if done is not None and done[1]:
            return done[0]
        if done is not None:
            record = registry.get(done[0])
        else:
            con.begin()  # the version and its lineage, or neither
            try:
                record = self._register_version(con, job, outcome, champion)
            except BaseException:
                con.rollback()
                raise
            con.commit()
        gate = self.settings.for_task(job.task).training
        decision = decide(
            outcome.get("reports", {}),
            primary_metric=task.primary_metric,
            greater_is_better=task.greater_is_better,
            margin=gate.gate_margin,
            tolerance=gate.gate_tolerance,
            min_fresh_examples=gate.gate_min_fresh_examples,
            alpha=gate.gate_alpha,
        )
        deciding = decision.deciding
        # The decision and the status it gives: one transaction (see record_gate_decision).
        registry.record_gate_decision(GateRecord(
            version_id=record.version_id, champion=champion, passed=decision.passed,
            reason=decision.reason, checks=decision.to_json(),
            fresh_examples=decision.fresh_examples, decided_on=decision.evidence,
            test=deciding.test if deciding else None,
            p_value=deciding.p_value if deciding else None,
        ))  # fmt: skip
        log.info("candidate %s of run %s: offline gate %s", record.version_id, job.run_id,
                 decision.reason)  # fmt: skip
        return record.version_id


def _count_finished(job: Job, outcome: str) -> None:
    metrics.TRAINING_JOBS_FINISHED.labels(job.task, outcome).inc()
    started = job.started_at or job.requested_at
    metrics.TRAINING_DURATION_SECONDS.labels(job.task, outcome).observe(
        max(0.0, (datetime.now(UTC) - started).total_seconds())
    )
