-- The durable engine: workflow versions, runs, their step history, jobs (steps, timers,
-- timeouts), events and the waits that match them, effects, API tokens, cron firings.
-- Times are milliseconds since the Unix epoch (UTC).

CREATE TABLE workflow_versions (
    version     TEXT PRIMARY KEY,       -- SHA-256 of the file
    name        TEXT NOT NULL,
    source      TEXT NOT NULL,
    created_at  INTEGER NOT NULL
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
    events_after  INTEGER NOT NULL,     -- only events with a larger id belong to this run
    step_count    INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    finished_at   INTEGER
);
CREATE INDEX runs_by_parent ON runs(parent_id, status) WHERE parent_id IS NOT NULL;
CREATE INDEX runs_by_workflow ON runs(workflow, created_at);
CREATE INDEX runs_by_status ON runs(status, created_at);

CREATE TABLE jobs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id       TEXT NOT NULL REFERENCES runs(id),
    kind         TEXT NOT NULL CHECK (kind IN ('step', 'resume', 'timeout', 'timer')),
    step         TEXT NOT NULL,
    timer        TEXT,                  -- timer name (kind = 'timer')
    payload      TEXT,
    due_at       INTEGER NOT NULL,
    attempt      INTEGER NOT NULL DEFAULT 1
    -- No lease columns: the embedded store's claims live in the serving process's memory.
);
CREATE INDEX jobs_by_due ON jobs(due_at, id);
CREATE INDEX jobs_by_run ON jobs(run_id);
CREATE UNIQUE INDEX jobs_one_timer ON jobs(run_id, timer) WHERE timer IS NOT NULL;

CREATE TABLE step_runs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id       TEXT NOT NULL REFERENCES runs(id),
    step         TEXT NOT NULL,
    action       TEXT NOT NULL,
    attempt      INTEGER NOT NULL,
    status       TEXT NOT NULL,         -- completed, waiting, retrying, failed
    input        TEXT,
    output       TEXT,
    error        TEXT,
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER NOT NULL
);
CREATE INDEX step_runs_by_run ON step_runs(run_id, id);

CREATE TABLE events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    type         TEXT NOT NULL,
    key          TEXT NOT NULL,
    payload      TEXT NOT NULL,
    received_at  INTEGER NOT NULL
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
    event_id  INTEGER NOT NULL,
    PRIMARY KEY (run_id, event_id)
);

-- Effects committed with the step that produced them; the key makes them idempotent.
CREATE TABLE effects (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key  TEXT NOT NULL UNIQUE,
    run_id           TEXT NOT NULL,
    step             TEXT NOT NULL,
    kind             TEXT NOT NULL,
    payload          TEXT NOT NULL,
    created_at       INTEGER NOT NULL
);

CREATE TABLE records (
    collection  TEXT NOT NULL,
    key         TEXT NOT NULL,
    data        TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (collection, key)
);

CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    token_hash   TEXT NOT NULL UNIQUE,  -- hex SHA-256 of the token
    role         TEXT NOT NULL,
    description  TEXT,
    created_at   INTEGER NOT NULL
);

-- One row per cron firing: (workflow, scheduled local time) fires at most once.
CREATE TABLE cron_firings (
    workflow    TEXT NOT NULL,
    local_time  TEXT NOT NULL,
    fired_at    INTEGER NOT NULL,
    run_id      TEXT,
    PRIMARY KEY (workflow, local_time)
);
CREATE TABLE cron_cursors (
    workflow    TEXT PRIMARY KEY,
    checked_to  INTEGER NOT NULL
);

-- Idempotency-Key of run starts: the first answer, replayed byte for byte.
CREATE TABLE idempotency_keys (
    key           TEXT PRIMARY KEY,     -- workflow + client key
    request_hash  TEXT NOT NULL,        -- SHA-256 of the request body
    status        INTEGER NOT NULL,
    response      TEXT NOT NULL,
    run_id        TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);

-- Secrets, encrypted with XChaCha20-Poly1305 under a master key kept outside the database.
CREATE TABLE secrets (
    name        TEXT PRIMARY KEY,
    key_id      TEXT NOT NULL,          -- which master key sealed it (fingerprint)
    nonce       BLOB NOT NULL,
    ciphertext  BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
