-- kaizend's event tables. Applied idempotently at every start (CREATE ... IF NOT EXISTS).
-- Times are TIMESTAMPTZ in UTC. `extra` keeps fields a newer producer sent that this schema
-- version does not know.

CREATE TABLE IF NOT EXISTS query_events (
    event_id       VARCHAR PRIMARY KEY,
    query_id       VARCHAR NOT NULL,
    ts             TIMESTAMPTZ NOT NULL,
    task           VARCHAR NOT NULL,
    text           VARCHAR NOT NULL,
    model_version  VARCHAR NOT NULL,
    arm            VARCHAR,           -- champion | challenger | shadow
    unit_id        VARCHAR,           -- user or session key (sticky assignment)
    output         JSON,              -- parsed filters, or ranked document ids with scores
    latency_ms     DOUBLE NOT NULL,
    error          VARCHAR,
    service        VARCHAR,
    schema_version INTEGER NOT NULL,
    extra          JSON,
    ingested_at    TIMESTAMPTZ NOT NULL,
    fallback_used  BOOLEAN            -- the model's answer was replaced by the fallback's
);
-- Files created before fallback_used existed get the column (NULL for their old rows).
ALTER TABLE query_events ADD COLUMN IF NOT EXISTS fallback_used BOOLEAN;

