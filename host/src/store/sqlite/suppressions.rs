//! Bounces on SQLite: the single writer serializes concurrent reports for an address.

use chrono::{DateTime, Utc};

use super::SqliteStore;
use crate::store::suppressions::Bounce;
use crate::store::{StoreError, millis};

/// Stores a bounce report; returns how many soft bounces `address` had since `since`.
pub(in crate::store) async fn record_bounce(
    db: &SqliteStore,
    bounce: &Bounce<'_>,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let address = &bounce.address;
    let mut tx = db.writer.begin().await?;
    sqlx::query(
        "INSERT INTO email_bounces (address, kind, status, detail, message_id, created_at)
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(address)
    .bind(bounce.kind)
    .bind(bounce.status)
    .bind(bounce.detail)
    .bind(bounce.message_id)
    .bind(millis(now))
    .execute(&mut *tx)
    .await?;
    let soft: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM email_bounces WHERE address = ? AND kind = 'soft' AND created_at >= ?",
    )
    .bind(address)
    .bind(millis(since))
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(soft)
}
