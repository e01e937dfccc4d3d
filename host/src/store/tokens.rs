//! API tokens: only their SHA-256 hashes are stored, with a role and a description.

use chrono::{DateTime, Utc};

use super::{Store, StoreError, millis};

/// API tokens. Made by [`Store::tokens`].
#[derive(Clone, Copy)]
pub struct Tokens<'a> {
    pub(super) store: &'a Store,
}

impl Tokens<'_> {
    /// Stores a new token's hash.
    pub async fn insert(
        self,
        id: &str,
        token_hash: &str,
        role: &str,
        description: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_writer!(self.store, |pool| {
            sqlx::query("INSERT INTO api_tokens (id, token_hash, role, description, created_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(id)
                .bind(token_hash)
                .bind(role)
                .bind(description)
                .bind(millis(now))
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// How many tokens exist (none: the first start creates an admin token).
    pub async fn count(self) -> Result<i64, StoreError> {
        on_reader!(self.store, |pool| Ok(sqlx::query_scalar(
            "SELECT count(*) FROM api_tokens"
        )
        .fetch_one(pool)
        .await?))
    }

    /// The role of the token with this hash, if any.
    pub async fn role(self, token_hash: &str) -> Result<Option<String>, StoreError> {
        on_reader!(self.store, |pool| Ok(sqlx::query_scalar(
            "SELECT role FROM api_tokens WHERE token_hash = $1"
        )
        .bind(token_hash)
        .fetch_optional(pool)
        .await?))
    }
}
