//! What plugins keep between calls: their key-value stores (written only through the
//! commits of the steps that made the writes) and configurations set through the API
//! (audited in the same transaction).

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use super::audit::{Actor, Change, append};
use super::transaction::Tx;
use super::{Store, StoreError, millis};

/// Plugins' stored state. Made by [`Store::plugin_state`].
#[derive(Clone, Copy)]
pub struct PluginState<'a> {
    pub(super) store: &'a Store,
}

impl PluginState<'_> {
    /// The committed value of `key` in the key-value store of plugin `plugin`.
    pub async fn kv_get(self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        on_reader!(self.store, |pool| Ok(sqlx::query_scalar(
            "SELECT value FROM plugin_kv WHERE plugin = $1 AND key = $2"
        )
        .bind(plugin)
        .bind(key)
        .fetch_optional(pool)
        .await?))
    }

    /// Plugin configurations set through the API, by plugin.
    pub async fn configs(self) -> Result<Vec<(String, Json)>, StoreError> {
        on_reader!(self.store, |pool| {
            let rows: Vec<(String, String)> =
                sqlx::query_as("SELECT plugin, config FROM plugin_config ORDER BY plugin")
                    .fetch_all(pool)
                    .await?;
            rows.into_iter()
                .map(|(plugin, text)| {
                    serde_json::from_str(&text)
                        .map(|config| (plugin.clone(), config))
                        .map_err(|e| {
                            StoreError::Corrupt(format!("plugin_config of `{plugin}`: {e}"))
                        })
                })
                .collect()
        })
    }

    /// Sets (or with `None` removes) the API configuration of `plugin`, audited as done
    /// by `actor` (the configuration is in the log: secrets are referred to by name).
    pub async fn put_config(
        self,
        plugin: &str,
        config: Option<&Json>,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let change = match config {
            Some(config) => Change::new(actor, "plugin.configure", plugin)
                .with(serde_json::json!({ "config": config })),
            None => Change::new(actor, "plugin.unconfigure", plugin),
        };
        on_writer!(self.store, |pool| {
            let mut tx = pool.begin().await?;
            match config {
                Some(config) => {
                    sqlx::query(
                        "INSERT INTO plugin_config (plugin, config, updated_at) VALUES ($1, $2, $3)
                         ON CONFLICT (plugin) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at",
                    )
                    .bind(plugin)
                    .bind(config.to_string())
                    .bind(millis(now))
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    sqlx::query("DELETE FROM plugin_config WHERE plugin = $1")
                        .bind(plugin)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            append(Tx::from(&mut *tx), &change, now).await?;
            tx.commit().await?;
            Ok(())
        })
    }
}
