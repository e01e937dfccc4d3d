-- The key-value store of each plugin installation (`kontor:plugin/kv`). A call's
-- writes are committed in the transaction that records its step's result.
CREATE TABLE plugin_kv (
    plugin      TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       BLOB NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (plugin, key)
) WITHOUT ROWID;
