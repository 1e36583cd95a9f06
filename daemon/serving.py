"""Loading versions for the inference gateway: each task's predictor, as configured.

The gateway (`handlers.gateway`) knows versions only by id and artifact directory (from the
routing entry); this module turns them into `models.task.Predictor` objects through the task
interface, in the gateway's loading thread.
"""

from __future__ import annotations

from pathlib import Path

from kaizend.core.config import Settings
from kaizend.core.paths import confined
from kaizend.handlers.gateway import Predictor, PredictorLoader
from kaizend.models.tasks import build_task


def predictor_loader(settings: Settings) -> PredictorLoader:
    """The gateway's loader: ``(task, version_id, artifact) -> Predictor``."""
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
        return built.load(Path(artifact) if artifact else built.builtin_version)

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
        predictor_loader(settings),
        settings.served_tasks,
    )
    try:
        await gateway.start()
        await stop.wait()
    finally:
        await gateway.stop(grace_s=settings.daemon.shutdown_grace_s)
        await producer.stop()
        await broker.stop()
    return 0
