//! Pruning on SQLite: id lists go in as one JSON array (`json_each`).

use crate::store::BeginWrite;
use chrono::{DateTime, Utc};

use super::SqliteStore;
use crate::store::{StoreError, millis};

/// Deletes up to `batch` finished runs (completed or cancelled) that finished before
/// `cutoff`, with their history. Failed runs are kept until someone handles them.
/// Runs that still have child rows, or whose parent is still active, wait for a later
/// pass (children go first). Returns how many runs were deleted.
pub(in crate::store) async fn prune_runs(
    db: &SqliteStore,
    cutoff: DateTime<Utc>,
    batch: u32,
) -> Result<u64, StoreError> {
    let mut tx = db.writer.begin_write().await?;
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT r.id FROM runs r
         WHERE r.status IN ('completed', 'cancelled') AND r.finished_at < ?1
           AND NOT EXISTS (SELECT 1 FROM runs c WHERE c.parent_id = r.id)
           AND NOT EXISTS (SELECT 1 FROM runs p WHERE p.id = r.parent_id AND p.status IN ('running', 'waiting'))
         LIMIT ?2",
    )
    .bind(millis(cutoff))
    .bind(i64::from(batch))
    .fetch_all(&mut *tx)
    .await?;
    if ids.is_empty() {
        return Ok(0);
    }
    let ids = serde_json::to_string(&ids)?;
    for statement in [
        "DELETE FROM step_runs WHERE run_id IN (SELECT value FROM json_each(?))",
        "DELETE FROM consumed_events WHERE run_id IN (SELECT value FROM json_each(?))",
        "DELETE FROM effects WHERE run_id IN (SELECT value FROM json_each(?))",
        "DELETE FROM jobs WHERE run_id IN (SELECT value FROM json_each(?))",
        "DELETE FROM waits WHERE run_id IN (SELECT value FROM json_each(?))",
    ] {
        sqlx::query(statement).bind(&ids).execute(&mut *tx).await?;
    }
    let deleted = sqlx::query("DELETE FROM runs WHERE id IN (SELECT value FROM json_each(?))")
        .bind(&ids)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(deleted)
}

/// Deletes up to `batch` events received before `cutoff`.
pub(in crate::store) async fn prune_events(
    db: &SqliteStore,
    cutoff: DateTime<Utc>,
    batch: u32,
) -> Result<u64, StoreError> {
    let mut tx = db.writer.begin_write().await?;
    let ids: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM events WHERE received_at < ? ORDER BY id LIMIT ?")
            .bind(millis(cutoff))
            .bind(i64::from(batch))
            .fetch_all(&mut *tx)
            .await?;
    let ids = serde_json::to_string(&ids)?;
    sqlx::query("DELETE FROM consumed_events WHERE event_id IN (SELECT value FROM json_each(?))")
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    let deleted = sqlx::query("DELETE FROM events WHERE id IN (SELECT value FROM json_each(?))")
        .bind(&ids)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(deleted)
}
