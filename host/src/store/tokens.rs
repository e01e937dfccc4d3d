//! API tokens: only their SHA-256 hashes are stored, with a role, a description, an
//! optional expiry and narrowing, and when they were revoked and last used.

use chrono::{DateTime, Utc};

use super::{Store, StoreError, from_millis, millis};

/// API tokens. Made by [`Store::tokens`].
#[derive(Clone, Copy)]
pub struct Tokens<'a> {
    pub(super) store: &'a Store,
}

/// A token as stored (never the token itself).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub role: String,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// The permissions it is narrowed to; `None`: all of its role's.
    pub scopes: Option<Vec<String>>,
}

/// What a new token may do and for how long.
#[derive(Debug, Clone, Default)]
pub struct NewToken<'a> {
    pub role: &'a str,
    pub description: Option<&'a str>,
    pub expires_at: Option<DateTime<Utc>>,
    pub scopes: Option<&'a [String]>,
}

type Row = (
    String,
    String,
    Option<String>,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

const COLUMNS: &str =
    "id, role, description, created_at, expires_at, revoked_at, last_used_at, scopes";

fn info(row: Row) -> TokenInfo {
    let (id, role, description, created_at, expires_at, revoked_at, last_used_at, scopes) = row;
    TokenInfo {
        id,
        role,
        description,
        created_at: from_millis(created_at),
        expires_at: expires_at.map(from_millis),
        revoked_at: revoked_at.map(from_millis),
        last_used_at: last_used_at.map(from_millis),
        scopes: scopes.map(|s| s.split_whitespace().map(str::to_string).collect()),
    }
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
        self.create(
            id,
            token_hash,
            &NewToken {
                role,
                description,
                ..NewToken::default()
            },
            now,
        )
        .await
    }

    /// Stores a new token's hash with its expiry and narrowing.
    pub async fn create(
        self,
        id: &str,
        token_hash: &str,
        token: &NewToken<'_>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let scopes = token.scopes.map(|s| s.join(" "));
        on_writer!(self.store, |pool| {
            sqlx::query(
                "INSERT INTO api_tokens (id, token_hash, role, description, created_at, expires_at, scopes) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(id)
            .bind(token_hash)
            .bind(token.role)
            .bind(token.description)
            .bind(millis(now))
            .bind(token.expires_at.map(millis))
            .bind(scopes.as_deref())
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

    /// The token with this hash, revoked and expired ones included.
    pub async fn find(self, token_hash: &str) -> Result<Option<TokenInfo>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM api_tokens WHERE token_hash = $1");
        let row: Option<Row> = on_reader!(self.store, |pool| sqlx::query_as(&sql)
            .bind(token_hash)
            .fetch_optional(pool)
            .await)?;
        Ok(row.map(info))
    }

    /// Every token, oldest first.
    pub async fn list(self) -> Result<Vec<TokenInfo>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM api_tokens ORDER BY created_at, id");
        let rows: Vec<Row> = on_reader!(self.store, |pool| sqlx::query_as(&sql)
            .fetch_all(pool)
            .await)?;
        Ok(rows.into_iter().map(info).collect())
    }

    /// Revokes token `id`; false if there is no such token or it was revoked already.
    pub async fn revoke(self, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        on_writer!(self.store, |pool| {
            let done = sqlx::query(
                "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
            )
            .bind(millis(now))
            .bind(id)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Records that token `id` was used now.
    pub async fn touch(self, id: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        on_writer!(self.store, |pool| {
            sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
                .bind(millis(now))
                .bind(id)
                .execute(pool)
                .await?;
            Ok(())
        })
    }
}
