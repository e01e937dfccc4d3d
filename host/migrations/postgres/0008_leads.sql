-- Leads: what marketing qualifies and sales works on. Kontor owns them; the row holds the
-- lead as delivered (`data`, JSON) and what happened to it since.
CREATE TABLE leads (
    id                TEXT COLLATE "C" PRIMARY KEY,
    external_id       TEXT COLLATE "C" NOT NULL UNIQUE,   -- the source system's id: a re-delivery is the same lead
    request_hash      TEXT COLLATE "C" NOT NULL,          -- SHA-256 of the lead as first delivered
    data              TEXT NOT NULL,          -- JSON: the lead's fields, checked and normalized
    company           TEXT COLLATE "C" NOT NULL,
    source            TEXT COLLATE "C",
    stage             TEXT COLLATE "C" NOT NULL,          -- new, unqualified, marketing-qualified, ...
    score             BIGINT,
    grade             TEXT COLLATE "C",
    explanation       TEXT,                   -- JSON: every point of the score
    team              TEXT COLLATE "C",
    owner             TEXT COLLATE "C",                   -- a team member's id; NULL while in the overflow queue
    overflow          TEXT COLLATE "C",                   -- why nobody in the team could take it
    routing           TEXT,                   -- JSON: rules matched, winner, candidates, pick
    reassignments     BIGINT NOT NULL DEFAULT 0,
    opportunity_id    TEXT COLLATE "C",
    rejection_reason  TEXT COLLATE "C",
    rejection_note    TEXT COLLATE "C",
    run_id            TEXT COLLATE "C",
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX leads_by_created ON leads(created_at, id);
CREATE INDEX leads_by_stage ON leads(stage, created_at);
CREATE INDEX leads_by_team ON leads(team, created_at);
CREATE INDEX leads_by_owner ON leads(owner, created_at);

-- Everything that happened to a lead, only ever added to: created, scored, assigned,
-- reassigned, overflow, reminded, accepted, rejected, ...
CREATE TABLE lead_history (
    id       BIGSERIAL PRIMARY KEY,
    lead_id  TEXT COLLATE "C" NOT NULL REFERENCES leads(id),
    at       BIGINT NOT NULL,
    actor    TEXT COLLATE "C" NOT NULL,
    kind     TEXT COLLATE "C" NOT NULL,
    detail   TEXT NOT NULL      -- JSON
);
CREATE INDEX lead_history_by_lead ON lead_history(lead_id, id);

-- Per team member, what assignment reads (open and ever-assigned leads) and what is set at
-- run time (active, absence). A member without a row has taken nothing and is active.
CREATE TABLE lead_reps (
    team          TEXT COLLATE "C" NOT NULL,
    rep           TEXT COLLATE "C" NOT NULL,
    open          BIGINT NOT NULL DEFAULT 0,
    assigned      BIGINT NOT NULL DEFAULT 0,
    active        BIGINT NOT NULL DEFAULT 1,
    absent_from   BIGINT,
    absent_until  BIGINT,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (team, rep)
);

-- Assignments made by `route` steps, by the step's effect key: a step run again after a
-- crash gets the same owner, and no counter moves twice.
CREATE TABLE lead_assignments (
    key         TEXT COLLATE "C" PRIMARY KEY,
    lead_id     TEXT COLLATE "C" NOT NULL,
    result      TEXT NOT NULL,   -- JSON
    created_at  BIGINT NOT NULL
);
