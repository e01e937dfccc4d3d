-- The key-value store of each plugin installation (`kontor:plugin/kv`). A call's
-- writes are committed in the transaction that records its step's result.
CREATE TABLE plugin_kv (
    plugin      TEXT COLLATE "C" NOT NULL,
    key         TEXT COLLATE "C" NOT NULL,
    value       BYTEA NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (plugin, key)
);
