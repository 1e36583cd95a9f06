"""The daemon's lifecycle: start-up order, the run loop, and the graceful stop.

Start: embedded nats-server (when no URL is configured) -> DuckDB store and each task's
version 0 -> broker with the admin responders -> writer -> the ingest pull loop ->
orchestrator (training triggers and results) and the local training worker -> every task's
routing entry, from the registry -> inference gateway -> scheduler (Parquet export, trigger
checks, experiment ticks, drift reports, consumer-lag gauges) -> Prometheus /metrics endpoint
-> runtime file.
Stop (SIGTERM/SIGINT): interrupt operator queries -> stop the gateway (answering the requests
in hand) -> abandon a drift report -> stop the metrics endpoint -> stop the training worker
(its job goes back to the queue) -> stop fetching -> commit and ack what was fetched -> close
NATS -> checkpoint DuckDB -> stop the embedded server; all within ``daemon.shutdown_grace_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from kaizend.core.config import Settings
from kaizend.core.metrics import MetricsServer, serve_metrics
from kaizend.daemon.background import BackgroundThread, Preparations
from kaizend.daemon.credentials import ensure_embedded_credentials, role_credentials
from kaizend.daemon.drift import DriftMonitor
from kaizend.daemon.experiments import ExperimentLoop
from kaizend.daemon.nats_server import EmbeddedNats
from kaizend.daemon.orchestrator import Orchestrator
from kaizend.daemon.runtime import remove_runtime, write_runtime
from kaizend.daemon.serving import predictor_loader
from kaizend.daemon.worker import Worker
from kaizend.handlers.admin import Admin
from kaizend.handlers.connection import make_broker
from kaizend.handlers.gateway import Gateway
from kaizend.handlers.ingest import Ingestor, events_stream, start_consuming, watch_abandoned
from kaizend.handlers.permissions import inbox_prefix, nats_users_config
from kaizend.handlers.pull import PullLoop
from kaizend.handlers.routing import routing_bucket
from kaizend.handlers.streams import ensure_stream
from kaizend.models.tasks import build_tasks
from kaizend.storage.events import EventStore
from kaizend.storage.export import export_parquet
from kaizend.storage.registry import Registry
from kaizend_client import Producer

log = logging.getLogger(__name__)


def _every(scheduler: AsyncIOScheduler, seconds: float, name: str, job: Any, *args: Any) -> None:
    """Run ``job(*args)`` every ``seconds``; a run still going when the next is due is not
    doubled, and runs missed while busy are coalesced into one."""
    scheduler.add_job(
        job, "interval", args=list(args), seconds=seconds, id=name, max_instances=1,
        coalesce=True,
    )  # fmt: skip


class Daemon:
    """One running kaizend: owns the NATS connection, the DuckDB file and the scheduler."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store: EventStore | None = None
        self.orchestrator: Orchestrator | None = None
        self.drift: DriftMonitor | None = None
        self.worker: Worker | None = None
        self.gateway: Gateway | None = None
        self.metrics: MetricsServer | None = None
        self._stop = asyncio.Event()
        self._exit_code = 0

    def request_stop(self, reason: str = "requested") -> None:
        if not self._stop.is_set():
            log.info("stopping (%s)", reason)
        self._stop.set()

    async def _connection_closed(self) -> None:
        # The client reconnects forever, so a close we did not ask for is unrecoverable here:
        # exit non-zero and let systemd restart us with a fresh connection.
        if not self._stop.is_set():
            log.critical("NATS connection closed unexpectedly; exiting for a restart")
            self._exit_code = 1
            self.request_stop("NATS connection closed")

    async def _until_stopped(self, step: Coroutine[Any, Any, Any]) -> bool:
        """Run a start-up step that may wait indefinitely (NATS not up yet), unless a stop
        is requested first; return whether the step finished."""
        task = asyncio.ensure_future(step)
        stop = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if task.done():
            task.result()
            return True
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return False

    async def run(self) -> int:
        """Run until a stop is requested; return the process exit code."""
        started = time.perf_counter()
        s = self.settings
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)

        embedded: EmbeddedNats | None = None
        url = s.nats.url
        if not url:
            s.check_embedded_nats()
            authorization = None
            if s.nats.embedded_auth:
                passwords = ensure_embedded_credentials(s)
                authorization = nats_users_config(s, passwords)
            embedded = EmbeddedNats(
                s.path(Path("nats")), host=s.nats.embedded_host, port=s.nats.embedded_port,
                authorization=authorization,
            )  # fmt: skip
            await asyncio.to_thread(embedded.start)
            url = embedded.url

        store = self.store = EventStore(s.db_path, export_dir=s.export_path)
        tasks = build_tasks(s)
        with store.cursor() as con:
            for name, task in tasks.items():
                Registry(con).ensure_initial_champion(
                    name,
                    base_model=task.builtin_version,
                    reason=f"initial champion: the built-in {task.builtin_version!r}",
                )
        orchestrator = self.orchestrator = Orchestrator(s, store, tasks)
        background = BackgroundThread(s.daemon.background_niceness)
        drift = self.drift = DriftMonitor(s, orchestrator, background)
        ingestor = Ingestor(store, s.ingest, s.stream.subject_prefix)
        ingestor.on_commit = orchestrator.notify_committed
        broker = make_broker(
            s.nats,
            url,
            graceful_timeout=s.daemon.shutdown_grace_s,
            reconnect_forever=True,
            closed_cb=self._connection_closed,
            credentials=role_credentials(s, "daemon"),
            inbox_prefix=inbox_prefix("daemon"),
        )
        watch_abandoned(broker, s.stream, s.ingest, ingestor)
        admin = Admin(s, store, ingestor, url, orchestrator, drift)
        admin.register(broker)
        scheduler = AsyncIOScheduler()
        if s.storage.export_interval_s:
            _every(
                scheduler,
                s.storage.export_interval_s,
                "parquet-export",
                background.run,
                lambda: export_parquet(store.cursor(), s.export_path),
            )
        _every(scheduler, s.training.check_interval_s, "training-check", orchestrator.check)
        if s.drift.interval_s:
            _every(scheduler, s.drift.interval_s, "drift-report", drift.run)
        if s.metrics.port:
            _every(scheduler, s.metrics.lag_interval_s, "consumer-lag", admin.consumer_lag)
        worker: Worker | None = None
        worker_task: asyncio.Task[None] | None = None
        gateway: Gateway | None = None
        pull: PullLoop | None = None
        preparations = Preparations(s)
        try:
            ingestor.start()
            log.info("connecting to NATS at %s", url)
            if not await self._until_stopped(broker.connect()):
                return self._exit_code
            # Before the subscriber binds to it: created, or its replicas checked.
            events = events_stream(s.stream)
            await ensure_stream(
                broker.connection.jetstream(),
                dataclasses.replace(events.config, subjects=list(events.subjects)),
                key="stream.replicas",
            )
            await broker.start()
            admin.js = broker.connection.jetstream()
            pull = await start_consuming(broker.connection, s.stream, s.ingest, ingestor)
            await orchestrator.start(broker.connection)
            routing = await routing_bucket(
                admin.js, s.routing.bucket, create=True, replicas=s.routing.replicas
            )
            experiments = ExperimentLoop(s, store, routing)
            admin.experiments = experiments
            await experiments.sync_routing(tasks)
            if s.gateway.enabled:
                producer = await Producer.start(
                    broker.connection,
                    subject_prefix=s.stream.subject_prefix,
                    service="gateway",
                    bucket=s.routing.bucket,
                )
                gateway = self.gateway = Gateway(
                    s.gateway,
                    broker.connection,
                    producer,
                    predictor_loader(s, preparations),
                    s.served_tasks,
                )
                await gateway.start()
            _every(scheduler, s.experiments.tick_s, "experiment-tick", experiments.tick)
            if s.training.local_worker:
                worker = self.worker = Worker(s, broker.connection)
                worker_task = asyncio.create_task(worker.run(), name="training-worker")
            scheduler.start()
            self.metrics = serve_metrics(s.metrics.host, s.metrics.port)
            write_runtime(s, url)
            log.info(
                "kaizend ready in %.1f s: NATS %s, stream %s, consumer %s, database %s",
                time.perf_counter() - started,
                url,
                s.stream.name,
                s.ingest.consumer,
                s.db_path,
            )
            await self._stop.wait()
        finally:
            if scheduler.running:
                scheduler.shutdown(wait=False)
            await admin.stop()
            await asyncio.to_thread(preparations.stop)
            if gateway is not None:
                await gateway.stop(grace_s=s.daemon.shutdown_grace_s / 2)
                await gateway.producer.stop()
            drift.stop()
            background.shutdown()
            if self.metrics is not None:
                await asyncio.to_thread(self.metrics.stop)
            await self._stop_training(worker, worker_task, orchestrator)
            await self._shutdown(broker, pull, ingestor, store, embedded)
        return self._exit_code

    async def _stop_training(
        self,
        worker: Worker | None,
        worker_task: asyncio.Task[None] | None,
        orchestrator: Orchestrator,
    ) -> None:
        """Hand a running training back to the queue (it resumes from its checkpoint)."""
        try:
            async with asyncio.timeout(self.settings.training.stop_grace_s + 5):
                if worker is not None and worker_task is not None:
                    await worker.stop()
                    await worker_task
                await orchestrator.stop()
        except Exception:  # noqa: BLE001 - the event pipeline must still stop cleanly
            log.exception("error while stopping the training worker")

    async def _shutdown(self, broker, pull, ingestor, store, embedded) -> None:  # noqa: ANN001
        started = time.perf_counter()
        grace = self.settings.daemon.shutdown_grace_s
        try:
            async with asyncio.timeout(grace):
                if pull is not None:
                    await pull.stop()  # no new fetches; the batch in hand goes to the writer
                await ingestor.drain()  # commit and ack what was fetched
                if pull is not None:
                    await pull.fetcher.stop()
                await broker.stop()
        except TimeoutError:
            log.error("graceful stop exceeded %.0f s; unacked events will be redelivered", grace)
        except Exception:
            log.exception("error while draining; unacked events will be redelivered")
        finally:
            try:
                store.checkpoint()
            finally:
                store.close()
                remove_runtime(self.settings)
                if embedded is not None:
                    await asyncio.to_thread(embedded.stop)
        log.info("kaizend stopped in %.1f s", time.perf_counter() - started)
