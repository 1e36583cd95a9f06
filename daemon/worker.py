"""The training worker: takes jobs from the work queue and runs each in a subprocess.

The daemon runs one worker in its own process (``training.local_worker``); ``kaizend worker``
runs one anywhere else that reaches NATS and the shared run directories (a second GPU box).
A worker takes one job at a time, so one training runs at a time on its machine, at the
background priority (`daemon.background`: it gets the CPU that ingestion and serving leave
idle). While the training runs it streams progress on ``training.status_subject`` and tells
JetStream it is still busy; at the end it publishes the result and acknowledges the job. A
training that runs out of memory is tried again at once with half the batch size; any other
failure is reported, and the daemon decides on a retry.

On stop, the running training is terminated (it resumes from its checkpoint) and the job is
handed back to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats.errors
from kaizend.core.config import Settings
from kaizend.core.errors import PathOutsideRoot
from kaizend.daemon.background import child_preexec
from kaizend.daemon.training_job import EXIT_OUT_OF_MEMORY
from kaizend.handlers.jobs import (
    JobResult,
    JobSpec,
    JobStatus,
    ensure_jobs_stream,
    result_subject,
    train_subject,
)
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig
from pydantic import ValidationError

log = logging.getLogger(__name__)

TRAINING_COMMAND: tuple[str, ...] = (sys.executable, "-m", "kaizend.daemon.training_job")


class _Attempt:
    """What one training subprocess said and how it ended."""

    def __init__(self) -> None:
        self.result: dict[str, Any] | None = None
        self.error: str | None = None
        self.out_of_memory = False
        self.retryable = True
        self.returncode: int | None = None


class Worker:
    """Consumes ``<training.subject_prefix>.train``, one job at a time."""

    def __init__(
        self,
        settings: Settings,
        nc: NATS,
        *,
        name: str | None = None,
        command: Sequence[str] = TRAINING_COMMAND,
    ) -> None:
        self.settings = settings
        self.training = settings.training
        self.nc = nc
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.command = tuple(command)
        self._stopping = asyncio.Event()
        self._proc: asyncio.subprocess.Process | None = None
        self.jobs_done = 0

    async def run(self) -> None:
        """Take and run jobs until `stop`."""
        js = self.nc.jetstream()
        await ensure_jobs_stream(js, self.training)
        sub = await js.pull_subscribe(
            train_subject(self.training),
            durable=self.training.worker_consumer,
            stream=self.training.stream,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=max(3 * self.training.heartbeat_s, 30.0),
                max_deliver=-1,
            ),
        )
        log.info(
            "training worker %s waiting for jobs on %s", self.name, train_subject(self.training)
        )
        try:
            while not self._stopping.is_set():
                try:
                    msgs = await sub.fetch(1, timeout=1.0)
                except (nats.errors.TimeoutError, TimeoutError):
                    continue
                except nats.errors.ConnectionClosedError:
                    break
                for msg in msgs:
                    try:
                        await self._handle(msg)
                    except Exception:  # noqa: BLE001 - keep taking jobs; this one comes back
                        log.exception("training worker %s could not handle a job", self.name)
                        with contextlib.suppress(nats.errors.Error):
                            await msg.nak(delay=self.training.heartbeat_s)
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
        log.info("training worker %s stopped", self.name)

    async def stop(self) -> None:
        """Stop taking jobs; terminate a running training (its job goes back to the queue)."""
        self._stopping.set()
        await self._terminate()

    async def _terminate(self) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), self.training.stop_grace_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def _status(self, spec: JobSpec, state: str, **fields: Any) -> None:
        status = JobStatus(
            job_id=spec.job_id, task=spec.task, state=state, worker=self.name,
            at=datetime.now(UTC), **fields,
        )  # fmt: skip
        with contextlib.suppress(nats.errors.Error):
            await self.nc.publish(self.training.status_subject, status.model_dump_json().encode())

    async def _handle(self, msg: Msg) -> None:
        try:
            spec = JobSpec.model_validate_json(msg.data)
        except ValidationError as err:
            log.error("dropping a malformed training job: %s", err)
            await msg.term()
            return
        try:
            spec.checked_run_dir(self.settings.runs_path)
        except PathOutsideRoot as err:
            # Not a job the daemon queued here (or this box's data_dir is not the shared
            # storage): nothing is written, nothing runs.
            log.warning("training job %s refused: %s", spec.job_id, err)
            await self._report(spec, succeeded=False, error=str(err), retryable=False)
            await msg.term()
            return
        started = time.perf_counter()
        log.info("training job %s (%s) started on %s", spec.job_id, spec.task, self.name)
        heartbeat = asyncio.create_task(self._heartbeat(msg))
        try:
            attempt = await self._start_child(spec, halve_batch=False)
            if attempt.out_of_memory and not self._stopping.is_set():
                log.warning("training job %s ran out of memory; retrying with half the batch "
                            "size", spec.job_id)  # fmt: skip
                await asyncio.to_thread(shutil.rmtree, spec.version_dir, True)
                attempt = await self._start_child(spec, halve_batch=True)
        finally:
            heartbeat.cancel()
        if self._stopping.is_set() and attempt.result is None:
            await self._status(spec, "interrupted")
            await msg.nak()
            log.info("training job %s interrupted; back in the queue", spec.job_id)
            return
        result = await self._report(
            spec, succeeded=attempt.result is not None, error=attempt.error,
            out_of_memory=attempt.out_of_memory, retryable=attempt.retryable,
            result=attempt.result,
        )  # fmt: skip
        await msg.ack()
        self.jobs_done += 1
        log.info(
            "training job %s %s in %.0f s%s",
            spec.job_id,
            "succeeded" if result.succeeded else "failed",
            time.perf_counter() - started,
            "" if result.succeeded else f": {result.error}",
        )

    async def _report(self, spec: JobSpec, **outcome: Any) -> JobResult:
        """Publish how ``spec`` ended, with its attempt and snapshot for the daemon's check."""
        result = JobResult(
            job_id=spec.job_id, task=spec.task, worker=self.name, attempt=spec.attempt,
            snapshot=spec.snapshot, **outcome,
        )  # fmt: skip
        await self.nc.jetstream().publish(
            result_subject(self.training),
            result.model_dump_json().encode(),
            headers={"Nats-Msg-Id": f"{spec.job_id}:result"},
        )
        return result

    async def _heartbeat(self, msg: Msg) -> None:
        while True:
            await asyncio.sleep(self.training.heartbeat_s)
            with contextlib.suppress(nats.errors.Error):
                await msg.in_progress()

    async def _start_child(self, spec: JobSpec, *, halve_batch: bool) -> _Attempt:
        """Run the training subprocess; a job this worker cannot even start (its run
        directory is not on this machine's shared storage) fails with the reason."""
        try:
            return await self._run_child(spec, halve_batch=halve_batch)
        except OSError as err:
            attempt = _Attempt()
            attempt.error = f"cannot start the training on {self.name}: {err}"
            return attempt

    async def _run_child(self, spec: JobSpec, *, halve_batch: bool) -> _Attempt:
        run_dir = Path(spec.run_dir)
        spec_file = run_dir / f"job-{spec.attempt}.json"
        spec_file.write_text(spec.model_dump_json(indent=2))
        settings_file = run_dir / f"settings-{spec.attempt}.json"
        settings_file.write_text(self.settings.model_dump_json(exclude={"nats"}, indent=2))
        argv = [*self.command, "--settings", str(settings_file)]
        if halve_batch:
            argv.append("--halve-batch")
        argv.append(str(spec_file))
        attempt = _Attempt()
        proc = self._proc = await asyncio.create_subprocess_exec(
            *argv,
            stdout=asyncio.subprocess.PIPE,
            # Progress travels as protocol lines; bars would only clutter the daemon's log.
            env={**os.environ, "TQDM_DISABLE": "1"},
            # Below the event path's priority, and ended with the daemon.
            preexec_fn=child_preexec(self.settings.daemon.background_niceness),
            # Its own process group: a Ctrl-C in the terminal reaches the daemon, which
            # stops this child in order, instead of killing it under the daemon's feet.
            process_group=0,
            limit=1 << 22,
        )
        await self._status(spec, "started", pid=proc.pid)
        try:
            await asyncio.wait_for(self._follow(spec, proc, attempt), spec.timeout_s)
        except TimeoutError:
            await self._terminate()
            attempt.result = None
            attempt.error = f"timed out after {spec.timeout_s:.0f} s"
        attempt.returncode = await proc.wait()
        self._proc = None
        if attempt.result is None and attempt.error is None:
            attempt.error = _describe_exit(proc.returncode)
        attempt.out_of_memory = attempt.out_of_memory or proc.returncode == EXIT_OUT_OF_MEMORY
        return attempt

    async def _follow(
        self, spec: JobSpec, proc: asyncio.subprocess.Process, attempt: _Attempt
    ) -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            try:
                line = json.loads(raw)
            except json.JSONDecodeError:
                log.debug("training job %s: %s", spec.job_id, raw.decode(errors="replace"))
                continue
            kind = line.pop("type", None)
            if kind == "progress":
                await self._status(spec, "progress", pid=proc.pid, progress=line)
            elif kind == "phase":
                await self._status(spec, "phase", pid=proc.pid, phase=line.get("phase"))
            elif kind == "result":
                attempt.result = line["result"]
            elif kind == "error":
                attempt.error = line.get("error")
                attempt.out_of_memory = bool(line.get("out_of_memory"))
                attempt.retryable = bool(line.get("retryable", True))
        await proc.wait()


def _describe_exit(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        name = signal.Signals(-returncode).name
        hint = " (the kernel's out-of-memory killer?)" if name == "SIGKILL" else ""
        return f"training subprocess killed by {name}{hint}"
    return f"training subprocess exited with status {returncode} without a result"


async def run_worker(settings: Settings, name: str | None = None) -> int:
    """``kaizend worker``: connect to the daemon's NATS and take jobs until SIGTERM/SIGINT."""
    from kaizend.daemon.runtime import connect_beside_daemon, on_stop_signals

    broker = await connect_beside_daemon(settings, "kaizend-worker", "take jobs from", "worker")
    if broker is None:
        return 1
    worker = Worker(settings, broker.connection, name=name)
    on_stop_signals(lambda: asyncio.ensure_future(worker.stop()))
    try:
        await worker.run()
    finally:
        await broker.stop()
    return 0
