-- People: who a token belongs to, their roles (space-separated) and, for sales, the team
-- and the rep id territory rules assign leads to. Deactivating keeps the row (the audit
-- log and leads refer to it) and refuses the person's tokens.
CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    email           TEXT NOT NULL UNIQUE,  -- lower case
    roles           TEXT NOT NULL,
    team            TEXT,
    rep             TEXT UNIQUE,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    deactivated_at  INTEGER
);
ALTER TABLE api_tokens ADD COLUMN user_id TEXT REFERENCES users(id);

-- Who changed what and when; rows are only ever added, in the transaction of the change.
CREATE TABLE audit_log (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       INTEGER NOT NULL,
    actor    TEXT NOT NULL,   -- token:ID, cli, webhook:SOURCE, recipient
    user_id  TEXT,
    role     TEXT,
    action   TEXT NOT NULL,   -- user.create, secret.put, workflows.reload, ...
    target   TEXT NOT NULL,   -- what was changed: a user id, a secret name, ...
    detail   TEXT NOT NULL    -- JSON; never a secret's value
);
CREATE INDEX audit_log_by_action ON audit_log(action, id);
CREATE INDEX audit_log_by_target ON audit_log(target, id);
