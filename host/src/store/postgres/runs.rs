//! Runs on PostgreSQL: every transaction that adds jobs notifies the other processes;
//! idempotency keys and retries lock what two processes could race on.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::PgStore;
use crate::run::{NewRun, RunState, Started};
use crate::store::rows::run_state;
use crate::store::runs::{IdempotentStart, StoredAnswer};
use crate::store::transaction::{Notice, Tx as AnyTx};
use crate::store::{StoreError, millis};

pub(in crate::store) async fn start(
    db: &PgStore,
    runs: &[NewRun],
    now: DateTime<Utc>,
) -> Result<Vec<Started>, StoreError> {
    let mut tx = db.pool.begin().await?;
    let mut started = Vec::with_capacity(runs.len());
    for run in runs {
        started.push(
            crate::store::runs::insert_run(
                &mut AnyTx::from(&mut *tx),
                run,
                db.version_stored(&run.version),
                now,
            )
            .await?,
        );
    }
    super::notify(&mut tx, Notice::Work).await?;
    tx.commit().await?;
    db.versions_stored(runs.iter().map(|r| &r.version));
    Ok(started)
}

pub(in crate::store) async fn start_once(
    db: &PgStore,
    run: &NewRun,
    key: &str,
    request_hash: &str,
    answer: &StoredAnswer,
    now: DateTime<Utc>,
) -> Result<IdempotentStart, StoreError> {
    let mut tx = db.pool.begin().await?;
    // Two processes given the same key at once: the second waits here and replays.
    AnyTx::from(&mut *tx).lock("idempotency", key, "").await?;
    let existing =
        sqlx::query("SELECT request_hash, status, response FROM idempotency_keys WHERE key = $1")
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
    if let Some(row) = existing {
        return Ok(IdempotentStart::Replay {
            request_hash: row.get("request_hash"),
            answer: StoredAnswer {
                status: row.get::<i64, _>("status") as u16,
                body: row.get("response"),
            },
        });
    }
    crate::store::runs::insert_run(
        &mut AnyTx::from(&mut *tx),
        run,
        db.version_stored(&run.version),
        now,
    )
    .await?;
    sqlx::query(
        "INSERT INTO idempotency_keys (key, request_hash, status, response, run_id, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(key)
    .bind(request_hash)
    .bind(i64::from(answer.status))
    .bind(&answer.body)
    .bind(&run.id)
    .bind(millis(now))
    .execute(&mut *tx)
    .await?;
    super::notify(&mut tx, Notice::Work).await?;
    tx.commit().await?;
    db.versions_stored([&run.version]);
    Ok(IdempotentStart::Started)
}

pub(in crate::store) async fn load(
    db: &PgStore,
    ids: &[&str],
) -> Result<Vec<RunState>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, workflow, version, status, input, context, parent_id, depth, step_count, created_at
         FROM runs WHERE id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(run_state).collect()
}

pub(in crate::store) async fn cancel(
    db: &PgStore,
    id: &str,
    now: DateTime<Utc>,
) -> Result<Option<Vec<String>>, StoreError> {
    let mut tx = db.pool.begin().await?;
    let parent: Option<Option<String>> =
        sqlx::query_scalar("SELECT parent_id FROM runs WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(parent) = parent else {
        return Ok(None);
    };
    let cancelled: Vec<String> = sqlx::query_scalar(
        "WITH RECURSIVE tree(id) AS (SELECT $1::text COLLATE \"C\" UNION ALL SELECT r.id FROM runs r JOIN tree ON r.parent_id = tree.id)
         UPDATE runs SET status = 'cancelled', error = 'cancelled', updated_at = $2, finished_at = $2
         WHERE id IN (SELECT id FROM tree) AND status IN ('running', 'waiting')
         RETURNING id",
    )
    .bind(id)
    .bind(millis(now))
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM jobs WHERE run_id = ANY($1)")
        .bind(&cancelled)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM waits WHERE run_id = ANY($1)")
        .bind(&cancelled)
        .execute(&mut *tx)
        .await?;
    if let Some(parent) = parent.filter(|_| cancelled.iter().any(|c| c == id)) {
        crate::store::events::wake_parent(&mut AnyTx::from(&mut *tx), &parent, now).await?;
    }
    super::notify(&mut tx, Notice::Work).await?;
    tx.commit().await?;
    Ok(Some(cancelled))
}