CREATE TABLE IF NOT EXISTS feedback_events (
    event_id       VARCHAR PRIMARY KEY,
    query_id       VARCHAR NOT NULL,
    ts             TIMESTAMPTZ NOT NULL,
    rating         TINYINT,           -- 1..5
    thumbs         VARCHAR,           -- up | down
    doc_id         VARCHAR,           -- the rated result, for retrieval
    comment        VARCHAR,
    schema_version INTEGER NOT NULL,
    extra          JSON,
    ingested_at    TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS correction_events (
    event_id         VARCHAR PRIMARY KEY,
    query_id         VARCHAR NOT NULL,
    ts               TIMESTAMPTZ NOT NULL,
    corrected_output JSON NOT NULL,
    author           VARCHAR,
    schema_version   INTEGER NOT NULL,
    extra            JSON,
    ingested_at      TIMESTAMPTZ NOT NULL
);

-- Everything that could not be stored as an event, with the bytes as they arrived.
CREATE TABLE IF NOT EXISTS rejected_events (
    stream_seq  BIGINT PRIMARY KEY,   -- unique per message: a redelivery is stored once
    subject     VARCHAR NOT NULL,
    reason      VARCHAR NOT NULL,
    raw         BLOB NOT NULL,        -- truncated to ingest.max_payload_bytes for oversized ones
    raw_size    BIGINT NOT NULL,
    headers     JSON,
    received_at TIMESTAMPTZ NOT NULL
);

-- One row per query with the signals that refer to it. Feedback and corrections may arrive
-- before their query: they are stored anyway and show up here once the query is in.
CREATE OR REPLACE VIEW query_outcomes AS
SELECT
    q.query_id, q.ts, q.task, q.model_version, q.arm, q.unit_id, q.text, q.output,
    q.latency_ms, q.error IS NOT NULL AS failed,
    coalesce(f.n_feedback, 0)    AS n_feedback,
    f.mean_rating,
    coalesce(f.thumbs_up, 0)     AS thumbs_up,
    coalesce(f.thumbs_down, 0)   AS thumbs_down,
    coalesce(c.n_corrections, 0) AS n_corrections
FROM query_events q
LEFT JOIN (
    SELECT query_id, count(*) AS n_feedback, avg(rating) AS mean_rating,
           count(*) FILTER (WHERE thumbs = 'up') AS thumbs_up,
           count(*) FILTER (WHERE thumbs = 'down') AS thumbs_down
    FROM feedback_events GROUP BY query_id
) f USING (query_id)
LEFT JOIN (
    SELECT query_id, count(*) AS n_corrections FROM correction_events GROUP BY query_id
) c USING (query_id);

-- Shadow mode: the challenger's unanswered output next to the champion's, query by query.
CREATE OR REPLACE VIEW shadow_comparisons AS
SELECT c.task, c.query_id, c.ts, c.text,
       c.model_version AS champion, s.model_version AS shadow,
       c.output AS champion_output, s.output AS shadow_output,
       CAST(c.output AS VARCHAR) = CAST(s.output AS VARCHAR) AS same_output,
       c.latency_ms AS champion_latency_ms, s.latency_ms AS shadow_latency_ms,
       c.fallback_used AS champion_fallback, s.fallback_used AS shadow_fallback,
       s.error AS shadow_error
FROM query_events s
JOIN query_events c ON c.query_id = json_extract_string(s.extra, '$.shadow_of')
WHERE s.arm = 'shadow';

-- Feedback and corrections whose query has not (yet) been seen.
CREATE OR REPLACE VIEW unlinked_signals AS
SELECT 'feedback' AS kind, event_id, query_id, ts, ingested_at FROM feedback_events
WHERE query_id NOT IN (SELECT query_id FROM query_events)
UNION ALL
SELECT 'correction', event_id, query_id, ts, ingested_at FROM correction_events
WHERE query_id NOT IN (SELECT query_id FROM query_events);

-- The model registry. Every version of every task, its status, and why it last changed.
CREATE TABLE IF NOT EXISTS model_versions (
    version_id        VARCHAR PRIMARY KEY,   -- <task>-v<n>; v0 is the task's built-in start
    task              VARCHAR NOT NULL,
    status            VARCHAR NOT NULL,      -- candidate | rejected | challenger | champion | retired
    base_model        VARCHAR NOT NULL,
    artifact_path     VARCHAR,               -- the version directory; NULL for a built-in v0
    parent_version    VARCHAR,
    training_run      VARCHAR,
    created_at        TIMESTAMPTZ NOT NULL,
    metrics           JSON,
    status_reason     VARCHAR NOT NULL,
    status_changed_at TIMESTAMPTZ NOT NULL
);

-- Append-only: which version held which alias (champion, challenger) from when, and why.
-- "What was serving on the 3rd": the newest row per (task, alias) with assigned_at before it.
CREATE TABLE IF NOT EXISTS alias_history (
    task        VARCHAR NOT NULL,
    alias       VARCHAR NOT NULL,            -- champion | challenger
    version_id  VARCHAR,                     -- NULL: the alias was cleared
    assigned_at TIMESTAMPTZ NOT NULL,
    reason      VARCHAR NOT NULL
);

CREATE OR REPLACE VIEW current_aliases AS
SELECT task, alias, version_id, assigned_at, reason
FROM alias_history
QUALIFY row_number() OVER (PARTITION BY task, alias ORDER BY assigned_at DESC) = 1;

-- Training jobs. A run is one training on one snapshot of the events; each attempt at it is a
-- job (a retry after a failure is a new job of the same run, resuming its checkpoint).
CREATE TABLE IF NOT EXISTS training_jobs (
    job_id       VARCHAR PRIMARY KEY,   -- <run_id>.<attempt>
    run_id       VARCHAR NOT NULL,      -- <task>-<yyyymmddThhmmss>: the version's training_run
    task         VARCHAR NOT NULL,
    attempt      INTEGER NOT NULL,
    state        VARCHAR NOT NULL,      -- queued | running | succeeded | failed | interrupted
    reason       VARCHAR NOT NULL,      -- what asked for it: threshold, max age, manual, drift, retry
    requested_at TIMESTAMPTZ NOT NULL,
    started_at   TIMESTAMPTZ,
    finished_at  TIMESTAMPTZ,
    cutoff       TIMESTAMPTZ NOT NULL,  -- the snapshot holds events ingested up to this time
    snapshot     JSON,                  -- rows of the snapshot by table
    champion     VARCHAR,               -- the champion when requested: parent and gate baseline
    run_dir      VARCHAR NOT NULL,      -- snapshot, job spec, and the version directory
    worker       VARCHAR,               -- host:pid of the worker that took it
    pid          INTEGER,               -- the training subprocess
    progress     JSON,                  -- step, total_steps, loss, eta_s of the newest report
    error        VARCHAR,
    retryable    BOOLEAN,               -- false: a retry cannot help (not enough signal)
    version_id   VARCHAR                -- the candidate it registered
);
-- When the job's message reached the work queue (JetStream acknowledged it); NULL while a
-- queued job still has to be (re-)published. Added to existing databases here.
ALTER TABLE training_jobs ADD COLUMN IF NOT EXISTS published_at TIMESTAMPTZ;

-- Lineage: the stored events each training run learned from, or held back to evaluate on.
CREATE TABLE IF NOT EXISTS training_events (
    run_id   VARCHAR NOT NULL,
    kind     VARCHAR NOT NULL,          -- correction | feedback
    event_id VARCHAR NOT NULL,
    role     VARCHAR NOT NULL           -- train | fresh
);

-- Every offline-gate decision with the numbers that made it.
CREATE TABLE IF NOT EXISTS gate_decisions (
    version_id VARCHAR NOT NULL,
    task       VARCHAR NOT NULL,
    champion   VARCHAR NOT NULL,        -- the version it was measured against
    decided_at TIMESTAMPTZ NOT NULL,
    passed     BOOLEAN NOT NULL,
    reason     VARCHAR NOT NULL,
    checks     JSON NOT NULL            -- per evaluation set: metric, candidate, champion, limit
);
-- How much the gate saw (each column defined once, for new files and older ones alike):
-- the fresh set's size; the set whose improvement check decided (fresh, or benchmark when
-- the fresh set was too small); that check's paired test (mcnemar_exact | paired_t) and its
-- one-sided p-value.
ALTER TABLE gate_decisions ADD COLUMN IF NOT EXISTS fresh_examples BIGINT;
ALTER TABLE gate_decisions ADD COLUMN IF NOT EXISTS decided_on VARCHAR;
ALTER TABLE gate_decisions ADD COLUMN IF NOT EXISTS test VARCHAR;
ALTER TABLE gate_decisions ADD COLUMN IF NOT EXISTS p_value DOUBLE;

