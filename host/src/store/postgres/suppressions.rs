//! Bounces on PostgreSQL: reports for one address are serialized with an advisory lock,
//! so the soft-bounce count each report sees is exact.

use chrono::{DateTime, Utc};

use super::PgStore;
use crate::store::suppressions::Bounce;
use crate::store::{StoreError, millis};

pub(in crate::store) async fn record_bounce(
    db: &PgStore,
    bounce: &Bounce<'_>,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let address = &bounce.address;
    let mut tx = db.pool.begin().await?;
    super::lock(&mut tx, "bounce", address, "").await?;
    sqlx::query(
        "INSERT INTO email_bounces (address, kind, status, detail, message_id, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
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
        "SELECT count(*) FROM email_bounces WHERE address = $1 AND kind = 'soft' AND created_at >= $2",
    )
    .bind(address)
    .bind(millis(since))
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(soft)
}
