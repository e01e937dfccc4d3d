-- People: who a token belongs to, their roles (space-separated) and, for sales, the team
-- and the rep id territory rules assign leads to. Deactivating keeps the row (the audit
-- log and leads refer to it) and refuses the person's tokens.
CREATE TABLE users (
    id              TEXT COLLATE "C" PRIMARY KEY,
    name            TEXT NOT NULL,
    email           TEXT COLLATE "C" NOT NULL UNIQUE,  -- lower case
    roles           TEXT COLLATE "C" NOT NULL,
    team            TEXT COLLATE "C",
    rep             TEXT COLLATE "C" UNIQUE,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    deactivated_at  BIGINT
);
ALTER TABLE api_tokens ADD COLUMN user_id TEXT COLLATE "C" REFERENCES users(id);

-- Who changed what and when; rows are only ever added, in the transaction of the change.
CREATE TABLE audit_log (
    id       BIGSERIAL PRIMARY KEY,
    at       BIGINT NOT NULL,
    actor    TEXT COLLATE "C" NOT NULL,   -- token:ID, cli, webhook:SOURCE, recipient
    user_id  TEXT COLLATE "C",
    role     TEXT COLLATE "C",
    action   TEXT COLLATE "C" NOT NULL,   -- user.create, secret.put, workflows.reload, ...
    target   TEXT COLLATE "C" NOT NULL,   -- what was changed: a user id, a secret name, ...
    detail   TEXT NOT NULL                -- JSON; never a secret's value
);
CREATE INDEX audit_log_by_action ON audit_log(action, id);
CREATE INDEX audit_log_by_target ON audit_log(target, id);
