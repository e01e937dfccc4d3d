//! Cron firings on PostgreSQL: the firing, its run and the cursor in one transaction;
//! the cursor only moves forward, whichever process wrote last.

use chrono::{DateTime, Utc};

use super::PgStore;
use crate::run::NewRun;
use crate::store::transaction::{Notice, Tx as AnyTx};
use crate::store::{StoreError, millis};

pub(in crate::store) async fn fire(
    db: &PgStore,
    workflow: &str,
    local_time: &str,
    run: Option<&NewRun>,
    checked_to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let mut tx = db.pool.begin().await?;
    let mut fired = false;
    if let Some(run) = run {
        let inserted = sqlx::query(
            "INSERT INTO cron_firings (workflow, local_time, fired_at, run_id) VALUES ($1, $2, $3, $4)
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
            super::notify(&mut tx, Notice::Work).await?;
            fired = true;
        }
    }
    sqlx::query(
        "INSERT INTO cron_cursors (workflow, checked_to) VALUES ($1, $2)
         ON CONFLICT (workflow) DO UPDATE SET checked_to = GREATEST(cron_cursors.checked_to, $2)",
    )
    .bind(workflow)
    .bind(millis(checked_to))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(fired)
}
