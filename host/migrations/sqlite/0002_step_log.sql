-- What a plugin logged during a step attempt (its `log` lines and captured
-- stdout/stderr), as a JSON array of {level, message, fields}.
ALTER TABLE step_runs ADD COLUMN log TEXT;
