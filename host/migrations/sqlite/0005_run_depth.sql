-- How many parents a run has: 0 for a run started by a trigger, parent's + 1 for a child.
-- A `start` step refuses to go deeper than `engine.max_run_depth`.
ALTER TABLE runs ADD COLUMN depth INTEGER NOT NULL DEFAULT 0;
