"""Loading versions for the inference gateway: each task's predictor, as configured.

The gateway (`handlers.gateway`) knows versions only by id and artifact directory (from the
routing entry); this module turns them into `models.task.Predictor` objects through the task
interface, in the gateway's loading thread. A task whose first load of a version does slow,
persistent work (``slow_first_load``: the retriever builds the version's vector index) has
that first load run in a background process (`daemon.background.Preparations`), at a lower
CPU priority, before the gateway's own: an index build never competes with ingestion for the
CPU, and the daemon's load finds the index complete.
"""

from __future__ import annotations

from pathlib import Path

from kaizend.core.config import Settings
from kaizend.core.paths import confined
from kaizend.daemon.background import Preparations
from kaizend.handlers.gateway import Predictor, PredictorLoader
from kaizend.models.tasks import build_task


def predictor_loader(
    settings: Settings, preparations: Preparations | None = None
) -> PredictorLoader:
    """The gateway's loader: ``(task, version_id, artifact) -> Predictor``; a slow first load
    runs in ``preparations`` first (None: in the loading thread)."""
    tasks = {}

    def load(task: str, version_id: str, artifact: str | None) -> Predictor:
        if artifact:
            # The routing bucket names the directory: only versions the daemon trained.
            artifact = str(confined(artifact, settings.runs_path, key=f"routing {version_id}"))
        if task not in tasks:
            if settings.gateway.threads is not None and not tasks:
                import torch

                torch.set_num_threads(settings.gateway.threads)  # once, for the process
            tasks[task] = build_task(settings, task)
        built = tasks[task]
        if artifact and settings.gateway.backend == "ollama":
            remote = built.remote_predictor(settings, Path(artifact), version_id)
            if remote is not None:
                return remote
        version = Path(artifact) if artifact else built.builtin_version
        if preparations is not None and built.slow_first_load:
            preparations.run(task, version)
        return built.load(version)

    return load


async def run_gateway(settings: Settings) -> int:
    """``kaizend gateway``: serve ``kaizen.infer.<task>`` from this box until SIGTERM/SIGINT.

    More instances join the same queue group, so requests spread over them. The versions'
    directories must be readable at the paths the routing entries name (shared storage).
    """
    import asyncio

    from kaizend.daemon.runtime import connect_beside_daemon, on_stop_signals
    from kaizend.handlers.gateway import Gateway
    from kaizend_client import Producer

    broker = await connect_beside_daemon(settings, "kaizend-gateway", "serve on", "daemon")
    if broker is None:
        return 1
    preparations = Preparations(settings)
    stop = asyncio.Event()
    on_stop_signals(stop.set)
    producer = await Producer.start(
        broker.connection,
        subject_prefix=settings.stream.subject_prefix,
        service="gateway",
        bucket=settings.routing.bucket,
    )
    gateway = Gateway(
        settings.gateway,
        broker.connection,
        producer,
        predictor_loader(settings, preparations),
        settings.served_tasks,
    )
    try:
        await gateway.start()
        await stop.wait()
    finally:
        await asyncio.to_thread(preparations.stop)
        await gateway.stop(grace_s=settings.daemon.shutdown_grace_s)
        await producer.stop()
        await broker.stop()
    return 0
