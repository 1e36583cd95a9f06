"""Drift reports in the running daemon: events over NATS -> a report on the schedule -> stored
rows and views -> a training triggered by the drift; the same numbers on /metrics and in
`kaizend drift`, and a report on demand.

A real nats-server, the daemon in-process, a real DuckDB file, the tiny embedder.
"""

from __future__ import annotations

import random
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kaizend.handlers.publish import publish_events
from kaizend.models.fit.querygen import generate_examples

from tests.conftest import event, eventually, make_settings, outgoing, run_daemon
from tests.daemon.test_app import free_port
from tests.daemon.test_training import kaizend, rows
from tests.models.retriever.conftest import build_tiny_model

SHIFTED = ("Hydro", "Anaerobic digestion")


@pytest.fixture(scope="module")
def tiny_embedder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-embedder"))


def traffic(now: datetime) -> list[Any]:
    """Parser queries of four days ago (solar and wind) and of the last hours (hydro, AD)."""
    rng = random.Random(5)
    examples = generate_examples(seed=2)
    usual = [e for e in examples if e["expected"].get("technology") in ("Wind", "Photovoltaic")]
    shifted = [e for e in examples if e["expected"].get("technology") in SHIFTED]
    events = []
    for number in range(240):
        recent = number % 2 == 1
        example = rng.choice(shifted if recent else usual)
        ts = now - (timedelta(hours=rng.uniform(1, 20)) if recent
                    else timedelta(days=4, hours=rng.uniform(0, 20)))  # fmt: skip
        events.append(outgoing("query", event(
            "query", f"e{number}", f"q{number}", ts=ts.isoformat(), text=example["text"],
            model_version="parser-v0", arm="champion", output=example["expected"],
        )))  # fmt: skip
    return events


def metric(page: str, name: str, **labels: str) -> float:
    """The value of one sample on a /metrics page (parsed with prometheus-client)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    raise AssertionError(f"{name}{labels} not on /metrics")


async def test_drift_in_published_traffic_is_reported_stored_and_triggers_a_training(
    tmp_path: Path, nats_server: Any, tiny_embedder: Path
) -> None:
    port = free_port()
    settings = make_settings(
        tmp_path / "data", nats_server.url,
        drift={"interval_s": 2, "min_samples": 30},
        tasks={
            "retriever": {"base_model": str(tiny_embedder)},
            "parser": {"triggers": {"min_new_signal": 100_000, "cooldown_s": 0}},
        },
        metrics={"port": port, "lag_interval_s": 1},
        # No worker: the triggered job stays queued, where the test can see it.
        training={"local_worker": False},
    )  # fmt: skip
    async with run_daemon(settings) as daemon:
        await publish_events(daemon.js, traffic(datetime.now(UTC)))
        # Two messages that cannot be stored: a query without a text, an unknown kind.
        await daemon.js.publish("kaizen.events.query", b'{"event_id": "bad", "query_id": "x"}')
        await daemon.js.publish("kaizen.events.click", b"{}")
        await eventually(lambda: daemon.scalar("SELECT count(*) = 240 FROM query_events"))
        await eventually(lambda: daemon.scalar("SELECT count(*) = 2 FROM rejected_events"))

        async def drifted_report() -> bool:
            return await daemon.scalar(
                "SELECT count(*) FROM drift_reports WHERE task = 'parser' AND input_drift"
            )

        await eventually(drifted_report, timeout=90, interval=0.5)
        (report,) = await rows(daemon, (
            "SELECT * FROM drift_reports WHERE task = 'parser' AND input_drift "
            "ORDER BY created_at LIMIT 1"
        ))  # fmt: skip
        assert report["trigger"] == "schedule"
        assert report["reference"] == "past window (parser-v0 has no training run)"
        assert (report["n_reference"], report["n_current"]) == (120, 120)
        checks = await rows(daemon, f"SELECT * FROM drift_checks WHERE report_id = "
                                    f"'{report['report_id']}'")  # fmt: skip
        by_check = {(c["kind"], c["field"], c["method"]): c for c in checks}
        technology = by_check[("input", "technology", "chi2")]
        assert technology["drifted"] and technology["decisive"]
        assert technology["score"] < technology["threshold"]
        auc = by_check[("input", "embedding", "domain_auc")]
        assert auc["score"] is not None and auc["n_current"] == 120  # the tiny embedder ran
        assert ("performance", "success_rate", "cusum") in by_check
        assert {f for k, f, _ in by_check if k == "volume"} == {"query", "feedback", "correction"}

        # Acting on it: a training of the parser, queued for the drift.
        (job,) = await rows(daemon, "SELECT * FROM training_jobs")
        assert job["task"] == "parser" and job["state"] == "queued"
        assert job["reason"].startswith("drift: ") and "technology chi2" in job["reason"]
        assert report["action"] == f"training {job['job_id']} queued"
        # The retriever had no traffic: its checks were skipped and nothing was queued for it.
        assert not await daemon.scalar(
            "SELECT count(*) FROM drift_reports WHERE task = 'retriever' AND input_drift"
        )

        # The views operators read.
        latest = await rows(daemon, "SELECT * FROM latest_drift WHERE task = 'parser' AND "
                                    "kind = 'input' AND drifted AND decisive")  # fmt: skip
        assert "technology" in {c["field"] for c in latest}
        (quality,) = await rows(daemon, "SELECT * FROM daily_quality_at(3600) "
                                        "WHERE model_version = 'parser-v0' LIMIT 1")  # fmt: skip
        assert quality["queries"] >= 1 and quality["success_rate"] == 0.0  # no feedback at all

        # The same on /metrics.
        async def scraped() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as page:
                return page.read().decode()

        page = await scraped()
        assert metric(page, "kaizend_events_ingested_total", kind="query") >= 240
        assert metric(page, "kaizend_events_rejected_total", kind="query") >= 1
        assert metric(page, "kaizend_events_rejected_total", kind="unknown") >= 1
        assert metric(page, "kaizend_batch_commit_seconds_count") >= 1
        assert metric(page, "kaizend_drift_detected", task="parser") == 1.0
        assert metric(page, "kaizend_drift_score", task="parser", field="technology",
                      method="chi2") < 0.01  # fmt: skip
        assert metric(page, "kaizend_drift_reports_total", task="parser") >= 1
        assert metric(page, "kaizend_consumer_pending_messages") == 0.0
        await daemon.daemon.orchestrator.check()
        page = await scraped()
        assert metric(page, "kaizend_training_jobs", task="parser", state="queued") == 1.0

        # What operators see, through the daemon (it holds the file).
        shown = await kaizend(settings, "drift", "parser")
        assert "INPUT DRIFT" in shown and "DRIFT" in shown and "technology" in shown
        on_demand = await kaizend(settings, "drift", "--run", "parser")
        assert "parser" in on_demand and f"training {job['job_id']} queued" in on_demand
        assert await daemon.scalar("SELECT count(*) FROM drift_reports WHERE trigger = 'manual'")
        # Still one job: the drift trigger never queues a second one while one is in flight.
        assert await daemon.scalar("SELECT count(*) FROM training_jobs") == 1
