"""The training-job plane on NATS: what the daemon and the workers say to each other.

- ``<training.subject_prefix>.train``: a queued job (`JobSpec`), in the work-queue stream
  ``training.stream``; every worker pulls from one shared durable consumer, one job at a time,
  so each job is trained once, and a job whose worker vanished is redelivered.
- ``<training.subject_prefix>.result``: how a job ended (`JobResult`), in the same stream,
  consumed durably by the daemon, so a result survives a daemon restart.
- ``training.status_subject``: progress of running jobs (`JobStatus`), core NATS: lost
  when nobody listens, which is fine for progress.

Artifacts (the snapshot of events and the version directory) live on the filesystem under
the job's ``run_dir``; a worker on another machine needs that path on shared storage.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from kaizend.core.config import TrainingSettings
from kaizend.core.paths import confined
from kaizend.handlers.streams import ensure_stream
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from pydantic import BaseModel, ConfigDict


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ChampionRef(_Message):
    version_id: str
    artifact: str
    """The version directory, or the task's built-in version name."""


class JobSpec(_Message):
    """Everything a worker needs to run one attempt of a training run."""

    job_id: str
    run_id: str
    task: str
    attempt: int
    run_dir: str
    champion: ChampionRef
    fresh_share: float
    benchmark_max_examples: int
    timeout_s: float
    snapshot: dict[str, int] | None = None
    """Rows per table of the snapshot the daemon exported; the result echoes it."""

    def checked_run_dir(self, runs: Path) -> Path:
        """The run directory, resolved, when it lies under ``runs``; else `PathOutsideRoot`
        (a job naming a directory elsewhere is not the daemon's)."""
        return confined(self.run_dir, runs, key="job.run_dir")

    @property
    def snapshot_dir(self) -> str:
        return f"{self.run_dir}/snapshot"

    @property
    def version_dir(self) -> str:
        return f"{self.run_dir}/version"


class JobStatus(_Message):
    job_id: str
    task: str
    state: Literal["started", "progress", "phase", "interrupted"]
    worker: str
    pid: int | None = None
    phase: str | None = None
    progress: dict[str, Any] | None = None
    at: datetime | None = None


class JobResult(_Message):
    job_id: str
    task: str
    worker: str
    attempt: int | None = None
    snapshot: dict[str, int] | None = None
    """The job's attempt and snapshot, echoed: the daemon checks them against its queue."""
    succeeded: bool
    error: str | None = None
    out_of_memory: bool = False
    retryable: bool = True
    """False when trying again cannot help (too little signal in the snapshot)."""
    result: dict[str, Any] | None = None
    """On success: ``version_dir``, ``training`` metrics, ``reports`` per evaluation set,
    ``event_ids`` / ``fresh_event_ids`` by kind, ``skipped``, ``batch_size``."""


RESULTS_CONSUMER = "kaizend-results"
"""The daemon's durable consumer of ``<prefix>.result``."""


def train_subject(settings: TrainingSettings) -> str:
    return f"{settings.subject_prefix}.train"


def result_subject(settings: TrainingSettings) -> str:
    return f"{settings.subject_prefix}.result"


async def ensure_jobs_stream(
    js: JetStreamContext, settings: TrainingSettings, *, owner: bool = False
) -> None:
    """Create the work-queue stream of jobs and results if it does not exist; the daemon
    (``owner``) also brings its replicas to ``training.stream_replicas``, a worker leaves an
    existing stream as it is."""
    config = StreamConfig(
        name=settings.stream,
        subjects=[train_subject(settings), result_subject(settings)],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        duplicate_window=3600.0,
        num_replicas=settings.stream_replicas,
    )
    await ensure_stream(js, config, key="training.stream_replicas", check_replicas=owner)
