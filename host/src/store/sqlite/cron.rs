//! Cron firings on SQLite: the firing, its run and the cursor in one writer transaction.

use crate::store::BeginWrite;
use chrono::{DateTime, Utc};

use super::SqliteStore;
use crate::run::NewRun;
use crate::store::transaction::Tx as AnyTx;
use crate::store::{StoreError, millis};

/// Records one firing and starts its run, unless this (workflow, local time) fired
/// already; moves the cursor. Returns whether a run was started.
pub(in crate::store) async fn fire(
    db: &SqliteStore,
    workflow: &str,
    local_time: &str,
    run: Option<&NewRun>,
    checked_to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let mut tx = db.writer.begin_write().await?;
    let mut fired = false;
    if let Some(run) = run {
        let inserted = sqlx::query(
            "INSERT INTO cron_firings (workflow, local_time, fired_at, run_id) VALUES (?, ?, ?, ?)
             ON CONFLICT (workflow, local_time) DO NOTHING",
        )
        .bind(workflow)
        .bind(local_time)
        .bind(millis(now))
        .bind(&run.id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 1 {
            crate::store::runs::insert_run(&mut AnyTx::from(&mut *tx), run, false, now).await?;
            fired = true;
        }
    }
    sqlx::query(
        "INSERT INTO cron_cursors (workflow, checked_to) VALUES (?1, ?2)
         ON CONFLICT (workflow) DO UPDATE SET checked_to = max(checked_to, ?2)",
    )
    .bind(workflow)
    .bind(millis(checked_to))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(fired)
}