-- A/B experiments: one per challenger; its ramp steps with their time windows, and the
-- decision log, one row per tick.
CREATE TABLE IF NOT EXISTS experiments (
    experiment_id VARCHAR PRIMARY KEY,
    task          VARCHAR NOT NULL,
    champion      VARCHAR NOT NULL,
    challenger    VARCHAR NOT NULL,
    salt          VARCHAR NOT NULL,
    status        VARCHAR NOT NULL,     -- running | paused | promoted | rolled_back | inconclusive | stopped
    created_at    TIMESTAMPTZ NOT NULL,
    ended_at      TIMESTAMPTZ,
    reason        VARCHAR
);

CREATE TABLE IF NOT EXISTS experiment_steps (
    experiment_id VARCHAR NOT NULL,
    step          INTEGER NOT NULL,     -- 1, 2, ...
    weight        DOUBLE NOT NULL,      -- the challenger's configured share
    started_at    TIMESTAMPTZ NOT NULL,
    ended_at      TIMESTAMPTZ
);

CREATE TABLE IF NOT EXISTS experiment_decisions (
    experiment_id VARCHAR NOT NULL,
    decided_at    TIMESTAMPTZ NOT NULL,
    step          INTEGER NOT NULL,
    weight        DOUBLE NOT NULL,
    n_champion    BIGINT NOT NULL,
    n_challenger  BIGINT NOT NULL,
    champion_value   DOUBLE,          -- the tested metric per arm (pooled, descriptive)
    challenger_value DOUBLE,
    metric        VARCHAR,
    effect        DOUBLE,
    ci_lower      DOUBLE,
    ci_upper      DOUBLE,
    p_value       DOUBLE,
    alpha         DOUBLE NOT NULL,
    srm_p_value   DOUBLE,
    gate          VARCHAR NOT NULL,
    action        VARCHAR NOT NULL,     -- hold | advance | promote | rollback | inconclusive
    reason        VARCHAR NOT NULL,
    -- The unit view of the current step (n_* are units, the unit of randomisation):
    queries_champion   DOUBLE,        -- queries per arm
    queries_challenger DOUBLE,
    design_effect      DOUBLE,        -- success variance over units / if queries were independent
    adjusted           BOOLEAN,       -- success adjusted with the units' pre-period history
    variance_removed   DOUBLE         -- share of its variance the adjustment removed
);
-- Files created before the unit view existed get its columns (NULL for their old rows).
ALTER TABLE experiment_decisions ADD COLUMN IF NOT EXISTS queries_champion DOUBLE;
ALTER TABLE experiment_decisions ADD COLUMN IF NOT EXISTS queries_challenger DOUBLE;
ALTER TABLE experiment_decisions ADD COLUMN IF NOT EXISTS design_effect DOUBLE;
ALTER TABLE experiment_decisions ADD COLUMN IF NOT EXISTS adjusted BOOLEAN;
ALTER TABLE experiment_decisions ADD COLUMN IF NOT EXISTS variance_removed DOUBLE;

-- One query as experiments, quality views and performance alarms see it: the single
-- definition of success. A query succeeds when it got positive feedback (a rating >= 4 or
-- thumbs up) and no correction arrived within attribution_s of it. `fallback` is the query's
-- fallback_used (the gateway sets it), else what its output or an extra field says
-- ("fallback_used": true, as `kaizend parse` writes it).
CREATE OR REPLACE MACRO query_units(attribution_s) AS TABLE
SELECT *, liked AND NOT corrected AS success FROM (
    SELECT q.query_id, q.ts, q.task, q.model_version, q.arm, q.unit_id, q.text, q.latency_ms,
           q.error IS NOT NULL AS failed,
           coalesce(q.fallback_used,
                    TRY_CAST(coalesce(q.output->>'fallback_used', q.extra->>'fallback_used')
                             AS BOOLEAN), false) AS fallback,
           (SELECT avg(f.rating) FROM feedback_events f WHERE f.query_id = q.query_id) AS rating,
           EXISTS (SELECT 1 FROM feedback_events f WHERE f.query_id = q.query_id
                   AND (f.rating >= 4 OR f.thumbs = 'up')) AS liked,
           EXISTS (SELECT 1 FROM correction_events c WHERE c.query_id = q.query_id
                   AND c.ts <= q.ts + to_seconds(attribution_s)) AS corrected
    FROM query_events q
);

