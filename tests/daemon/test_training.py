"""The daemon retrains on its own: triggers, training subprocesses, lineage and the gate.

A real nats-server, the real daemon in-process, real training subprocesses on the tiny Llama
(a few optimiser steps), a real DuckDB file.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from kaizend.core.metrics import REGISTRY
from kaizend.handlers.publish import publish_events

from tests.conftest import (
    RunningDaemon,
    event,
    eventually,
    fit_tasks,
    kaizend,
    make_settings,
    outgoing,
    rows,
    run_daemon,
)

ROOT = Path(__file__).resolve().parents[2]
TOTAL_QUERIES = "SELECT count(*) FROM query_events"


def training_settings(data_dir: Path, url: str, base: Path, **parser: Any) -> Any:
    return make_settings(
        data_dir,
        url,
        tasks={
            "parser": {
                "base_model": str(base),
                "training": {
                    "max_steps": 4,
                    "batch_size": 4,
                    "checkpoint_every": 2,
                    "threads": 1,
                    **parser,
                },
                "triggers": {"min_new_signal": 20, "cooldown_s": 0},
            }
        },
        # The tests wait for trainings with deadlines: on a busy machine one at nice 19 may
        # not run for minutes (tests/daemon/test_worker.py checks the priority itself).
        daemon={"background_niceness": 0},
        training={
            "check_interval_s": 1,
            "retry_backoff_s": 0.5,
            "heartbeat_s": 1,
            "gate_benchmark_max_examples": 8,
            "fresh_share": 0.2,
            "stop_grace_s": 5,
        },
    )


async def publish_corrections(daemon: RunningDaemon, examples: list[dict], prefix: str) -> None:
    """One parser query and its correction per example."""
    events = []
    for i, example in enumerate(examples):
        query_id = f"{prefix}-q{i}"
        events.append(outgoing("query", event("query", f"{prefix}-e{i}", query_id,
                                              text=example["text"])))  # fmt: skip
        events.append(outgoing("correction", event(
            "correction", f"{prefix}-c{i}", query_id, corrected_output=example["expected"],
            ts=f"2026-11-23T10:{i // 60:02d}:{i % 60:02d}Z",
        )))  # fmt: skip
    await publish_events(daemon.js, events)


class Background:
    """Publishes query events in small batches until stopped: ingestion during training."""

    def __init__(self, daemon: RunningDaemon) -> None:
        self.daemon = daemon
        self.sent = 0
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batch = [
                outgoing("query", event("query", f"bg-{self.sent + i}", f"bg-q{self.sent + i}"))
                for i in range(50)
            ]
            await publish_events(self.daemon.js, batch)
            self.sent += len(batch)
            await asyncio.sleep(0.2)

    async def stop(self) -> int:
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        return self.sent


async def running_job(daemon: RunningDaemon) -> dict[str, Any]:
    """The task's only job once its training subprocess runs (its pid is recorded)."""

    async def started() -> bool:
        return bool(await daemon.scalar("SELECT count(*) FROM training_jobs WHERE pid > 0"))

    await eventually(started, timeout=120, interval=0.05)
    (job,) = await rows(daemon, "SELECT * FROM training_jobs")
    return job


def checkpoint_step(run_dir: str) -> int | None:
    """The step of the checkpoint on disk (None: no checkpoint)."""
    import torch

    state = Path(run_dir, "version", "checkpoint", "state.pt")
    if not state.is_file():
        return None
    return int(torch.load(state, weights_only=False)["step"])


def _wait_stopped(pid: int) -> None:
    """SIGSTOP is delivered asynchronously: wait until the process is really stopped."""
    for _ in range(1000):
        # /proc/<pid>/stat: "pid (comm) state ...", comm may hold spaces
        if Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] in "Tt":
            return
        time.sleep(0.001)
    raise AssertionError(f"process {pid} did not stop")


