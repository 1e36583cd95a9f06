"""The training subprocess: one attempt of one run, reported as JSON lines on stdout.

``python -m kaizend.daemon.training_job --settings SETTINGS.json [--halve-batch] SPEC.json``

``SETTINGS.json`` is the worker's configuration (without its NATS section): the training runs
with exactly the settings of the process that took the job.

Each stdout line is one JSON object: ``{"type": "phase", "phase": ...}``,
``{"type": "progress", "step": ..., "total_steps": ..., "loss": ..., "eta_s": ...}``, then
``{"type": "result", "result": {...}}`` or ``{"type": "error", "error": ..., "out_of_memory":
...}``. Everything else a library might print goes to stderr with the logs. Exit status: 0
done, 1 failed, 3 out of memory, 4 failed in a way a retry cannot help (not enough signal).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

EXIT_FAILED = 1
EXIT_OUT_OF_MEMORY = 3
EXIT_NOT_RETRYABLE = 4

log = logging.getLogger("kaizend.daemon.training_job")


def is_out_of_memory(err: BaseException) -> bool:
    """CUDA's OutOfMemoryError, Python's MemoryError, or torch's CPU allocator failing."""
    if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError":
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


def _protocol_channel() -> TextIO:
    """Keep the real stdout for protocol lines; point fd 1 and sys.stdout at stderr."""
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return channel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kaizend.daemon.training_job")
    parser.add_argument("--settings", type=Path, required=True)
    parser.add_argument("--halve-batch", action="store_true")
    parser.add_argument("spec", type=Path)
    args = parser.parse_args(argv)
    channel = _protocol_channel()

    def emit(kind: str, **fields: Any) -> None:
        channel.write(json.dumps({"type": kind, **fields}, default=str) + "\n")

    from kaizend.core.config import Settings
    from kaizend.core.errors import PathOutsideRoot
    from kaizend.core.paths import confined
    from kaizend.daemon.logs import setup_logging
    from kaizend.handlers.jobs import JobSpec
    from kaizend.models.task import NotEnoughSignal
    from kaizend.models.tasks import build_task
    from kaizend.models.training import run_training

    try:
        settings = Settings.model_validate_json(args.settings.read_text())
        setup_logging(settings.daemon.log_level)
        spec = JobSpec.model_validate_json(args.spec.read_text())
        spec.checked_run_dir(settings.runs_path)
        artifact = spec.champion.artifact
        builtin = build_task(settings, spec.task).builtin_version
        champion = (
            artifact
            if artifact == builtin
            else confined(artifact, settings.runs_path, key="job.champion.artifact")
        )
        task = build_task(settings, spec.task, serving=champion, halve_batch=args.halve_batch)
        result = run_training(
            task,
            snapshot_dir=Path(spec.snapshot_dir),
            version_dir=Path(spec.version_dir),
            champion=champion,
            fresh_share=spec.fresh_share,
            benchmark_max_examples=spec.benchmark_max_examples,
            progress=lambda report: emit("progress", **asdict(report)),
            phase=lambda name: emit("phase", phase=name),
        )
    except (NotEnoughSignal, PathOutsideRoot) as err:
        emit("error", error=str(err), out_of_memory=False, retryable=False)
        return EXIT_NOT_RETRYABLE
    except BaseException as err:  # noqa: BLE001 - reported to the worker, then exit non-zero
        out_of_memory = is_out_of_memory(err)
        traceback.print_exc(file=sys.stderr)
        emit("error", error=f"{type(err).__name__}: {err}", out_of_memory=out_of_memory)
        return EXIT_OUT_OF_MEMORY if out_of_memory else EXIT_FAILED
    emit("result", result=result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
