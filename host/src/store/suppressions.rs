//! Suppressions: addresses mail must not go to — for every purpose (hard bounces,
//! complaints, repeated soft bounces) or for one (an unsubscribe) — and the bounce
//! reports that lead to them.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::audit::{Actor, Change, append};
use super::rows::suppression;
use super::transaction::{Tx, on_tx};
use super::{Store, StoreError, millis};

/// The suppression list. Made by [`Store::suppressions`].
#[derive(Clone, Copy)]
pub struct Suppressions<'a> {
    pub(super) store: &'a Store,
}

/// Why mail does not go to an address.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Suppression {
    pub address: String,
    /// `*` (every purpose) or the purpose unsubscribed from.
    pub purpose: String,
    /// hard_bounce, complaint, soft_bounces or unsubscribed
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl Suppressions<'_> {
    /// Why mail for `purpose` may not go to `address`, if it may not: a suppression for
    /// every purpose, or an unsubscribe from this one.
    pub async fn find(
        self,
        address: &str,
        purpose: &str,
    ) -> Result<Option<Suppression>, StoreError> {
        on_reader!(self.store, |pool| {
            let row = sqlx::query(
                "SELECT address, purpose, reason, detail, created_at FROM email_suppressions
                 WHERE address = $1 AND (purpose = '*' OR purpose = $2)
                 ORDER BY purpose = '*' DESC LIMIT 1",
            )
            .bind(address.trim().to_lowercase())
            .bind(purpose)
            .fetch_optional(pool)
            .await?;
            Ok(row.map(|r| suppression(&r)))
        })
    }

    /// Blocks `purpose` (`*`: every purpose) for `address`, audited as done by `actor`.
    /// Keeps the first reason; returns whether the suppression is new.
    pub async fn add(
        self,
        address: &str,
        purpose: &str,
        reason: &str,
        detail: Option<&str>,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let address = address.trim().to_lowercase();
        let change = Change::new(actor, "suppression.add", &address)
            .with(serde_json::json!({"purpose": purpose, "reason": reason}));
        on_writer!(self.store, |pool| {
            let mut tx = pool.begin().await?;
            let added = sqlx::query(
                "INSERT INTO email_suppressions (address, purpose, reason, detail, created_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (address, purpose) DO NOTHING",
            )
            .bind(&address)
            .bind(purpose)
            .bind(reason)
            .bind(detail)
            .bind(millis(now))
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if added {
                append(Tx::from(&mut *tx), &change, now).await?;
                tx.commit().await?;
            }
            Ok(added)
        })
    }

    /// Suppressions of one address, or all (newest first).
    pub async fn list(
        self,
        address: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Suppression>, StoreError> {
        on_reader!(self.store, |pool| {
            let rows = sqlx::query(
                "SELECT address, purpose, reason, detail, created_at FROM email_suppressions
                 WHERE CAST($1 AS TEXT) IS NULL OR address = $1 ORDER BY created_at DESC, address LIMIT $2",
            )
            .bind(address.map(|a| a.trim().to_lowercase()))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            Ok(rows.iter().map(suppression).collect())
        })
    }

    /// Stores a bounce report; returns how many soft bounces `address` had since `since`.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_bounce(
        self,
        address: &str,
        kind: &str,
        status: Option<&str>,
        detail: Option<&str>,
        message_id: Option<&str>,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let address = address.trim().to_lowercase();
        on_writer!(self.store, |pool| {
            let mut transaction = pool.begin().await?;
            let tx = &mut Tx::from(&mut *transaction);
            // Reports for one address at once: each sees the others' soft bounces.
            tx.lock("bounce", &address, "").await?;
            on_tx!(tx, |conn| sqlx::query(
                "INSERT INTO email_bounces (address, kind, status, detail, message_id, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&address)
            .bind(kind)
            .bind(status)
            .bind(detail)
            .bind(message_id)
            .bind(millis(now))
            .execute(conn)
            .await
            .map(|done| done.rows_affected()))?;
            let soft: i64 = on_tx!(tx, |conn| {
                sqlx::query_scalar(
                "SELECT count(*) FROM email_bounces WHERE address = $1 AND kind = 'soft' AND created_at >= $2",
            )
            .bind(&address)
            .bind(millis(since))
            .fetch_one(conn)
            .await
            })?;
            transaction.commit().await?;
            Ok(soft)
        })
    }
}
