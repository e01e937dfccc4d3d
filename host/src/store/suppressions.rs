//! Suppressions: addresses mail must not go to — for every purpose (hard bounces,
//! complaints, repeated soft bounces) or for one (an unsubscribe) — and the bounce
//! reports that lead to them.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::BeginWrite;
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
        on_writer!(self.store, |pool| {
            let mut tx = pool.begin_write().await?;
            let added = add_in(
                &mut Tx::from(&mut *tx),
                &address,
                purpose,
                reason,
                detail,
                actor,
                now,
            )
            .await?;
            if added {
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

    /// Stores a bounce report and, if the policy says so, suppresses the address for every
    /// purpose — one write (on SQLite group-committed with whatever else is being written):
    /// a report is never stored without the suppression it calls for.
    pub async fn bounce(
        self,
        bounce: &Bounce,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Bounced, StoreError> {
        match &self.store.backend {
            super::Backend::Sqlite(db) => {
                super::sqlite::bounces::bounce(db, bounce, actor, now).await
            }
            super::Backend::Postgres(db) => {
                let mut transaction = db.pool.begin_write().await?;
                let bounced =
                    bounce_in(&mut Tx::from(&mut *transaction), bounce, actor, now).await?;
                transaction.commit().await?;
                Ok(bounced)
            }
        }
    }
}

/// A bounce or complaint report, and when it suppresses its address.
#[derive(Debug, Clone)]
pub struct Bounce {
    pub address: String,
    /// `hard`, `soft` or `complaint`.
    pub kind: String,
    pub status: Option<String>,
    pub detail: Option<String>,
    pub message_id: Option<String>,
    /// Soft bounces since this time count towards `soft_limit`.
    pub soft_since: DateTime<Utc>,
    /// This many soft bounces suppress the address.
    pub soft_limit: i64,
}

/// What a bounce report did.
#[derive(Debug, Clone, PartialEq)]
pub struct Bounced {
    /// Soft bounces of the address since `soft_since`, this one included.
    pub soft_bounces: i64,
    /// Why the address is now suppressed for every purpose, if the report made it so
    /// (or it was already).
    pub suppressed: Option<&'static str>,
}

/// [`Suppressions::bounce`] inside the transaction `tx`.
pub(super) async fn bounce_in(
    tx: &mut Tx<'_>,
    bounce: &Bounce,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<Bounced, StoreError> {
    let address = bounce.address.trim().to_lowercase();
    // Reports for one address at once: each sees the others' soft bounces.
    tx.lock("bounce", &address, "").await?;
    on_tx!(tx, |conn| sqlx::query(
        "INSERT INTO email_bounces (address, kind, status, detail, message_id, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&address)
    .bind(&bounce.kind)
    .bind(&bounce.status)
    .bind(&bounce.detail)
    .bind(&bounce.message_id)
    .bind(millis(now))
    .execute(conn)
    .await
    .map(|done| done.rows_affected()))?;
    let soft_bounces: i64 = on_tx!(tx, |conn| {
        sqlx::query_scalar(
            "SELECT count(*) FROM email_bounces WHERE address = $1 AND kind = 'soft' AND created_at >= $2",
        )
        .bind(&address)
        .bind(millis(bounce.soft_since))
        .fetch_one(conn)
        .await
    })?;
    let suppressed = match bounce.kind.as_str() {
        "hard" => Some("hard_bounce"),
        "complaint" => Some("complaint"),
        _ if soft_bounces >= bounce.soft_limit => Some("soft_bounces"),
        _ => None,
    };
    if let Some(reason) = suppressed {
        let detail = bounce.detail.as_deref().or(bounce.status.as_deref());
        add_in(tx, &address, "*", reason, detail, actor, now).await?;
    }
    Ok(Bounced {
        soft_bounces,
        suppressed,
    })
}

/// Suppresses `purpose` for `address` (lowercased already) inside `tx`, audited; keeps
/// the first reason. Returns whether the suppression is new.
async fn add_in(
    tx: &mut Tx<'_>,
    address: &str,
    purpose: &str,
    reason: &str,
    detail: Option<&str>,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let added = on_tx!(tx, |conn| sqlx::query(
        "INSERT INTO email_suppressions (address, purpose, reason, detail, created_at)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (address, purpose) DO NOTHING",
    )
    .bind(address)
    .bind(purpose)
    .bind(reason)
    .bind(detail)
    .bind(millis(now))
    .execute(conn)
    .await
    .map(|done| done.rows_affected()))?
        == 1;
    if added {
        let change = Change::new(actor, "suppression.add", address)
            .with(serde_json::json!({"purpose": purpose, "reason": reason}));
        append(tx.reborrow(), &change, now).await?;
    }
    Ok(added)
}
