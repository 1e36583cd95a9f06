"""The daemon's lifecycle: start-up order, the run loop, and the graceful stop.

Start: embedded nats-server (when no URL is configured) -> DuckDB store -> broker with the
ingest subscriber and the admin responders -> writer -> scheduler -> runtime file.
Stop (SIGTERM/SIGINT): stop fetching -> commit and ack what was fetched -> close NATS ->
checkpoint DuckDB -> stop the embedded server; all within ``daemon.shutdown_grace_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from core.config import Settings
from daemon.nats_server import EmbeddedNats
from daemon.runtime import remove_runtime, write_runtime
from handlers.admin import Admin
from handlers.connection import make_broker
from handlers.ingest import (
    Ingestor,
    apply_consumer_config,
    subscribe,
    tolerate_fetch_timeouts,
    watch_abandoned,
)
from storage.events import EventStore
from storage.export import export_parquet
from storage.registry import Registry

log = logging.getLogger(__name__)


class Daemon:
    """One running kaizend: owns the NATS connection, the DuckDB file and the scheduler."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store: EventStore | None = None
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
            embedded = EmbeddedNats(
                s.path(Path("nats")), host=s.nats.embedded_host, port=s.nats.embedded_port
            )
            await asyncio.to_thread(embedded.start)
            url = embedded.url

        store = self.store = EventStore(s.db_path)
        Registry(store.cursor()).ensure_initial_champion(
            "parser", base_model="rules", reason="initial champion: the rule-based parser"
        )
        ingestor = Ingestor(store, s.ingest, s.stream.subject_prefix)
        broker = make_broker(
            s.nats,
            url,
            graceful_timeout=s.daemon.shutdown_grace_s,
            reconnect_forever=True,
            closed_cb=self._connection_closed,
        )
        subscriber = subscribe(broker, s.stream, s.ingest, ingestor)
        watch_abandoned(broker, s.stream, s.ingest, ingestor)
        admin = Admin(s, store, ingestor, url)
        admin.register(broker)
        scheduler = AsyncIOScheduler()
        if s.storage.export_interval_s:
            scheduler.add_job(
                asyncio.to_thread,
                "interval",
                args=[lambda: export_parquet(store.cursor(), s.export_path)],
                seconds=s.storage.export_interval_s,
                id="parquet-export",
                max_instances=1,
                coalesce=True,
            )
        try:
            ingestor.start()
            log.info("connecting to NATS at %s", url)
            if not await self._until_stopped(broker.start()):
                return self._exit_code
            tolerate_fetch_timeouts(subscriber)
            admin.js = broker.connection.jetstream()
            await apply_consumer_config(admin.js, s.stream, subscriber)
            scheduler.start()
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
            await self._shutdown(broker, subscriber, ingestor, scheduler, store, embedded)
        return self._exit_code

    async def _shutdown(self, broker, subscriber, ingestor, scheduler, store, embedded) -> None:  # noqa: ANN001
        started = time.perf_counter()
        grace = self.settings.daemon.shutdown_grace_s
        try:
            async with asyncio.timeout(grace):
                await subscriber.stop()  # no new fetches; waits for the batch in hand
                await ingestor.drain()  # commit and ack what was fetched
                await broker.stop()
        except TimeoutError:
            log.error("graceful stop exceeded %.0f s; unacked events will be redelivered", grace)
        except Exception:
            log.exception("error while draining; unacked events will be redelivered")
        finally:
            if scheduler.running:
                scheduler.shutdown(wait=False)
            try:
                store.checkpoint()
            finally:
                store.close()
                remove_runtime(self.settings)
                if embedded is not None:
                    await asyncio.to_thread(embedded.stop)
        log.info("kaizend stopped in %.1f s", time.perf_counter() - started)
