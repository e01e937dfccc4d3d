-- Service tickets: the row holds what the ticket is now; `ticket_events` everything that
-- happened to it (the SLA clocks are replayed from those events).
CREATE TABLE tickets (
    id              TEXT PRIMARY KEY,
    number          TEXT NOT NULL UNIQUE,      -- T-2026-000123: what customers and mail subjects show
    external_id     TEXT UNIQUE,               -- the sending system's id: a re-delivery is the same ticket
    request_hash    TEXT NOT NULL,             -- SHA-256 of the ticket as first delivered
    customer_id     TEXT,                      -- the ERP's customer id
    contact         TEXT NOT NULL,             -- JSON: name, email, phone
    subject         TEXT NOT NULL,
    category        TEXT,
    priority        TEXT NOT NULL,
    channel         TEXT NOT NULL,             -- email, phone, web, api
    tier            TEXT,                      -- the customer's tier (from the ERP or the ticket)
    status          TEXT NOT NULL,             -- new, open, waiting-on-customer, ...
    group_name      TEXT,
    assignee        TEXT,
    policy          TEXT,                      -- the SLA policy now in force
    fired           TEXT NOT NULL DEFAULT '[]',-- JSON: the warnings and levels already sent
    erp_snapshot    TEXT,                      -- JSON: the customer's ERP view, as last loaded
    erp_loaded_at   INTEGER,
    run_id          TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX tickets_by_created ON tickets(created_at, id);
CREATE INDEX tickets_by_status ON tickets(status, created_at);
CREATE INDEX tickets_by_group ON tickets(group_name, created_at);
CREATE INDEX tickets_by_assignee ON tickets(assignee, created_at);
CREATE INDEX tickets_by_customer ON tickets(customer_id, created_at);

-- Only ever added to: created, status, priority, category, group, assignee, reply, note,
-- customer-message, policy, warning, escalation, erp.
CREATE TABLE ticket_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id  TEXT NOT NULL REFERENCES tickets(id),
    at         INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    kind       TEXT NOT NULL,
    detail     TEXT NOT NULL    -- JSON
);
CREATE INDEX ticket_events_by_ticket ON ticket_events(ticket_id, id);

-- The last ticket number given out per year.
CREATE TABLE ticket_numbers (
    year  INTEGER PRIMARY KEY,
    last  INTEGER NOT NULL
);
