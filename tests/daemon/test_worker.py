"""The training worker against a real nats-server, with stand-in training programs.

The programs speak the training subprocess's protocol (JSON lines on stdout, exit status),
so the worker's handling of out-of-memory errors and timeouts is exercised without a model.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import nats
import pytest
from kaizend.daemon.worker import Worker
from kaizend.handlers.jobs import (
    ChampionRef,
    JobResult,
    JobSpec,
    ensure_jobs_stream,
    result_subject,
)

from tests.conftest import make_settings

OOM_UNLESS_HALVED = """
import json, sys
if "--halve-batch" in sys.argv:
    print(json.dumps({"type": "progress", "step": 1, "total_steps": 1, "loss": 0.5}))
    print(json.dumps({"type": "result", "result": {"version_dir": "v", "halved": True}}))
    sys.exit(0)
print(json.dumps({"type": "error", "error": "OutOfMemoryError: CUDA out of memory",
                  "out_of_memory": True}))
sys.exit(3)
"""

HANGS = "import time\ntime.sleep(600)\n"


async def run_one_job(
    tmp_path: Path,
    url: str,
    program: str,
    timeout_s: float,
    *,
    run_dir: Path | None = None,
    job: str = "parser-run.1",
) -> JobResult:
    """Queue one job (in ``run_dir``, default under the runs), let a worker running
    ``program`` take it, and return its result."""
    script = tmp_path / "program.py"
    script.write_text(program)
    settings = make_settings(tmp_path / "data", url, training={"heartbeat_s": 1})
    nc = await nats.connect(url)
    js = nc.jetstream()
    await ensure_jobs_stream(js, settings.training)
    results = await js.pull_subscribe(
        result_subject(settings.training), durable="test", stream=settings.training.stream
    )
    run_dir = run_dir or settings.runs_path / "parser-run"
    run_dir.mkdir(parents=True, exist_ok=True)
    spec = JobSpec(
        job_id=job, run_id=job.rsplit(".", 1)[0], task="parser", attempt=1,
        run_dir=str(run_dir), champion=ChampionRef(version_id="parser-v0", artifact="rules"),
        fresh_share=0.2, benchmark_max_examples=0, timeout_s=timeout_s,
    )  # fmt: skip
    await js.publish("kaizen.jobs.train", spec.model_dump_json().encode())
    worker = Worker(settings, nc, name="test-box", command=[sys.executable, str(script)])
    running = asyncio.create_task(worker.run())
    try:
        (msg,) = await results.fetch(1, timeout=30)
        await msg.ack()
        return JobResult.model_validate_json(msg.data)
    finally:
        await worker.stop()
        await running
        await nc.close()


async def test_out_of_memory_is_retried_at_once_with_half_the_batch(
    tmp_path: Path, nats_server: Any
) -> None:
    result = await run_one_job(tmp_path, nats_server.url, OOM_UNLESS_HALVED, timeout_s=60)
    assert result.succeeded and result.result == {"version_dir": "v", "halved": True}
    assert result.worker == "test-box"


@pytest.mark.timeout(60)
async def test_a_training_past_its_timeout_is_stopped_and_failed(
    tmp_path: Path, nats_server: Any
) -> None:
    result = await run_one_job(tmp_path, nats_server.url, HANGS, timeout_s=1.5)
    assert not result.succeeded and result.error == "timed out after 2 s"
    assert result.retryable


REPORTS_NICENESS = """
import json, os
print(json.dumps({"type": "result", "result": {"niceness": os.nice(0)}}))
"""


async def test_the_training_runs_below_the_daemons_priority(
    tmp_path: Path, nats_server: Any
) -> None:
    result = await run_one_job(tmp_path, nats_server.url, REPORTS_NICENESS, timeout_s=60)
    assert result.succeeded
    # The shipped background_niceness, 19, relative to this process, at most 19.
    assert result.result == {"niceness": min(os.nice(0) + 19, 19)}
