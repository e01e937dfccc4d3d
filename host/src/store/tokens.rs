//! API tokens: only their SHA-256 hashes are stored, with a role, a description, an
//! optional expiry and narrowing, the user they belong to, and when they were revoked and
//! last used. Creating and revoking one is audited in the same transaction.

use chrono::{DateTime, Utc};

use super::BeginWrite;
use super::audit::{Actor, Change, append};
use super::transaction::Tx;
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
    /// The user it belongs to, if any.
    pub user_id: Option<String>,
}

/// What a new token may do and for how long.
#[derive(Debug, Clone, Default)]
pub struct NewToken<'a> {
    pub role: &'a str,
    pub description: Option<&'a str>,
    pub expires_at: Option<DateTime<Utc>>,
    pub scopes: Option<&'a [String]>,
    /// The user it belongs to (its role is one of theirs).
    pub user_id: Option<&'a str>,
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
    Option<String>,
);

const COLUMNS: &str =
    "id, role, description, created_at, expires_at, revoked_at, last_used_at, scopes, user_id";

fn info(row: Row) -> TokenInfo {
    let (id, role, description, created_at, expires_at, revoked_at, last_used_at, scopes, user_id) =
        row;
    TokenInfo {
        id,
        role,
        description,
        created_at: from_millis(created_at),
        expires_at: expires_at.map(from_millis),
        revoked_at: revoked_at.map(from_millis),
        last_used_at: last_used_at.map(from_millis),
        scopes: scopes.map(|s| s.split_whitespace().map(str::to_string).collect()),
        user_id,
    }
}

impl Tokens<'_> {
    /// Stores a new token's hash (the server's first admin token; tests), audited as made
    /// by the server.
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
            &Actor::named("server"),
            now,
        )
        .await
    }

    /// Stores a new token's hash with its expiry, narrowing and user, and audits it as
    /// made by `actor`.
    pub async fn create(
        self,
        id: &str,
        token_hash: &str,
        token: &NewToken<'_>,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let scopes = token.scopes.map(|s| s.join(" "));
        let change = Change::new(actor, "token.create", id).with(serde_json::json!({
            "role": token.role,
            "user_id": token.user_id,
            "scopes": token.scopes,
            "expires_at": token.expires_at,
            "description": token.description,
        }));
        on_writer!(self.store, |pool| {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "INSERT INTO api_tokens (id, token_hash, role, description, created_at, expires_at, scopes, user_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(id)
            .bind(token_hash)
            .bind(token.role)
            .bind(token.description)
            .bind(millis(now))
            .bind(token.expires_at.map(millis))
            .bind(scopes.as_deref())
            .bind(token.user_id)
            .execute(&mut *tx)
            .await?;
            append(Tx::from(&mut *tx), &change, now).await?;
            tx.commit().await?;
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

    /// Revokes token `id` and audits it as done by `actor`; false if there is no such
    /// token or it was revoked already.
    pub async fn revoke(
        self,
        id: &str,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let change = Change::new(actor, "token.revoke", id);
        on_writer!(self.store, |pool| {
            let mut tx = pool.begin_write().await?;
            let done = sqlx::query(
                "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
            )
            .bind(millis(now))
            .bind(id)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                return Ok(false);
            }
            append(Tx::from(&mut *tx), &change, now).await?;
            tx.commit().await?;
            Ok(true)
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
