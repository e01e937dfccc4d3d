-- Email: the outbox (one row per message, written in the step's transaction), suppressions
-- (bounces, complaints, unsubscribes by purpose), bounce reports and daily send counts.
-- Times are milliseconds since the Unix epoch (UTC).

CREATE TABLE outbox (
    id          TEXT PRIMARY KEY,       -- uuid v7; Message-ID <id@from-domain>
    run_id      TEXT,                   -- NULL for proofs (test-send)
    step        TEXT,
    workflow    TEXT,
    campaign    TEXT NOT NULL,
    channel     TEXT NOT NULL,
    template    TEXT NOT NULL,
    locale      TEXT,                   -- requested; NULL: the template's fallback
    recipient   TEXT NOT NULL,          -- as given
    address     TEXT NOT NULL,          -- lowercased, for suppression lookups
    domain      TEXT NOT NULL,          -- lowercased recipient domain (throttles)
    name        TEXT,
    purpose     TEXT NOT NULL,
    data        TEXT NOT NULL,
    status      TEXT NOT NULL,          -- queued, sending, sent, failed, suppressed
    attempts    INTEGER NOT NULL DEFAULT 0,
    due_at      INTEGER NOT NULL,
    reply       TEXT,                   -- last SMTP reply or error; suppression reason
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    sent_at     INTEGER
);
CREATE INDEX outbox_queued ON outbox (due_at, id) WHERE status = 'queued';
CREATE INDEX outbox_sending ON outbox (id) WHERE status = 'sending';
CREATE INDEX outbox_run ON outbox (run_id, id);
CREATE INDEX outbox_campaign ON outbox (campaign, id);
CREATE INDEX outbox_address ON outbox (address, id);

CREATE TABLE email_suppressions (
    address     TEXT NOT NULL,          -- lowercased
    purpose     TEXT NOT NULL,          -- '*' (bounces, complaints) or one purpose
    reason      TEXT NOT NULL,          -- hard_bounce, complaint, soft_bounces, unsubscribed
    detail      TEXT,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (address, purpose)
);

CREATE TABLE email_bounces (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    address     TEXT NOT NULL,
    kind        TEXT NOT NULL,          -- hard, soft, complaint
    status      TEXT,                   -- enhanced status code, e.g. 5.1.1
    detail      TEXT,
    message_id  TEXT,
    created_at  INTEGER NOT NULL
);
CREATE INDEX email_bounces_address ON email_bounces (address, created_at);

CREATE TABLE email_daily_counts (
    channel     TEXT NOT NULL,
    day         TEXT NOT NULL,          -- UTC date, YYYY-MM-DD
    sent        INTEGER NOT NULL,
    PRIMARY KEY (channel, day)
);
