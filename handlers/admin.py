"""The daemon's request-reply responders for operators: read-only SQL and status/health.

``<admin prefix>.sql`` takes ``{"sql": ..., "max_rows": ...}`` and answers
``{"columns", "types", "rows", "truncated"}`` or ``{"error"}``; ``<admin prefix>.status``
answers the status document that `kaizend status` prints and `kaizend check` judges;
``<admin prefix>.train`` takes ``{"task": ...}``, queues a training (or finds the one already
queued or running) and answers ``{"job": {...}}`` or ``{"error"}``. ``<admin prefix>.promote``
and ``.challenge`` (``{"task", "version"}``), ``.rollback`` (``{"task"}``) and ``.experiment``
(``{"experiment_id", "action": "pause"|"resume"}``) are the operators' hands on the
experiment loop; each takes a ``reason`` and answers ``{"done": ...}`` or ``{"error"}``.
``<admin prefix>.drift`` takes ``{"task": ...}`` (or none: every task), computes, stores and
acts on a drift report now and answers ``{"reports": [{"report": {...}, "checks": [...]}]}``
or ``{"error"}``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, Protocol, TypeVar

import duckdb
from faststream.nats import NatsBroker
from kaizend.core import __version__, metrics
from kaizend.core.config import Settings
from kaizend.core.errors import KaizendError
from kaizend.handlers.ingest import Ingestor
from kaizend.storage.events import EventStore, stored_summary
from kaizend.storage.readonly import OperatorQueries
from nats.js import JetStreamContext
from pydantic import BaseModel, Field
from pydantic_core import to_json

log = logging.getLogger(__name__)
T = TypeVar("T")


class SqlRequest(BaseModel):
    sql: str = Field(min_length=1)
    max_rows: int | None = Field(None, ge=1)


class TrainRequest(BaseModel):
    task: str = Field(min_length=1)
    reason: str = Field("manual", max_length=500)


class PromoteRequest(BaseModel):
    task: str = Field(min_length=1)
    version: str = Field(min_length=1)
    reason: str = Field("manual", max_length=500)


class RollbackRequest(BaseModel):
    task: str = Field(min_length=1)
    reason: str = Field("manual", max_length=500)


class ExperimentRequest(BaseModel):
    experiment_id: str = Field(min_length=1)
    action: Literal["pause", "resume"]
    reason: str = Field("manual", max_length=500)


class DriftRequest(BaseModel):
    task: str | None = Field(None, min_length=1)


ADMIN_REQUESTS: dict[str, tuple[str, str]] = {
    "sql": ("sql", "Run a read-only query: {sql, max_rows?} -> {columns, types, rows, "
            "truncated} or {error}."),
    "status": ("status", "The status document `kaizend status` prints and `kaizend check` "
               "judges: counts, consumer lag, health."),
    "train": ("train", "Queue a training of {task} (or find the one queued or running) -> "
              "{job} or {error}."),
    "promote": ("promote", "Make {task}'s {version} the champion now -> {done} or {error}."),
    "challenge": ("challenge", "Make {task}'s {version} the challenger (no offline gate) -> "
                  "{done} or {error}."),
    "rollback": ("rollback", "Roll back {task}'s challenger, else its champion -> {done} or "
                 "{error}."),
    "experiment": ("experiment", "Pause or resume an experiment -> {done} or {error}."),
    "drift": ("drift_report", "Compute, store and act on a drift report of {task} (or every "
              "task) now -> {reports} or {error}."),
}  # fmt: skip
"""Each admin subject (``<admin prefix>.<name>``): the responder's method and what it does."""


class TrainingRequests(Protocol):
    """What the admin responder needs of the daemon's orchestrator."""

    async def request(self, name: str, reason: str) -> Any: ...


class ExperimentControls(Protocol):
    """What the admin responder needs of the daemon's experiment loop."""

    async def promote(self, task: str, version_id: str, reason: str) -> Any: ...
    async def challenge(self, task: str, version_id: str, reason: str) -> Any: ...
    async def rollback(self, task: str, reason: str) -> Any: ...
    async def pause(self, experiment_id: str, reason: str) -> Any: ...
    async def resume(self, experiment_id: str, reason: str) -> Any: ...


class DriftReports(Protocol):
    """What the admin responder needs of the daemon's drift monitor."""

    async def run(self, tasks: list[str] | None, trigger: str) -> list[Any]: ...


