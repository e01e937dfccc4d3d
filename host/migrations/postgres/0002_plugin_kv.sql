-- The key-value store of each plugin installation (`kontor:plugin/kv`). A call's
-- writes are committed in the transaction that records its step's result.
CREATE TABLE plugin_kv (
    plugin      TEXT COLLATE "C" NOT NULL,
    key         TEXT COLLATE "C" NOT NULL,
    value       BYTEA NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (plugin, key)
);

-- Plugin configuration set through the API (`PUT /api/v1/plugins/{name}/config`); it
-- replaces `[plugin.NAME.config]` of kontor.toml. Grants are never set here.
CREATE TABLE plugin_config (
    plugin      TEXT COLLATE "C" PRIMARY KEY,
    config      TEXT NOT NULL,
    updated_at  BIGINT NOT NULL
);
