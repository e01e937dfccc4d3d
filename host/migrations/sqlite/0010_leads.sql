-- Leads: what marketing qualifies and sales works on. Kontor owns them; the row holds the
-- lead as delivered (`data`, JSON) and what happened to it since.
CREATE TABLE leads (
    id                TEXT PRIMARY KEY,
    external_id       TEXT NOT NULL UNIQUE,   -- the source system's id: a re-delivery is the same lead
    request_hash      TEXT NOT NULL,          -- SHA-256 of the lead as first delivered
    data              TEXT NOT NULL,          -- JSON: the lead's fields, checked and normalized
    company           TEXT NOT NULL,
    source            TEXT,
    stage             TEXT NOT NULL,          -- new, unqualified, marketing-qualified, ...
    score             INTEGER,
    grade             TEXT,
    explanation       TEXT,                   -- JSON: every point of the score
    team              TEXT,
    owner             TEXT,                   -- a team member's id; NULL while in the overflow queue
    overflow          TEXT,                   -- why nobody in the team could take it
    routing           TEXT,                   -- JSON: rules matched, winner, candidates, pick
    reassignments     INTEGER NOT NULL DEFAULT 0,
    opportunity_id    TEXT,
    rejection_reason  TEXT,
    rejection_note    TEXT,
    run_id            TEXT,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);
CREATE INDEX leads_by_created ON leads(created_at, id);
CREATE INDEX leads_by_stage ON leads(stage, created_at);
CREATE INDEX leads_by_team ON leads(team, created_at);
CREATE INDEX leads_by_owner ON leads(owner, created_at);

-- Everything that happened to a lead, only ever added to: created, scored, assigned,
-- reassigned, overflow, reminded, accepted, rejected, ...
CREATE TABLE lead_history (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    lead_id  TEXT NOT NULL REFERENCES leads(id),
    at       INTEGER NOT NULL,
    actor    TEXT NOT NULL,
    kind     TEXT NOT NULL,
    detail   TEXT NOT NULL      -- JSON
);
CREATE INDEX lead_history_by_lead ON lead_history(lead_id, id);

-- Per team member, what assignment reads (open and ever-assigned leads) and what is set at
-- run time (active, absence). A member without a row has taken nothing and is active.
CREATE TABLE lead_reps (
    team          TEXT NOT NULL,
    rep           TEXT NOT NULL,
    open          INTEGER NOT NULL DEFAULT 0,
    assigned      INTEGER NOT NULL DEFAULT 0,
    active        INTEGER NOT NULL DEFAULT 1,
    absent_from   INTEGER,
    absent_until  INTEGER,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (team, rep)
);

-- Assignments made by `route` steps, by the step's effect key: a step run again after a
-- crash gets the same owner, and no counter moves twice.
CREATE TABLE lead_assignments (
    key         TEXT PRIMARY KEY,
    lead_id     TEXT NOT NULL,
    result      TEXT NOT NULL,   -- JSON
    created_at  INTEGER NOT NULL
);