def sigterm_pending(pid: int) -> bool:
    """Whether ``pid`` has a SIGTERM waiting (a stopped process takes it when continued)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, mask = line.partition(":")
        if name in ("SigPnd", "ShdPnd") and int(mask, 16) & 1 << (signal.SIGTERM - 1):
            return True
    return False


async def freeze_at_checkpoint(job: dict[str, Any], at_least: int) -> int:
    """Stop (SIGSTOP) the job's training while its checkpoint on disk holds step
    ``at_least`` or later; returns that step.

    Waiting for a step by time or by the progress in the database is not enough: the whole
    training takes seconds, so on a busy machine the loop may have ended (and removed its
    checkpoint) before the test acts. A frozen training cannot move on between the check and
    whatever the test does next.
    """
    pid, found = job["pid"], []

    def frozen() -> bool:
        os.kill(pid, signal.SIGSTOP)
        _wait_stopped(pid)
        step = checkpoint_step(job["run_dir"])
        if step is not None and step >= at_least:
            found.append(step)
            return True
        os.kill(pid, signal.SIGCONT)
        return False

    await eventually(frozen, timeout=120, interval=0.02)
    return found[0]


async def test_enough_corrections_train_register_and_gate_a_candidate_while_ingesting(
    tmp_path: Path, nats_server: Any, tiny_base: Path, small_splits: dict
) -> None:
    settings = training_settings(tmp_path / "data", nats_server.url, tiny_base)
    succeeded = {"task": "parser", "outcome": "succeeded"}
    finished_before = (
        REGISTRY.get_sample_value("kaizend_training_jobs_finished_total", succeeded) or 0.0
    )
    async with run_daemon(settings) as daemon:
        # Below the threshold: nothing happens.
        await publish_corrections(daemon, small_splits["train"][:10], "a")
        await eventually(lambda: daemon.scalar("SELECT count(*) FROM correction_events"))
        await asyncio.sleep(2.5)  # two scheduler checks
        assert await daemon.scalar("SELECT count(*) FROM training_jobs") == 0

        background = Background(daemon)
        await publish_corrections(daemon, small_splits["train"][10:30], "b")

        async def finished() -> bool:
            return (
                await daemon.scalar(
                    "SELECT count(*) FROM training_jobs WHERE state IN ('succeeded', 'failed')"
                )
                == 1
            )

        await eventually(finished, timeout=180, interval=0.5)
        sent = await background.stop()

        (job,) = await rows(daemon, "SELECT * FROM training_jobs")
        assert job["state"] == "succeeded", job["error"]
        assert job["reason"].startswith("threshold: 30 new signals >= 20")
        finished = REGISTRY.get_sample_value("kaizend_training_jobs_finished_total", succeeded)
        assert finished == finished_before + 1
        assert REGISTRY.get_sample_value("kaizend_training_duration_seconds_count", succeeded) >= 1
        assert json.loads(job["progress"])["step"] == 4
        assert json.loads(job["snapshot"]) == {
            "query_events": 30, "feedback_events": 0, "correction_events": 30,
        }  # fmt: skip

        (version,) = await rows(
            daemon, "SELECT * FROM model_versions WHERE version_id = 'parser-v1'"
        )
        assert version["training_run"] == job["run_id"] and version["parent_version"] == "parser-v0"
        assert version["status"] in ("challenger", "rejected")
        assert Path(version["artifact_path"], "adapter").is_dir()
        metrics = json.loads(version["metrics"])
        assert set(metrics["evaluation"]) == {"fresh", "benchmark"}
        assert metrics["evaluation"]["fresh"]["candidate"]["examples"] == 6  # 20% of 30
        assert metrics["evaluation"]["benchmark"]["champion"]["examples"] == 8

        # Lineage: exactly the 24 older corrections trained, the newest 6 held back.
        lineage = await rows(
            daemon, "SELECT role, count(*) AS n, min(event_id) AS first FROM training_events "
            "GROUP BY role ORDER BY role",
        )  # fmt: skip
        assert [(r["role"], r["n"]) for r in lineage] == [("fresh", 6), ("train", 24)]

        (decision,) = await rows(daemon, "SELECT * FROM gate_decisions")
        assert decision["version_id"] == "parser-v1" and decision["champion"] == "parser-v0"
        checks = json.loads(decision["checks"])
        assert {c["eval_set"] for c in checks} == {"fresh", "benchmark"}
        assert decision["passed"] == (version["status"] == "challenger")
        assert decision["reason"].split(":")[0] in version["status_reason"]

        # Ingestion went on at full pace while the model trained: every event is stored.
        async def all_stored() -> bool:
            return await daemon.scalar(TOTAL_QUERIES) == 30 + sent

        await eventually(all_stored, timeout=30)

        # No new signal since the snapshot: no second training.
        await asyncio.sleep(2.5)
        assert await daemon.scalar("SELECT count(*) FROM training_jobs") == 1

        # What operators see.
        jobs_out = await kaizend(settings, "jobs")
        assert job["job_id"] in jobs_out and "succeeded" in jobs_out and "4/4 loss" in jobs_out
        shown = await kaizend(settings, "models", "show", "parser-v1")
        for section in ("training run " + job["run_id"], "events it learned from", "fresh",
                        "evaluation", "exact_match", "offline gate", "alias history"):  # fmt: skip
            assert section in shown, section


async def test_a_failing_training_on_a_separate_worker_is_retried_and_ingestion_goes_on(
    tmp_path: Path, nats_server: Any, small_splits: dict
) -> None:
    """`kaizend worker` in its own process takes the jobs; its base model is missing, so each
    attempt raises; the daemon retries with backoff and stops after the third."""
    base = training_settings(tmp_path / "data", nats_server.url, tmp_path / "no-such-base")
    settings = base.model_copy(
        update={"training": base.training.model_copy(update={"local_worker": False})}
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "KAIZEND_NATS__URL": nats_server.url,
        # The daemon's data directory, as shared storage would give it: a worker takes only
        # jobs whose run directory lies under its own data directory's runs.
        "KAIZEND_DAEMON__DATA_DIR": str(tmp_path / "data"),
        "KAIZEND_TASKS": json.dumps(
            fit_tasks(parser={"base_model": str(tmp_path / "no-such-base")})
        ),
        "KAIZEND_TRAINING__HEARTBEAT_S": "1",
    }
    log_file = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [sys.executable, "-m", "kaizend.daemon", "worker", "--name", "gpu-box-2"],
        cwd=tmp_path, env=env, stderr=log_file.open("w"),
    )  # fmt: skip
    try:
        async with run_daemon(settings) as daemon:
            background = Background(daemon)
            await publish_corrections(daemon, small_splits["train"][:20], "a")

            async def three_failures() -> bool:
                return (
                    await daemon.scalar("SELECT count(*) FROM training_jobs WHERE state = 'failed'")
                    == 3
                )

            await eventually(three_failures, timeout=120, interval=0.5)
            sent = await background.stop()
            jobs = await rows(daemon, "SELECT * FROM training_jobs ORDER BY attempt")
            assert [j["attempt"] for j in jobs] == [1, 2, 3]
            assert {j["worker"] for j in jobs} == {"gpu-box-2"}
            assert len({j["run_id"] for j in jobs}) == 1  # the same run, retried
            assert all("does not exist" in j["error"] for j in jobs), jobs[0]["error"]
            assert jobs[1]["reason"].startswith("retry 2/3 after: BaseModelError")
            parser_versions = "SELECT count(*) FROM model_versions WHERE task = 'parser'"
            assert await daemon.scalar(parser_versions) == 1

            await asyncio.sleep(2.5)  # no fourth attempt
            assert await daemon.scalar("SELECT count(*) FROM training_jobs") == 3

            async def all_stored() -> bool:
                return await daemon.scalar(TOTAL_QUERIES) == 20 + sent

            await eventually(all_stored, timeout=30)
            assert (await daemon.status())["healthy"]

            # By hand: a new run, whatever the triggers say; asked twice, still one run (its
            # job may have failed by then: a run waiting for its retry is still in flight).
            first = await kaizend(settings, "train", "parser")
            again = await kaizend(settings, "train", "parser")
            assert first.startswith("training job parser-") and "(manual: manual)" in first
            run_of = lambda reply: reply.split()[2].rsplit(".", 1)[0]  # noqa: E731
            assert run_of(first) == run_of(again), (first, again)
            manual = await rows(daemon, "SELECT * FROM training_jobs WHERE attempt = 1 "
                                "ORDER BY requested_at")  # fmt: skip
            assert len(manual) == 2 and manual[1]["run_id"] != manual[0]["run_id"]
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    assert worker.returncode == 0, log_file.read_text()[-3000:]
    assert "training worker gpu-box-2 stopped" in log_file.read_text()


# Two trainings, each loading the model: on a loaded 2-core machine past the 300 s default.
@pytest.mark.timeout(900)
async def test_a_killed_training_fails_then_its_retry_resumes_and_registers(
    tmp_path: Path, nats_server: Any, tiny_base: Path, small_splits: dict
) -> None:
    settings = training_settings(
        tmp_path / "data", nats_server.url, tiny_base, max_steps=300, checkpoint_every=5
    )
    async with run_daemon(settings) as daemon:
        await publish_corrections(daemon, small_splits["train"][:20], "a")

        first = await running_job(daemon)
        assert first["state"] == "running", first
        checkpointed = await freeze_at_checkpoint(first, 10)
        os.kill(first["pid"], signal.SIGKILL)
        background = Background(daemon)

        async def second_attempt_done() -> bool:
            return (
                await daemon.scalar(
                    "SELECT count(*) FROM training_jobs WHERE attempt = 2 AND state <> 'running' "
                    "AND state <> 'queued'"
                )
                == 1
            )

        await eventually(second_attempt_done, timeout=240, interval=0.5)
        sent = await background.stop()
        jobs = await rows(daemon, "SELECT * FROM training_jobs ORDER BY attempt")
        assert jobs[0]["state"] == "failed" and "SIGKILL" in jobs[0]["error"]
        assert jobs[1]["state"] == "succeeded", jobs[1]["error"]
        assert jobs[1]["version_id"] == "parser-v1"
        assert json.loads(jobs[1]["progress"])["step"] == 300
        log_file = Path(jobs[1]["run_dir"], "version", "metrics.json")
        assert json.loads(log_file.read_text())["resumed_from_step"] == checkpointed >= 10

        async def all_stored() -> bool:
            return await daemon.scalar(TOTAL_QUERIES) == 20 + sent

        await eventually(all_stored, timeout=30)


# Two trainings, each loading the model: on a loaded 2-core machine past the 300 s default.
@pytest.mark.timeout(900)
async def test_a_training_stopped_with_the_daemon_resumes_from_its_checkpoint_on_restart(
    tmp_path: Path, nats_server: Any, tiny_base: Path, small_splits: dict
) -> None:
    settings = training_settings(
        tmp_path / "data", nats_server.url, tiny_base, max_steps=300, checkpoint_every=5
    )
    async with run_daemon(settings) as daemon:
        await publish_corrections(daemon, small_splits["train"][:20], "a")

        job = await running_job(daemon)
        checkpointed = await freeze_at_checkpoint(job, 10)
        stopping = asyncio.create_task(daemon.stop())
        # The frozen training keeps the daemon's SIGTERM pending; let it go on only then, so
        # the stop finds the checkpoint the test saw.
        await eventually(lambda: sigterm_pending(job["pid"]), timeout=60)
        os.kill(job["pid"], signal.SIGCONT)
        assert await stopping == 0
    with pytest.raises(ProcessLookupError):
        os.kill(job["pid"], 0)  # the training subprocess stopped with the daemon

    async with run_daemon(settings) as daemon:

        async def done() -> bool:
            return await daemon.scalar("SELECT state FROM training_jobs") == "succeeded"

        await eventually(done, timeout=240, interval=0.5)
        (again,) = await rows(daemon, "SELECT * FROM training_jobs")
        assert again["job_id"] == job["job_id"] and again["version_id"] == "parser-v1"
    metrics = json.loads(Path(job["run_dir"], "version", "metrics.json").read_text())
    assert metrics["resumed_from_step"] == checkpointed >= 10 and metrics["steps"] == 300
