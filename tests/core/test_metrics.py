"""The Prometheus metrics: the endpoint, and the dashboard and alert rules in docs/ naming only
metrics kaizend exports."""

from __future__ import annotations

import json
import logging
import re
import socket
import urllib.request
from pathlib import Path

import pytest
import yaml
from kaizend.core import metrics

ROOT = Path(__file__).resolve().parents[2]
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def exported_names() -> set[str]:
    """Every series name kaizend's registry can produce (labelled ones before any sample)."""
    names = set()
    for family in metrics.REGISTRY.collect():
        names.add(family.name)
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    return names


def used_names(text: str) -> set[str]:
    return set(re.findall(r"\bkaizend_[a-z0-9_]+", text))


def test_the_dashboard_and_alert_rules_use_only_exported_metrics() -> None:
    dashboard = json.loads((ROOT / "docs/grafana-dashboard.json").read_text())
    expressions = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    rules = yaml.safe_load((ROOT / "docs/prometheus-alerts.yml").read_text())
    alerts = " ".join(r["expr"] for g in rules["groups"] for r in g["rules"])
    used = used_names(expressions) | used_names(alerts)
    assert used - exported_names() == set()
    # Every metric the issue asks for has a panel.
    for name in (
        "kaizend_events_ingested_total",
        "kaizend_events_rejected_total",
        "kaizend_consumer_pending_messages",
        "kaizend_batch_commit_seconds_bucket",
        "kaizend_training_jobs",
        "kaizend_training_duration_seconds_bucket",
        "kaizend_experiment_step",
        "kaizend_experiment_success_rate",
        "kaizend_serving_latency_seconds_bucket",
        "kaizend_serving_fallbacks_total",
    ):
        assert name in used_names(expressions), name  # fmt: skip
    names = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert {"KaizendChampionBelowPromotionLevel", "KaizendConsumerLagGrowing",
            "KaizendTrainingFailedTwice"} <= names  # fmt: skip


def test_the_endpoint_serves_kaizends_registry_on_loopback() -> None:
    server = metrics.serve_metrics("127.0.0.1", _free_port())
    assert server is not None
    try:
        metrics.SERVING_LATENCY_SECONDS.labels("parser", "parser-v1").observe(0.12)
        metrics.SERVING_FALLBACKS.labels("parser", "parser-v1").inc()
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics") as reply:
            page = reply.read().decode()
    finally:
        server.stop()
    assert (
        'kaizend_serving_latency_seconds_bucket{le="0.25",task="parser",version="parser-v1"}'
        in (page)
    )
    assert 'kaizend_serving_fallbacks_total{task="parser",version="parser-v1"}' in page
    assert "process_cpu_seconds_total" in page
    assert metrics.serve_metrics("127.0.0.1", 0) is None  # 0: no endpoint


def test_a_busy_port_is_logged_and_the_daemon_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with caplog.at_level(logging.ERROR):
            assert metrics.serve_metrics("127.0.0.1", busy.getsockname()[1]) is None
    assert "set metrics.port to a free port" in caplog.text


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
