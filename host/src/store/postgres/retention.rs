//! Pruning on PostgreSQL: id lists go in as arrays (`= ANY($1)`); rows other processes
//! are pruning right now are skipped.

use chrono::{DateTime, Utc};

use super::PgStore;
use crate::store::{StoreError, millis};

pub(in crate::store) async fn prune_runs(
    db: &PgStore,
    cutoff: DateTime<Utc>,
    batch: u32,
) -> Result<u64, StoreError> {
    let mut tx = db.pool.begin().await?;
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT r.id FROM runs r
         WHERE r.status IN ('completed', 'cancelled') AND r.finished_at < $1
           AND NOT EXISTS (SELECT 1 FROM runs c WHERE c.parent_id = r.id)
           AND NOT EXISTS (SELECT 1 FROM runs p WHERE p.id = r.parent_id AND p.status IN ('running', 'waiting'))
         LIMIT $2
         FOR UPDATE SKIP LOCKED",
    )
    .bind(millis(cutoff))
    .bind(i64::from(batch))
    .fetch_all(&mut *tx)
    .await?;
    if ids.is_empty() {
        return Ok(0);
    }
    for statement in [
        "DELETE FROM step_runs WHERE run_id = ANY($1)",
        "DELETE FROM consumed_events WHERE run_id = ANY($1)",
        "DELETE FROM effects WHERE run_id = ANY($1)",
        "DELETE FROM jobs WHERE run_id = ANY($1)",
        "DELETE FROM waits WHERE run_id = ANY($1)",
    ] {
        sqlx::query(statement).bind(&ids).execute(&mut *tx).await?;
    }
    let deleted = sqlx::query("DELETE FROM runs WHERE id = ANY($1)")
        .bind(&ids)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(deleted)
}

pub(in crate::store) async fn prune_events(
    db: &PgStore,
    cutoff: DateTime<Utc>,
    batch: u32,
) -> Result<u64, StoreError> {
    let mut tx = db.pool.begin().await?;
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM events WHERE received_at < $1 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED",
    )
    .bind(millis(cutoff))
    .bind(i64::from(batch))
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM consumed_events WHERE event_id = ANY($1)")
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    let deleted = sqlx::query("DELETE FROM events WHERE id = ANY($1)")
        .bind(&ids)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(deleted)
}
