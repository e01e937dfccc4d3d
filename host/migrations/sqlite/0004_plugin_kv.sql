-- The key-value store of each plugin installation (`kontor:plugin/kv`). A call's
-- writes are committed in the transaction that records its step's result.
CREATE TABLE plugin_kv (
    plugin      TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       BLOB NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (plugin, key)
) WITHOUT ROWID;

-- Plugin configuration set through the API (`PUT /api/v1/plugins/{name}/config`); it
-- replaces `[plugin.NAME.config]` of kontor.toml. Grants are never set here.
CREATE TABLE plugin_config (
    plugin      TEXT PRIMARY KEY,
    config      TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
);
