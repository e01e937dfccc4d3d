-- Kontor on PostgreSQL: the same tables as the embedded SQLite store (migrations
-- sqlite/0001-0003), plus the leases that let several `kontor serve` processes share
-- the work. Times are milliseconds since the Unix epoch (UTC), as BIGINT.

CREATE TABLE workflow_versions (
    version     TEXT PRIMARY KEY,       -- SHA-256 of the file
    name        TEXT NOT NULL,
    source      TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE runs (
    id            TEXT PRIMARY KEY,
    workflow      TEXT NOT NULL,
    version       TEXT NOT NULL REFERENCES workflow_versions(version),
    status        TEXT NOT NULL CHECK (status IN ('running', 'waiting', 'completed', 'failed', 'cancelled')),
    input         TEXT NOT NULL,
    context       TEXT NOT NULL,        -- {"vars": {...}, "steps": {...}}
    output        TEXT,
    error         TEXT,
    current_step  TEXT,
    parent_id     TEXT REFERENCES runs(id),
    trigger_key   TEXT UNIQUE,          -- idempotency of starts: cron firing, event, child slot
    events_after  BIGINT NOT NULL,      -- only events with a larger id belong to this run
    step_count    BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    finished_at   BIGINT
);
CREATE INDEX runs_by_parent ON runs(parent_id, status) WHERE parent_id IS NOT NULL;
CREATE INDEX runs_by_workflow ON runs(workflow, created_at);
CREATE INDEX runs_by_status ON runs(status, created_at);

CREATE TABLE jobs (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id       TEXT NOT NULL REFERENCES runs(id),
    kind         TEXT NOT NULL CHECK (kind IN ('step', 'resume', 'timeout', 'timer')),
    step         TEXT NOT NULL,
    timer        TEXT,                  -- timer name (kind = 'timer')
    payload      TEXT,
    due_at       BIGINT NOT NULL,
    attempt      BIGINT NOT NULL DEFAULT 1,
    -- The process working on the job and until when (wall clock): a job whose lease has
    -- expired is taken over; a commit by a holder whose lease was taken over is void.
    lease_owner  TEXT,
    lease_until  BIGINT
);
CREATE INDEX jobs_by_due ON jobs(due_at, id);
CREATE INDEX jobs_by_run ON jobs(run_id, id);
CREATE UNIQUE INDEX jobs_one_timer ON jobs(run_id, timer) WHERE timer IS NOT NULL;

CREATE TABLE step_runs (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id       TEXT NOT NULL REFERENCES runs(id),
    step         TEXT NOT NULL,
    action       TEXT NOT NULL,
    attempt      BIGINT NOT NULL,
    status       TEXT NOT NULL,         -- completed, waiting, retrying, failed
    input        TEXT,
    output       TEXT,
    error        TEXT,
    log          TEXT,                  -- what a plugin logged during the attempt (JSON)
    started_at   BIGINT NOT NULL,
    finished_at  BIGINT NOT NULL
);
CREATE INDEX step_runs_by_run ON step_runs(run_id, id);

CREATE TABLE events (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    type         TEXT NOT NULL,
    key          TEXT NOT NULL,
    payload      TEXT NOT NULL,
    received_at  BIGINT NOT NULL
);
CREATE INDEX events_by_match ON events(type, key, id);

-- A run parked in `wait_for` (event_type/key pairs) or `wait_children` (type 'children').
CREATE TABLE waits (
    run_id      TEXT NOT NULL REFERENCES runs(id),
    event_type  TEXT NOT NULL,
    key         TEXT NOT NULL,
    step        TEXT NOT NULL,
    PRIMARY KEY (run_id, event_type, key)
);
CREATE INDEX waits_by_match ON waits(event_type, key);

CREATE TABLE consumed_events (
    run_id    TEXT NOT NULL,
    event_id  BIGINT NOT NULL,
    PRIMARY KEY (run_id, event_id)
);
CREATE INDEX consumed_events_by_event ON consumed_events(event_id);

-- Effects committed with the step that produced them; the key makes them idempotent.
CREATE TABLE effects (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idempotency_key  TEXT NOT NULL UNIQUE,
    run_id           TEXT NOT NULL,
    step             TEXT NOT NULL,
    kind             TEXT NOT NULL,
    payload          TEXT NOT NULL,
    created_at       BIGINT NOT NULL
);
CREATE INDEX effects_by_run ON effects(run_id);

CREATE TABLE records (
    collection  TEXT NOT NULL,
    key         TEXT NOT NULL,
    data        TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (collection, key)
);

CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    token_hash   TEXT NOT NULL UNIQUE,  -- hex SHA-256 of the token
    role         TEXT NOT NULL,
    description  TEXT,
    created_at   BIGINT NOT NULL
);

