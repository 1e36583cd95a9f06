"""Every Prometheus metric kaizend exports, defined once, and the /metrics endpoint.

The objects live here, in the lowest package, so that handlers (ingest), models and the
daemon (orchestrator, experiments, drift reports) and the inference gateway all update the
same ones. They are registered in kaizend's own `REGISTRY` (with the process and Python
collectors), never in prometheus-client's global one, so nothing a library registers leaks
into kaizend's page. Names follow Prometheus conventions: ``_total`` counters, base units
(seconds), labels of bounded cardinality (task, kind, version, state).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry()
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.register(_collector)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_TRAINING_BUCKETS = (60, 300, 600, 1200, 1800, 3600, 7200, 14400, 21600, 43200)

# -- ingest (handlers/ingest.py) -------------------------------------------------------------

EVENTS_INGESTED = Counter(
    "kaizend_events_ingested_total",
    "Events committed to DuckDB, by kind (query, feedback, correction).",
    ["kind"],
    registry=REGISTRY,
)
EVENTS_REJECTED = Counter(
    "kaizend_events_rejected_total",
    "Messages stored in rejected_events instead, by the kind their subject names "
    "(unknown for a subject outside the event kinds).",
    ["kind"],
    registry=REGISTRY,
)
BATCH_COMMIT_SECONDS = Histogram(
    "kaizend_batch_commit_seconds",
    "Time to commit one (group of) ingest batch(es) to DuckDB.",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
STORAGE_FAILURES = Counter(
    "kaizend_storage_failures_total",
    "Batches the store could not commit (redelivered later).",
    registry=REGISTRY,
)
CONSUMER_PENDING = Gauge(
    "kaizend_consumer_pending_messages",
    "Events in the stream not yet delivered to the ingest consumer (the lag).",
    registry=REGISTRY,
)
CONSUMER_ACK_PENDING = Gauge(
    "kaizend_consumer_ack_pending_messages",
    "Events delivered to the ingest consumer and not yet acknowledged (not yet committed).",
    registry=REGISTRY,
)

# -- training (daemon/orchestrator.py) -------------------------------------------------------

TRAINING_JOBS = Gauge(
    "kaizend_training_jobs",
    "Training jobs in the training_jobs table, by task and state.",
    ["task", "state"],
    registry=REGISTRY,
)
TRAINING_JOBS_FINISHED = Counter(
    "kaizend_training_jobs_finished_total",
    "Training jobs that finished, by task and outcome (succeeded, failed).",
    ["task", "outcome"],
    registry=REGISTRY,
)
TRAINING_DURATION_SECONDS = Histogram(
    "kaizend_training_duration_seconds",
    "Wall time of finished training jobs, from start to result, by task and outcome.",
    ["task", "outcome"],
    buckets=_TRAINING_BUCKETS,
    registry=REGISTRY,
)

# -- experiments (daemon/experiments.py) -----------------------------------------------------

EXPERIMENT_STEP = Gauge(
    "kaizend_experiment_step",
    "Ramp step of the task's running experiment (0: none running).",
    ["task"],
    registry=REGISTRY,
)
EXPERIMENT_CHALLENGER_SHARE = Gauge(
    "kaizend_experiment_challenger_share",
    "Share of the task's traffic routed to the challenger (0: no experiment).",
    ["task"],
    registry=REGISTRY,
)
EXPERIMENT_UNITS = Gauge(
    "kaizend_experiment_units",
    "Units of the current step per arm (champion, challenger).",
    ["task", "arm"],
    registry=REGISTRY,
)
EXPERIMENT_SUCCESS_RATE = Gauge(
    "kaizend_experiment_success_rate",
    "Success rate of the current step per arm (positive feedback, no correction).",
    ["task", "arm"],
    registry=REGISTRY,
)

# -- serving (the inference gateway calls these) ---------------------------------------------

SERVING_LATENCY_SECONDS = Histogram(
    "kaizend_serving_latency_seconds",
    "Time to answer one inference request, by task and model version.",
    ["task", "version"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
SERVING_REQUESTS = Counter(
    "kaizend_serving_requests_total",
    "Inference requests answered, by task and model version.",
    ["task", "version"],
    registry=REGISTRY,
)
SERVING_FALLBACKS = Counter(
    "kaizend_serving_fallbacks_total",
    "Answers where the model's output was invalid and the fallback answered instead.",
    ["task", "version"],
    registry=REGISTRY,
)
SERVING_ERRORS = Counter(
    "kaizend_serving_errors_total",
    "Inference requests answered with an error, by task, version and code (503, 500).",
    ["task", "version", "code"],
    registry=REGISTRY,
)

# -- drift reports (daemon/drift.py) ---------------------------------------------------------

DRIFT_SCORE = Gauge(
    "kaizend_drift_score",
    "Score of the newest deciding input-drift check, by task, field and method.",
    ["task", "field", "method"],
    registry=REGISTRY,
)
DRIFT_THRESHOLD = Gauge(
    "kaizend_drift_threshold",
    "Threshold the score is compared with (p-value methods: drift below it).",
    ["task", "field", "method"],
    registry=REGISTRY,
)
DRIFT_DETECTED = Gauge(
    "kaizend_drift_detected",
    "1 when the task's newest report found input drift, else 0.",
    ["task"],
    registry=REGISTRY,
)
DRIFT_REPORTS = Counter(
    "kaizend_drift_reports_total",
    "Drift reports computed, by task.",
    ["task"],
    registry=REGISTRY,
)
CHAMPION_SUCCESS_RATE = Gauge(
    "kaizend_champion_success_rate",
    "The champion's success rate over the newest report's current window (settled units).",
    ["task", "version"],
    registry=REGISTRY,
)
CHAMPION_BASELINE_SUCCESS_RATE = Gauge(
    "kaizend_champion_baseline_success_rate",
    "The champion's success rate at promotion (the CUSUM's in-control level).",
    ["task", "version"],
    registry=REGISTRY,
)
PERFORMANCE_CUSUM = Gauge(
    "kaizend_performance_cusum",
    "The champion's success-rate CUSUM statistic at the newest report.",
    ["task", "version"],
    registry=REGISTRY,
)
PERFORMANCE_ALARM = Gauge(
    "kaizend_performance_alarm",
    "1 while the champion's success rate is significantly below its level at promotion.",
    ["task", "version"],
    registry=REGISTRY,
)


@dataclass
class MetricsServer:
    """The running /metrics endpoint (a daemon thread of prometheus-client's WSGI server)."""

    server: Any
    thread: Any

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve_metrics(host: str, port: int) -> MetricsServer | None:
    """Serve `REGISTRY` on http://host:port/metrics; None when ``port`` is 0 (disabled).

    A port that cannot be bound is logged as an error and the daemon runs on without the
    endpoint: ingesting matters more than being scraped (alert on Prometheus' ``up``).
    """
    if not port:
        return None
    try:
        server, thread = start_http_server(port, addr=host, registry=REGISTRY)
    except OSError as err:
        log.error(
            "no /metrics endpoint: cannot listen on %s:%d (%s); set metrics.port to a free "
            "port, or to 0 for none",
            host, port, err,
        )  # fmt: skip
        return None
    log.info("Prometheus metrics on http://%s:%d/metrics", host, server.server_port)
    return MetricsServer(server, thread)