class Admin:
    """Answers operators' requests from inside the running daemon."""

    def __init__(
        self,
        settings: Settings,
        store: EventStore,
        ingestor: Ingestor,
        nats_url: str,
        training: TrainingRequests | None = None,
        drift: DriftReports | None = None,
    ) -> None:
        self.settings = settings
        self.training = training
        self.drift = drift
        self.store = store
        self.ingestor = ingestor
        self.nats_url = nats_url
        self.js: JetStreamContext | None = None
        self.experiments: ExperimentControls | None = None
        self._broker: NatsBroker | None = None
        # Operator SQL runs on threads of its own, never the default executor that ingestion
        # commits through, each query on its own cursor and under admin.sql_timeout_s.
        self._queries = OperatorQueries(store.cursor, settings.admin.sql_timeout_s)
        self._sql_threads = ThreadPoolExecutor(
            settings.admin.sql_concurrency, thread_name_prefix="operator-sql"
        )
        self._sql_running: set[asyncio.Future[Any]] = set()

    def register(self, broker: NatsBroker) -> None:
        self._broker = broker
        prefix = self.settings.admin.subject_prefix
        for name, (method, description) in ADMIN_REQUESTS.items():
            options: dict[str, Any] = {}
            if name == "sql":
                # One worker more than the queries allowed at once, so that one more is
                # refused at once rather than queued behind a long one.
                options["max_workers"] = self.settings.admin.sql_concurrency + 1
            broker.subscriber(f"{prefix}.{name}", description=description, **options)(
                getattr(self, method)
            )

    async def _control(
        self, what: str, act: Callable[[ExperimentControls], Awaitable[Any]]
    ) -> bytes:
        if self.experiments is None:
            return to_json({"error": "the experiment loop is not running yet"})
        try:
            done = await act(self.experiments)
        except KaizendError as err:
            return to_json({"error": str(err)})
        log.warning("operator: %s", what)
        return to_json({"done": done}, fallback=str)

    async def promote(self, request: PromoteRequest) -> bytes:
        return await self._control(
            f"promote {request.task} {request.version} ({request.reason})",
            lambda loop: loop.promote(request.task, request.version, request.reason),
        )

    async def challenge(self, request: PromoteRequest) -> bytes:
        return await self._control(
            f"challenge {request.task} with {request.version} ({request.reason})",
            lambda loop: loop.challenge(request.task, request.version, request.reason),
        )

    async def rollback(self, request: RollbackRequest) -> bytes:
        return await self._control(
            f"rollback {request.task} ({request.reason})",
            lambda loop: loop.rollback(request.task, request.reason),
        )

    async def experiment(self, request: ExperimentRequest) -> bytes:
        return await self._control(
            f"{request.action} experiment {request.experiment_id} ({request.reason})",
            lambda loop: getattr(loop, request.action)(request.experiment_id, request.reason),
        )

    async def drift_report(self, request: DriftRequest) -> bytes:
        if self.drift is None:
            return to_json({"error": "this daemon makes no drift reports"})
        try:
            reports = await self.drift.run([request.task] if request.task else None, "manual")
        except KaizendError as err:
            return to_json({"error": str(err)})
        log.info("drift report requested by an operator: %s",
                 ", ".join(r.report_id for r in reports))  # fmt: skip
        return to_json(
            {"reports": [{"report": r.report_row("manual"), "checks": r.check_rows()}
                         for r in reports]},
            fallback=str,
        )  # fmt: skip

    async def train(self, request: TrainRequest) -> bytes:
        if self.training is None:
            return to_json({"error": "this daemon does not train"})
        try:
            job = await self.training.request(request.task, f"manual: {request.reason}")
        except KaizendError as err:
            return to_json({"error": str(err)})
        log.info("training of %s requested by an operator: %s", request.task, job.job_id)
        return to_json({"job": job}, fallback=str)

    def _read(self, work: Callable[..., T], *args: Any) -> T:
        """``work(cursor, *args)`` on a cursor closed right after (no transaction left open)."""
        with self.store.cursor() as con:
            return work(con, *args)

    async def sql(self, request: SqlRequest) -> bytes:
        admin = self.settings.admin
        limit = min(request.max_rows or admin.sql_max_rows, admin.sql_max_rows)
        if len(self._sql_running) >= admin.sql_concurrency:
            return to_json(
                {
                    "error": f"{len(self._sql_running)} operator queries are running already "
                    "(admin.sql_concurrency): try again when one has ended"
                }
            )
        started = time.perf_counter()
        log.info("operator query started: %.500s", request.sql)
        try:
            running = asyncio.get_running_loop().run_in_executor(
                self._sql_threads, self._queries.run, request.sql, limit
            )
        except RuntimeError:  # the executor is shut down
            return to_json({"error": "the daemon is stopping: run the query again later"})
        self._sql_running.add(running)
        try:
            result = await running
        except (KaizendError, duckdb.Error, ValueError) as err:
            log.info("refused or failed operator query: %s", err)
            return to_json({"error": str(err)})
        finally:
            self._sql_running.discard(running)
        reply = to_json(
            {
                "columns": result.columns,
                "types": result.types,
                "rows": result.rows,
                "truncated": result.truncated,
            },
            bytes_mode="base64",
            fallback=str,
        )
        limit = self._broker.connection.max_payload if self._broker else len(reply)
        if len(reply) > limit:
            return to_json(
                {
                    "error": f"result of {len(result.rows)} rows is {len(reply)} bytes, over the "
                    f"NATS payload limit of {limit}: add a LIMIT, or query the Parquet export "
                    f"under {self.settings.export_path}"
                }
            )
        log.info("operator query answered in %.0f ms", (time.perf_counter() - started) * 1e3)
        return reply

    async def stop(self, grace_s: float = 5.0) -> None:
        """Interrupt the operator queries running (a graceful stop never waits on one) and
        refuse new ones; wait up to ``grace_s`` for their threads to let go of the database."""
        interrupted = self._queries.interrupt_all("the daemon is stopping")
        self._sql_threads.shutdown(wait=False, cancel_futures=True)
        if self._sql_running:
            await asyncio.wait(set(self._sql_running), timeout=grace_s)
        if interrupted:
            log.info("interrupted %d operator queries", interrupted)

    async def consumer_lag(self) -> dict[str, int] | None:
        if self.js is None:
            return None
        try:
            info = await self.js.consumer_info(
                self.settings.stream.name, self.settings.ingest.consumer
            )
        except Exception as err:  # noqa: BLE001 - reported, not fatal
            log.warning("consumer_info failed: %s", err)
            return None
        metrics.CONSUMER_PENDING.set(info.num_pending or 0)
        metrics.CONSUMER_ACK_PENDING.set(info.num_ack_pending or 0)
        return {
            "num_pending": info.num_pending or 0,
            "num_ack_pending": info.num_ack_pending or 0,
            "num_redelivered": info.num_redelivered or 0,
        }

    def health(self, lag: dict[str, int] | None) -> tuple[bool, str]:
        """Ingesting means: NATS reachable, and no backlog left uncommitted for too long."""
        stats = self.ingestor.stats
        if lag is None:
            return False, "JetStream consumer unreachable"
        if not self.ingestor.running:
            return False, "ingest writer is not running"
        backlog = lag["num_pending"] + lag["num_ack_pending"]
        since = time.time() - (stats.last_commit_at or stats.started_at)
        if backlog and since > self.settings.ingest.stall_after_s:
            return False, f"{backlog} events pending and nothing committed for {since:.0f} s"
        return True, "ingesting"

    async def status(self) -> dict[str, Any]:
        lag = await self.consumer_lag()
        healthy, reason = self.health(lag)
        try:
            stored = await asyncio.to_thread(self._read, stored_summary)
        except duckdb.Error as err:
            stored = {"storage_error": str(err)}
            healthy, reason = False, f"database unreadable: {err}"
        stats = self.ingestor.stats
        return {
            "version": __version__,
            "pid": os.getpid(),
            "nats_url": self.nats_url,
            "uptime_s": round(time.time() - stats.started_at, 1),
            "healthy": healthy,
            "health": reason,
            "lag": lag,
            "committed_since_start": dict(stats.committed),
            "batches": stats.batches,
            "storage_failures": stats.storage_failures,
            "abandoned_stream_seqs": stats.abandoned[-100:],
            "last_commit_ms": round(stats.last_commit_ms, 1),
            "last_commit_at": stats.last_commit_at,
            **stored,
        }
