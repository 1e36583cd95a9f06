"""A queued job whose publish failed never blocks its task: published again, or failed.

The failure is real: the jobs stream stops capturing the train subject (its subjects are
updated to the result subject alone), so JetStream has no stream for the daemon's publish
and answers with no responders; putting the subject back is the recovery.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from kaizend.core.config import TrainingSettings
from kaizend.handlers.jobs import result_subject, train_subject
from pydantic import ValidationError

from tests.conftest import RunningDaemon, eventually, rows, run_daemon
from tests.daemon.test_training import publish_corrections, training_settings


async def capture_train_subject(daemon: RunningDaemon, capture: bool) -> None:
    """Make the jobs stream capture the train subject again (``capture``) or stop it."""
    training = daemon.daemon.settings.training
    config = (await daemon.js.stream_info(training.stream)).config
    config.subjects = [result_subject(training)] + ([train_subject(training)] if capture else [])
    await daemon.js.update_stream(config)


async def jobs(daemon: RunningDaemon) -> list[dict[str, Any]]:
    return await rows(daemon, "SELECT * FROM training_jobs ORDER BY attempt")


async def test_a_job_whose_publish_failed_is_published_again_and_trains(
    tmp_path: Path, nats_server: Any, tiny_base: Path, small_splits: dict, caplog: Any
) -> None:
    settings = training_settings(tmp_path / "data", nats_server.url, tiny_base)
    async with run_daemon(settings) as daemon:
        await capture_train_subject(daemon, False)
        await publish_corrections(daemon, small_splits["train"][:20], "a")

        async def queued_unpublished() -> bool:
            found = await jobs(daemon)
            return len(found) == 1 and found[0]["published_at"] is None

        await eventually(queued_unpublished, timeout=60)
        await asyncio.sleep(3 * settings.training.check_interval_s)  # checks come and go
        (stuck,) = await jobs(daemon)
        assert stuck["state"] == "queued" and stuck["published_at"] is None, stuck
        assert "NOT on the work queue" in caplog.text

        await capture_train_subject(daemon, True)

        async def trained() -> bool:
            return [job["state"] for job in await jobs(daemon)] == ["succeeded"]

        await eventually(trained, timeout=120, interval=0.5)
        (job,) = await jobs(daemon)
        assert job["job_id"] == stuck["job_id"] and job["published_at"] is not None
        assert job["version_id"] == "parser-v1"
        assert f"training {job['job_id']} published after" in caplog.text


async def test_a_job_that_cannot_be_published_in_time_fails_and_the_task_trains_again(
    tmp_path: Path, nats_server: Any, tiny_base: Path, small_splits: dict
) -> None:
    settings = training_settings(tmp_path / "data", nats_server.url, tiny_base)
    settings = settings.model_copy(
        update={"training": settings.training.model_copy(update={"publish_timeout_s": 2.0})}
    )
    async with run_daemon(settings) as daemon:
        await capture_train_subject(daemon, False)
        await publish_corrections(daemon, small_splits["train"][:20], "a")

        async def first_failed() -> bool:
            found = await jobs(daemon)
            return bool(found) and found[0]["state"] == "failed"

        await eventually(first_failed, timeout=60)
        first = (await jobs(daemon))[0]
        assert first["published_at"] is None and first["retryable"] is True
        assert "not published to the work queue within 2 s" in first["error"]
        assert "training.publish_timeout_s" in first["error"]

        await capture_train_subject(daemon, True)

        async def trained_again() -> bool:
            return any(job["state"] == "succeeded" for job in await jobs(daemon))

        await eventually(trained_again, timeout=120, interval=0.5)
        retried = (await jobs(daemon))[-1]
        assert retried["run_id"] == first["run_id"] and retried["attempt"] >= 2
        assert retried["version_id"] == "parser-v1"


@pytest.mark.parametrize("value", [0, 3601])
def test_the_publish_timeout_stays_within_the_duplicate_window(value: float) -> None:
    with pytest.raises(ValidationError, match="publish_timeout_s"):
        TrainingSettings(publish_timeout_s=value)