-- One row per cron firing: (workflow, scheduled local time) fires at most once.
CREATE TABLE cron_firings (
    workflow    TEXT NOT NULL,
    local_time  TEXT NOT NULL,
    fired_at    BIGINT NOT NULL,
    run_id      TEXT,
    PRIMARY KEY (workflow, local_time)
);
CREATE TABLE cron_cursors (
    workflow    TEXT PRIMARY KEY,
    checked_to  BIGINT NOT NULL
);

-- Idempotency-Key of run starts: the first answer, replayed byte for byte.
CREATE TABLE idempotency_keys (
    key           TEXT PRIMARY KEY,     -- workflow + client key
    request_hash  TEXT NOT NULL,        -- SHA-256 of the request body
    status        BIGINT NOT NULL,
    response      TEXT NOT NULL,
    run_id        TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);

-- Secrets, encrypted with XChaCha20-Poly1305 under a master key kept outside the database.
CREATE TABLE secrets (
    name        TEXT PRIMARY KEY,
    key_id      TEXT NOT NULL,          -- which master key sealed it (fingerprint)
    nonce       BYTEA NOT NULL,
    ciphertext  BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- Email: the outbox (one row per message, written in the step's transaction).
CREATE TABLE outbox (
    id          TEXT PRIMARY KEY,       -- uuid v7; Message-ID <id@from-domain>
    run_id      TEXT,                   -- NULL for proofs (test-send)
    step        TEXT,
    workflow    TEXT,
    campaign    TEXT NOT NULL,
    channel     TEXT NOT NULL,
    template    TEXT NOT NULL,
    locale      TEXT,
    recipient   TEXT NOT NULL,          -- as given
    address     TEXT NOT NULL,          -- lowercased, for suppression lookups
    domain      TEXT NOT NULL,          -- lowercased recipient domain (throttles)
    name        TEXT,
    purpose     TEXT NOT NULL,
    data        TEXT NOT NULL,
    status      TEXT NOT NULL,          -- queued, sending, sent, failed, suppressed
    attempts    BIGINT NOT NULL DEFAULT 0,
    due_at      BIGINT NOT NULL,
    reply       TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    sent_at     BIGINT,
    -- While `sending`: the process sending it and until when (wall clock). A message
    -- whose lease expired (its process died mid-send) is sent again, same Message-ID.
    lease_owner TEXT,
    lease_until BIGINT
);
CREATE INDEX outbox_queued ON outbox (due_at, id) WHERE status = 'queued';
CREATE INDEX outbox_sending ON outbox (lease_until) WHERE status = 'sending';
CREATE INDEX outbox_run ON outbox (run_id, id);
CREATE INDEX outbox_campaign ON outbox (campaign, id);
CREATE INDEX outbox_address ON outbox (address, id);

CREATE TABLE email_suppressions (
    address     TEXT NOT NULL,
    purpose     TEXT NOT NULL,          -- '*' (bounces, complaints) or one purpose
    reason      TEXT NOT NULL,
    detail      TEXT,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (address, purpose)
);

CREATE TABLE email_bounces (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    address     TEXT NOT NULL,
    kind        TEXT NOT NULL,          -- hard, soft, complaint
    status      TEXT,
    detail      TEXT,
    message_id  TEXT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX email_bounces_address ON email_bounces (address, created_at);

CREATE TABLE email_daily_counts (
    channel     TEXT NOT NULL,
    day         TEXT NOT NULL,          -- UTC date, YYYY-MM-DD
    sent        BIGINT NOT NULL,
    PRIMARY KEY (channel, day)
);
