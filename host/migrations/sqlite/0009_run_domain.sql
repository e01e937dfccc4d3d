-- What a run's workflow was about when it started (leads, tickets, campaigns; NULL: no
-- domain): the roles owning the domain see the run.
ALTER TABLE runs ADD COLUMN domain TEXT;
