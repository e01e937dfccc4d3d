//! Records: what `record` steps wrote (a lead's routing, a recipient's state), and the
//! idempotency keys of every applied effect.

use serde_json::Value as Json;
use sqlx::Row;

use super::rows::json_of;
use super::{Store, StoreError};

/// Records and effect keys. Made by [`Store::records`].
#[derive(Clone, Copy)]
pub struct Records<'a> {
    pub(super) store: &'a Store,
}

impl Records<'_> {
    /// Records of a collection, by key, for the API and tests.
    pub async fn list(self, collection: &str) -> Result<Vec<(String, Json)>, StoreError> {
        on_reader!(self.store, |pool| {
            let rows =
                sqlx::query("SELECT key, data FROM records WHERE collection = $1 ORDER BY key")
                    .bind(collection)
                    .fetch_all(pool)
                    .await?;
            rows.iter()
                .map(|r| Ok((r.get("key"), json_of(r, "data")?)))
                .collect()
        })
    }

    /// All effect idempotency keys, in commit order (crash tests compare them).
    pub async fn effect_keys(self) -> Result<Vec<String>, StoreError> {
        on_reader!(self.store, |pool| Ok(sqlx::query_scalar(
            "SELECT idempotency_key FROM effects ORDER BY id"
        )
        .fetch_all(pool)
        .await?))
    }
}
