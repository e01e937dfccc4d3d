-- Kontor on PostgreSQL: the same tables as the embedded SQLite store (migrations
-- sqlite/0001-0003), plus the leases that let several `kontor serve` processes share
-- the work. Times are milliseconds since the Unix epoch (UTC), as BIGINT. Text columns
-- compare bytewise (COLLATE "C"): they are ids, keys and JSON, and a locale's collation
-- would make every index lookup slower. `jobs` and `step_runs` get a row per step: their
-- run_id has no foreign key (each check would be a query per row); the store writes them
-- only with their run and deletes them before it.

CREATE TABLE workflow_versions (
    version     TEXT COLLATE "C" PRIMARY KEY,       -- SHA-256 of the file
    name        TEXT COLLATE "C" NOT NULL,
    source      TEXT COLLATE "C" NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE runs (
    id            TEXT COLLATE "C" PRIMARY KEY,
    workflow      TEXT COLLATE "C" NOT NULL,
    version       TEXT COLLATE "C" NOT NULL REFERENCES workflow_versions(version),
    status        TEXT COLLATE "C" NOT NULL CHECK (status IN ('running', 'waiting', 'completed', 'failed', 'cancelled')),
    input         TEXT COLLATE "C" NOT NULL,
    context       TEXT COLLATE "C" NOT NULL,        -- {"vars": {...}, "steps": {...}}
    output        TEXT COLLATE "C",
    error         TEXT COLLATE "C",
    current_step  TEXT COLLATE "C",
    parent_id     TEXT COLLATE "C" REFERENCES runs(id),
    trigger_key   TEXT COLLATE "C" UNIQUE,          -- idempotency of starts: cron firing, event, child slot
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
    run_id       TEXT COLLATE "C" NOT NULL,   -- runs(id); no FK: see below
    kind         TEXT COLLATE "C" NOT NULL CHECK (kind IN ('step', 'resume', 'timeout', 'timer')),
    step         TEXT COLLATE "C" NOT NULL,
    timer        TEXT COLLATE "C",                  -- timer name (kind = 'timer')
    payload      TEXT COLLATE "C",
    due_at       BIGINT NOT NULL,
    attempt      BIGINT NOT NULL DEFAULT 1,
    -- The process working on the job and until when (wall clock): a job whose lease has
    -- expired is taken over; a commit by a holder whose lease was taken over is void.
    lease_owner  TEXT COLLATE "C",
    lease_until  BIGINT
) WITH (fillfactor = 50);  -- room for HOT updates: taking a lease rewrites no index
CREATE INDEX jobs_by_due ON jobs(due_at, id);
CREATE INDEX jobs_by_run ON jobs(run_id, id);
CREATE UNIQUE INDEX jobs_one_timer ON jobs(run_id, timer) WHERE timer IS NOT NULL;

CREATE TABLE step_runs (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id       TEXT COLLATE "C" NOT NULL,   -- runs(id); no FK: see below
    step         TEXT COLLATE "C" NOT NULL,
    action       TEXT COLLATE "C" NOT NULL,
    attempt      BIGINT NOT NULL,
    status       TEXT COLLATE "C" NOT NULL,         -- completed, waiting, retrying, failed
    input        TEXT COLLATE "C",
    output       TEXT COLLATE "C",
    error        TEXT COLLATE "C",
    log          TEXT COLLATE "C",                  -- what a plugin logged during the attempt (JSON)
    started_at   BIGINT NOT NULL,
    finished_at  BIGINT NOT NULL
);
CREATE INDEX step_runs_by_run ON step_runs(run_id, id);

CREATE TABLE events (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    type         TEXT COLLATE "C" NOT NULL,
    key          TEXT COLLATE "C" NOT NULL,
    payload      TEXT COLLATE "C" NOT NULL,
    received_at  BIGINT NOT NULL
);
CREATE INDEX events_by_match ON events(type, key, id);

-- A run parked in `wait_for` (event_type/key pairs) or `wait_children` (type 'children').
CREATE TABLE waits (
    run_id      TEXT COLLATE "C" NOT NULL REFERENCES runs(id),
    event_type  TEXT COLLATE "C" NOT NULL,
    key         TEXT COLLATE "C" NOT NULL,
    step        TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (run_id, event_type, key)
);
CREATE INDEX waits_by_match ON waits(event_type, key);

CREATE TABLE consumed_events (
    run_id    TEXT COLLATE "C" NOT NULL,
    event_id  BIGINT NOT NULL,
    PRIMARY KEY (run_id, event_id)
);
CREATE INDEX consumed_events_by_event ON consumed_events(event_id);

-- Effects committed with the step that produced them; the key makes them idempotent.
CREATE TABLE effects (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idempotency_key  TEXT COLLATE "C" NOT NULL UNIQUE,
    run_id           TEXT COLLATE "C" NOT NULL,
    step             TEXT COLLATE "C" NOT NULL,
    kind             TEXT COLLATE "C" NOT NULL,
    payload          TEXT COLLATE "C" NOT NULL,
    created_at       BIGINT NOT NULL
);
CREATE INDEX effects_by_run ON effects(run_id);

CREATE TABLE records (
    collection  TEXT COLLATE "C" NOT NULL,
    key         TEXT COLLATE "C" NOT NULL,
    data        TEXT COLLATE "C" NOT NULL,
    run_id      TEXT COLLATE "C" NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (collection, key)
);

CREATE TABLE api_tokens (
    id           TEXT COLLATE "C" PRIMARY KEY,
    token_hash   TEXT COLLATE "C" NOT NULL UNIQUE,  -- hex SHA-256 of the token
    role         TEXT COLLATE "C" NOT NULL,
    description  TEXT COLLATE "C",
    created_at   BIGINT NOT NULL
);

-- One row per cron firing: (workflow, scheduled local time) fires at most once.
CREATE TABLE cron_firings (
    workflow    TEXT COLLATE "C" NOT NULL,
    local_time  TEXT COLLATE "C" NOT NULL,
    fired_at    BIGINT NOT NULL,
    run_id      TEXT COLLATE "C",
    PRIMARY KEY (workflow, local_time)
);
CREATE TABLE cron_cursors (
    workflow    TEXT COLLATE "C" PRIMARY KEY,
    checked_to  BIGINT NOT NULL
);

-- Idempotency-Key of run starts: the first answer, replayed byte for byte.
CREATE TABLE idempotency_keys (
    key           TEXT COLLATE "C" PRIMARY KEY,     -- workflow + client key
    request_hash  TEXT COLLATE "C" NOT NULL,        -- SHA-256 of the request body
    status        BIGINT NOT NULL,
    response      TEXT COLLATE "C" NOT NULL,
    run_id        TEXT COLLATE "C" NOT NULL,
    created_at    BIGINT NOT NULL
);

-- Secrets, encrypted with XChaCha20-Poly1305 under a master key kept outside the database.
CREATE TABLE secrets (
    name        TEXT COLLATE "C" PRIMARY KEY,
    key_id      TEXT COLLATE "C" NOT NULL,          -- which master key sealed it (fingerprint)
    nonce       BYTEA NOT NULL,
    ciphertext  BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- Email: the outbox (one row per message, written in the step's transaction).
CREATE TABLE outbox (
    id          TEXT COLLATE "C" PRIMARY KEY,       -- uuid v7; Message-ID <id@from-domain>
    run_id      TEXT COLLATE "C",                   -- NULL for proofs (test-send)
    step        TEXT COLLATE "C",
    workflow    TEXT COLLATE "C",
    campaign    TEXT COLLATE "C" NOT NULL,
    channel     TEXT COLLATE "C" NOT NULL,
    template    TEXT COLLATE "C" NOT NULL,
    locale      TEXT COLLATE "C",
    recipient   TEXT COLLATE "C" NOT NULL,          -- as given
    address     TEXT COLLATE "C" NOT NULL,          -- lowercased, for suppression lookups
    domain      TEXT COLLATE "C" NOT NULL,          -- lowercased recipient domain (throttles)
    name        TEXT COLLATE "C",
    purpose     TEXT COLLATE "C" NOT NULL,
    data        TEXT COLLATE "C" NOT NULL,
    status      TEXT COLLATE "C" NOT NULL,          -- queued, sending, sent, failed, suppressed
    attempts    BIGINT NOT NULL DEFAULT 0,
    due_at      BIGINT NOT NULL,
    reply       TEXT COLLATE "C",
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    sent_at     BIGINT,
    -- While `sending`: the process sending it and until when (wall clock). A message
    -- whose lease expired (its process died mid-send) is sent again, same Message-ID.
    lease_owner TEXT COLLATE "C",
    lease_until BIGINT
);
CREATE INDEX outbox_queued ON outbox (due_at, id) WHERE status = 'queued';
CREATE INDEX outbox_sending ON outbox (lease_until) WHERE status = 'sending';
CREATE INDEX outbox_run ON outbox (run_id, id);
CREATE INDEX outbox_campaign ON outbox (campaign, id);
CREATE INDEX outbox_address ON outbox (address, id);

CREATE TABLE email_suppressions (
    address     TEXT COLLATE "C" NOT NULL,
    purpose     TEXT COLLATE "C" NOT NULL,          -- '*' (bounces, complaints) or one purpose
    reason      TEXT COLLATE "C" NOT NULL,
    detail      TEXT COLLATE "C",
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (address, purpose)
);

CREATE TABLE email_bounces (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    address     TEXT COLLATE "C" NOT NULL,
    kind        TEXT COLLATE "C" NOT NULL,          -- hard, soft, complaint
    status      TEXT COLLATE "C",
    detail      TEXT COLLATE "C",
    message_id  TEXT COLLATE "C",
    created_at  BIGINT NOT NULL
);
CREATE INDEX email_bounces_address ON email_bounces (address, created_at);

CREATE TABLE email_daily_counts (
    channel     TEXT COLLATE "C" NOT NULL,
    day         TEXT COLLATE "C" NOT NULL,          -- UTC date, YYYY-MM-DD
    sent        BIGINT NOT NULL,
    PRIMARY KEY (channel, day)
);