-- Quality per task, model version and day (UTC) for an attribution window in seconds:
-- SELECT * FROM daily_quality_at(3600). The most recent day is not settled yet: its feedback
-- and corrections may still arrive.
CREATE OR REPLACE MACRO daily_quality_at(attribution_s) AS TABLE
SELECT task, model_version, CAST(timezone('UTC', ts) AS DATE) AS day,
       count(*) AS queries,
       avg(CAST(success AS DOUBLE)) AS success_rate,
       avg(CAST(corrected AS DOUBLE)) AS correction_rate,
       avg(rating) AS mean_rating,
       avg(CAST(fallback AS DOUBLE)) AS fallback_rate,
       avg(CAST(failed AS DOUBLE)) AS error_rate,
       quantile_cont(latency_ms, 0.95) AS latency_p95_ms
FROM query_units(attribution_s) GROUP BY ALL;

-- The same with the default attribution window (experiments.attribution_s = one day).
CREATE OR REPLACE VIEW daily_quality AS SELECT * FROM daily_quality_at(86400);

-- Events per kind and hour (UTC, by event time; rejected messages by arrival).
CREATE OR REPLACE VIEW hourly_volume AS
SELECT kind, date_trunc('hour', timezone('UTC', ts)) AS hour, count(*) AS events FROM (
    SELECT 'query' AS kind, ts FROM query_events
    UNION ALL SELECT 'feedback', ts FROM feedback_events
    UNION ALL SELECT 'correction', ts FROM correction_events
    UNION ALL SELECT 'rejected', received_at FROM rejected_events
) GROUP BY ALL;

-- Drift reports: one per task and run, and one row per check it made.
CREATE TABLE IF NOT EXISTS drift_reports (
    report_id         VARCHAR PRIMARY KEY,   -- <task>-drift-<yyyymmddThhmmss>-<hex>
    task              VARCHAR NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL,  -- the report's "now": the current window's end
    trigger           VARCHAR NOT NULL,      -- schedule | manual
    reference         VARCHAR NOT NULL,      -- how the reference window was chosen
    reference_start   TIMESTAMPTZ,
    reference_end     TIMESTAMPTZ,
    current_start     TIMESTAMPTZ NOT NULL,
    current_end       TIMESTAMPTZ NOT NULL,
    n_reference       BIGINT NOT NULL,       -- queries in each window
    n_current         BIGINT NOT NULL,
    input_drift       BOOLEAN NOT NULL,      -- a deciding input check drifted
    performance_alarm BOOLEAN NOT NULL,      -- the champion's success-rate CUSUM alarmed
    action            VARCHAR,               -- what kaizend did about it (a training queued, ...)
    duration_s        DOUBLE NOT NULL
);

-- `score` against `threshold`: drifted when score > threshold (direction 'above': psi,
-- wasserstein, domain_auc, mmd, cusum, max_gap_s) or score < threshold (direction 'below':
-- the p-value of chi2 and ks, against alpha split over the report's deciding tests).
-- `decisive` checks make the report's verdict: the method chosen for the window size; the
-- others are shown for context. A NULL score is a check skipped (detail says why).
CREATE TABLE IF NOT EXISTS drift_checks (
    report_id       VARCHAR NOT NULL,
    task            VARCHAR NOT NULL,
    checked_at      TIMESTAMPTZ NOT NULL,
    kind            VARCHAR NOT NULL,        -- input | performance | volume
    field           VARCHAR NOT NULL,        -- embedding, technology, ..., success_rate, query
    method          VARCHAR NOT NULL,        -- domain_auc | mmd | psi | chi2 | ks | wasserstein
                                             -- | cusum | max_gap_s
    version_id      VARCHAR,                 -- performance checks: the champion watched
    reference_start TIMESTAMPTZ,
    reference_end   TIMESTAMPTZ,
    current_start   TIMESTAMPTZ NOT NULL,
    current_end     TIMESTAMPTZ NOT NULL,
    n_reference     BIGINT NOT NULL,
    n_current       BIGINT NOT NULL,
    score           DOUBLE,
    threshold       DOUBLE NOT NULL,
    direction       VARCHAR NOT NULL,        -- above | below
    p_value         DOUBLE,
    drifted         BOOLEAN NOT NULL,
    decisive        BOOLEAN NOT NULL,
    detail          JSON                     -- distributions reference vs current, CUSUM path
);

-- The checks of each task's newest report.
CREATE OR REPLACE VIEW latest_drift AS
SELECT c.* FROM drift_checks c
JOIN (SELECT task, arg_max(report_id, created_at) AS report_id FROM drift_reports GROUP BY task)
USING (task, report_id);
