"""The daemon records an offline-gate decision and the status it gives in one transaction.

A real nats-server, the real daemon in-process, a real DuckDB file. The training result is
published as a worker would publish it; the failure is injected into the one registry write
that follows the gate row (a narrowly patched `Registry.set_status`, since a disk fault
cannot be produced on demand).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest
from kaizend.handlers.jobs import JobResult, result_subject
from kaizend.storage.registry import Registry

from tests.conftest import eventually, kaizend, make_settings, rows, run_daemon


def report(per_example: list[float], sources: list[str] | None = None) -> dict[str, Any]:
    return {
        "exact_match": sum(per_example) / len(per_example), "examples": len(per_example),
        "primary_metric": "exact_match", "primary_metric_type": "binary",
        "per_example": per_example, **({"sources": sources} if sources else {}),
    }  # fmt: skip


def outcome(version_dir: Path) -> dict[str, Any]:
    """A clearly better candidate: it fixes 12 of 20 corrections, keeps 20 confirmed answers."""
    sources = ["correction"] * 20 + ["confirmed"] * 20
    benchmark = report([1.0] * 7 + [0.0])
    return {
        "version_dir": str(version_dir),
        "base_model": "tiny",
        "reports": {
            "fresh": {
                "candidate": report([1.0] * 12 + [0.0] * 8 + [1.0] * 20, sources),
                "champion": report([0.0] * 20 + [1.0] * 20, sources),
            },
            "benchmark": {"candidate": benchmark, "champion": benchmark},
        },
    }


async def test_a_failure_after_the_gate_row_rolls_both_back_and_redelivery_completes_it(
    tmp_path: Path, nats_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(
        tmp_path / "data", nats_server.url,
        training={"auto": False, "local_worker": False}, gateway={"enabled": False},
    )  # fmt: skip
    failed: list[str] = []
    set_status = Registry.set_status

    def fails_once(self: Registry, version_id: str, status: Any, reason: str) -> None:
        if version_id == "parser-v1" and not failed:
            failed.append(status)
            raise duckdb.IOException("injected: disk I/O error writing parser-v1's status")
        set_status(self, version_id, status, reason)

    monkeypatch.setattr(Registry, "set_status", fails_once)
    async with run_daemon(settings) as daemon:
        assert daemon.daemon.orchestrator is not None
        job = await daemon.daemon.orchestrator.request("parser", "manual")
        version_dir = Path(job.run_dir) / "version"
        version_dir.mkdir(parents=True)
        result = JobResult(
            job_id=job.job_id, task="parser", worker="test", attempt=job.attempt,
            snapshot=job.snapshot, succeeded=True, result=outcome(version_dir),
        )  # fmt: skip
        await daemon.js.publish(
            result_subject(settings.training), result.model_dump_json().encode()
        )

        await eventually(lambda: bool(failed), timeout=30)
        # Rolled back with the failed status change: no decision without its status. (The
        # result is redelivered 5 s after the failure.)
        assert failed == ["challenger"]
        assert await daemon.scalar("SELECT count(*) FROM gate_decisions") == 0
        assert await daemon.scalar(
            "SELECT status FROM model_versions WHERE version_id = 'parser-v1'"
        ) == "candidate"  # fmt: skip

        async def challenger() -> bool:
            status = await daemon.scalar(
                "SELECT status FROM model_versions WHERE version_id = 'parser-v1'"
            )
            return status == "challenger"

        await eventually(challenger, timeout=60, interval=0.2)
        (decision,) = await rows(daemon, "SELECT * FROM gate_decisions")
        assert decision["passed"] and decision["version_id"] == "parser-v1"
        assert decision["fresh_examples"] == 40 and decision["decided_on"] == "fresh"
        assert decision["test"] == "mcnemar_exact"
        assert decision["p_value"] == pytest.approx(0.5**12)
        (current,) = await rows(
            daemon, "SELECT version_id FROM current_aliases WHERE alias = 'challenger'"
        )
        assert current["version_id"] == "parser-v1"

        async def job_succeeded() -> bool:
            state = await daemon.scalar(
                f"SELECT state FROM training_jobs WHERE job_id = '{job.job_id}'"
            )
            return state == "succeeded"

        await eventually(job_succeeded, timeout=30)

        shown = await kaizend(settings, "models", "show", "parser-v1")
        gate = shown[shown.index("offline gate:") :]
        for column in ("fresh_examples", "decided_on", "test", "p_value"):
            assert column in gate, column
        assert "mcnemar_exact" in gate and "0.0002" in gate and " 40 " in gate
