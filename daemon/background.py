"""Background work, placed where it cannot take the CPU from the event path.

Ingestion and serving run at the daemon's own priority. Work that takes minutes of CPU runs
``daemon.background_niceness`` below it, so it gets the CPU the event path leaves idle and
little of what the event path needs:

- trainings: the worker's subprocess (`daemon.worker`) starts at the lower priority (with the
  threads its task's configuration gives it);
- index builds: a version whose first load would build its vector index is first loaded in
  a subprocess of its own (:class:`Preparations`, running `daemon.prepare`), then by the
  gateway, which finds the index complete; nothing waits for it but that version's requests;
  it uses at most all cores but one (:func:`threads`);
- drift reports and Parquet exports: on :class:`BackgroundThread`, a thread of the daemon at
  the lower priority (Linux keeps a nice value per thread) whose torch work uses at most
  :func:`threads` threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from kaizend.core.config import Settings
from kaizend.core.errors import KaizendError
from kaizend.daemon.process import die_with_parent

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_NICENESS = 19
PREPARE_COMMAND: tuple[str, ...] = (sys.executable, "-m", "kaizend.daemon.prepare")
STOP_GRACE_S = 5.0


def threads() -> int:
    """Threads background work may use: every core but one, which stays for the event path."""
    return max(1, (os.cpu_count() or 1) - 1)


def child_preexec(niceness: int) -> Callable[[], None]:
    """``preexec_fn`` of a background subprocess: ``niceness`` below its parent, and ended
    with it (`daemon.process.die_with_parent`)."""

    def preexec() -> None:  # pragma: no cover - runs in the child before exec
        die_with_parent()
        if niceness:
            os.nice(niceness)

    return preexec


def lower_thread_priority(niceness: int) -> None:
    """Run the calling thread ``niceness`` below its current priority (Linux: per thread).

    One-way: without privileges a thread cannot raise its priority again, so call it only
    on a thread that does nothing but background work.
    """
    if not niceness or not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    current = os.getpriority(os.PRIO_PROCESS, tid)
    os.setpriority(os.PRIO_PROCESS, tid, min(current + niceness, MAX_NICENESS))


def bound_torch_threads() -> None:
    """At most :func:`threads` intra-op threads for torch work started from this thread.

    With torch's OpenMP backend the count belongs to the calling thread, so the gateway's
    inference threads keep theirs.
    """
    import torch

    torch.set_num_threads(threads())


class BackgroundThread:
    """One thread of the daemon for drift reports and exports, at the background priority."""

    def __init__(self, niceness: int) -> None:
        self._executor = ThreadPoolExecutor(
            1,
            thread_name_prefix="background",
            initializer=lower_thread_priority,
            initargs=(niceness,),
        )

    async def run(self, fn: Callable[..., T], *args: Any, torch: bool = False) -> T:
        """``fn(*args)`` on the background thread; ``torch``: with :func:`bound_torch_threads`
        first (the work embeds texts)."""

        def call() -> T:
            if torch:
                bound_torch_threads()
            return fn(*args)

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def shutdown(self) -> None:
        """Take no more work; a call running goes on until it ends (it may be told to stop)."""
        self._executor.shutdown(wait=False, cancel_futures=True)


class PreparationFailed(KaizendError, RuntimeError):
    """The background process preparing ``version`` of ``task`` failed or was stopped."""

    def __init__(self, task: str, version: str, what: str) -> None:
        super().__init__(f"preparing {task} {version} in the background {what}")
        self.task = task
        self.version = version


_STOPPED = "was stopped with kaizend; it resumes where it was at the next start"


class Preparations:
    """Runs the slow first load of a version (`daemon.prepare`) in a background process.

    `run` blocks until the process ends (call it from a loading thread, never the event
    loop); `stop` ends every process still running, so a stopping daemon does not wait for
    an index build.
    """

    def __init__(self, settings: Settings, *, command: Sequence[str] = PREPARE_COMMAND) -> None:
        self.settings = settings
        self.command = tuple(command)
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()
        self._stopped = False

    def run(self, task: str, version: str | Path) -> None:
        """Prepare ``version`` of ``task``; raises :class:`PreparationFailed`."""
        argv = [*self.command, "--threads", str(threads()), task, str(version)]
        started = time.perf_counter()
        with self._lock:
            if self._stopped:
                raise PreparationFailed(task, str(version), _STOPPED)
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                # The child logs to stderr, beside the daemon's own lines.
                stdout=subprocess.DEVNULL,
                env={**os.environ, "TQDM_DISABLE": "1"},
                preexec_fn=child_preexec(self.settings.daemon.background_niceness),
                # Its own process group: a Ctrl-C reaches the daemon, which stops this child.
                process_group=0,
            )
            self._procs.add(proc)
        log.info(
            "preparing %s %s in background process %d (nice +%d, %d threads)",
            task, version, proc.pid, self.settings.daemon.background_niceness, threads(),
        )  # fmt: skip
        try:
            # The settings travel on stdin (without the NATS section, which holds secrets).
            proc.communicate(self.settings.model_dump_json(exclude={"nats"}).encode())
        finally:
            with self._lock:
                self._procs.discard(proc)
        if proc.returncode != 0:
            if self._stopped:
                raise PreparationFailed(task, str(version), _STOPPED)
            raise PreparationFailed(
                task,
                str(version),
                f"failed (exit status {proc.returncode}; its lines in the log above say why); "
                "the gateway tries again shortly",
            )
        log.info("prepared %s %s in %.0f s", task, version, time.perf_counter() - started)

    def stop(self) -> None:
        """End every preparation still running (they resume where they stopped next time)."""
        with self._lock:
            self._stopped = True
            procs = list(self._procs)
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
