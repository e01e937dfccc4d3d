//! Retention: deleting finished runs with their history, old events, idempotency keys
//! and finished messages, a bounded batch at a time so pruning never holds the writer
//! for long. What to keep for how long is the `retention` module's decision.

use chrono::{DateTime, Utc};

use super::{Backend, Store, StoreError, millis};

/// Pruning. Made by [`Store::retention`].
#[derive(Clone, Copy)]
pub struct Retention<'a> {
    pub(super) store: &'a Store,
}

impl Retention<'_> {
    /// Deletes up to `batch` finished runs (completed or cancelled) that finished before
    /// `cutoff`, with their history. Failed runs are kept until someone handles them.
    /// Runs that still have child rows, or whose parent is still active, wait for a later
    /// pass (children go first). Returns how many runs were deleted.
    pub async fn prune_runs(self, cutoff: DateTime<Utc>, batch: u32) -> Result<u64, StoreError> {
        match &self.store.backend {
            Backend::Sqlite(db) => super::sqlite::retention::prune_runs(db, cutoff, batch).await,
            Backend::Postgres(db) => {
                super::postgres::retention::prune_runs(db, cutoff, batch).await
            }
        }
    }

    /// Deletes up to `batch` events received before `cutoff`.
    pub async fn prune_events(self, cutoff: DateTime<Utc>, batch: u32) -> Result<u64, StoreError> {
        match &self.store.backend {
            Backend::Sqlite(db) => super::sqlite::retention::prune_events(db, cutoff, batch).await,
            Backend::Postgres(db) => {
                super::postgres::retention::prune_events(db, cutoff, batch).await
            }
        }
    }

    /// Forgets idempotency keys stored before `cutoff` (at most `batch`).
    pub async fn prune_idempotency_keys(
        self,
        cutoff: DateTime<Utc>,
        batch: u32,
    ) -> Result<u64, StoreError> {
        on_writer!(self.store, |pool| Ok(sqlx::query(
            "DELETE FROM idempotency_keys WHERE key IN
               (SELECT key FROM idempotency_keys WHERE created_at < $1 LIMIT $2)",
        )
        .bind(millis(cutoff))
        .bind(i64::from(batch))
        .execute(pool)
        .await?
        .rows_affected()))
    }

    /// Deletes up to `batch` messages that reached a final state before `cutoff`.
    pub async fn prune_outbox(self, cutoff: DateTime<Utc>, batch: u32) -> Result<u64, StoreError> {
        on_writer!(self.store, |pool| Ok(sqlx::query(
            "DELETE FROM outbox WHERE id IN (
                 SELECT id FROM outbox WHERE status IN ('sent', 'failed', 'suppressed')
                   AND updated_at < $1 LIMIT $2)",
        )
        .bind(millis(cutoff))
        .bind(i64::from(batch))
        .execute(pool)
        .await?
        .rows_affected()))
    }
}
