//! Runs on SQLite: starts go through the group-commit writer; the rest are transactions
//! on the single writer connection.

use crate::store::BeginWrite;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::SqliteStore;
use super::group_commit::GroupWrite;
use crate::run::{NewRun, RunState, Started};
use crate::store::rows::run_state;
use crate::store::runs::{IdempotentStart, StoredAnswer};
use crate::store::transaction::Tx as AnyTx;
use crate::store::{StoreError, millis};

/// Starts runs (each with its first job), idempotently by trigger key.
pub(in crate::store) async fn start(
    db: &SqliteStore,
    runs: &[NewRun],
    now: DateTime<Utc>,
) -> Result<Vec<Started>, StoreError> {
    let runs_with_versions = runs
        .iter()
        .map(|r| (r.clone(), db.version_stored(&r.version)))
        .collect();
    let started = GroupWrite::submit(&db.group, |reply| GroupWrite::Start {
        runs: runs_with_versions,
        now,
        reply,
    })
    .await?;
    let mut stored = db.stored_versions.lock().unwrap_or_else(|e| e.into_inner());
    stored.extend(runs.iter().map(|r| r.version.clone()));
    Ok(started)
}

/// Starts `run` unless `key` was used before; stores the answer for replays.
pub(in crate::store) async fn start_once(
    db: &SqliteStore,
    run: &NewRun,
    key: &str,
    request_hash: &str,
    answer: &StoredAnswer,
    now: DateTime<Utc>,
) -> Result<IdempotentStart, StoreError> {
    let mut tx = db.writer.begin_write().await?;
    let existing =
        sqlx::query("SELECT request_hash, status, response FROM idempotency_keys WHERE key = ?")
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
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(key)
    .bind(request_hash)
    .bind(i64::from(answer.status))
    .bind(&answer.body)
    .bind(&run.id)
    .bind(millis(now))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    db.stored_versions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(run.version.clone());
    Ok(IdempotentStart::Started)
}

pub(in crate::store) async fn load(
    db: &SqliteStore,
    ids: &[&str],
) -> Result<Vec<RunState>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, workflow, version, status, input, context, parent_id, depth, step_count, created_at
         FROM runs WHERE id IN (SELECT value FROM json_each(?))",
    )
    .bind(serde_json::to_string(ids)?)
    .fetch_all(&db.reader)
    .await?;
    rows.iter().map(run_state).collect()
}

/// Cancels a run that has not finished, and all its descendants; returns the
/// cancelled run ids, or `None` if the run does not exist.
pub(in crate::store) async fn cancel(
    db: &SqliteStore,
    id: &str,
    now: DateTime<Utc>,
) -> Result<Option<Vec<String>>, StoreError> {
    let mut tx = db.writer.begin_write().await?;
    let parent: Option<Option<String>> =
        sqlx::query_scalar("SELECT parent_id FROM runs WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(parent) = parent else {
        return Ok(None);
    };
    let cancelled: Vec<String> = sqlx::query_scalar(
        "WITH RECURSIVE tree(id) AS (SELECT ?1 UNION ALL SELECT r.id FROM runs r JOIN tree ON r.parent_id = tree.id)
         UPDATE runs SET status = 'cancelled', error = 'cancelled', updated_at = ?2, finished_at = ?2
         WHERE id IN (SELECT id FROM tree) AND status IN ('running', 'waiting')
         RETURNING id",
    )
    .bind(id)
    .bind(millis(now))
    .fetch_all(&mut *tx)
    .await?;
    let ids = serde_json::to_string(&cancelled)?;
    sqlx::query("DELETE FROM jobs WHERE run_id IN (SELECT value FROM json_each(?))")
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM waits WHERE run_id IN (SELECT value FROM json_each(?))")
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    if let Some(parent) = parent.filter(|_| cancelled.iter().any(|c| c == id)) {
        crate::store::events::wake_parent(&mut AnyTx::from(&mut *tx), &parent, now).await?;
    }
    tx.commit().await?;
    Ok(Some(cancelled))
}

/// A run to insert with [`insert_runs`].
pub(in crate::store) struct RunRow<'a> {
    pub run: &'a NewRun,
    /// The id of the event that started it; `None`: the newest event's.
    pub events_after: Option<i64>,
    pub created: DateTime<Utc>,
}

/// Inserts runs with one statement; `skip_existing` skips a run whose trigger key exists
/// already instead of failing. Returns the ids inserted. The runs' versions must be
/// stored already; their first jobs are the caller's.
pub(in crate::store) async fn insert_runs(
    conn: &mut sqlx::SqliteConnection,
    runs: &[RunRow<'_>],
    skip_existing: bool,
) -> Result<Vec<String>, StoreError> {
    let rows: Vec<serde_json::Value> = runs
        .iter()
        .map(
            |RunRow {
                 run: r,
                 events_after,
                 created,
             }| {
                serde_json::json!({
                    "id": r.id, "workflow": r.workflow, "version": r.version,
                    "input": r.input.to_string(), "first_step": r.first_step,
                    "parent": r.parent_id, "depth": r.depth, "key": r.trigger_key,
                    "domain": r.domain, "events_after": events_after, "created": millis(*created),
                })
            },
        )
        .collect();
    // `WHERE true` tells SQLite's parser that the `ON CONFLICT` after it is the upsert's.
    const INSERT: &str = "INSERT INTO runs (id, workflow, version, status, input, context, current_step,
                           parent_id, depth, trigger_key, events_after, created_at, updated_at, domain)
         SELECT value ->> '$.id', value ->> '$.workflow', value ->> '$.version', 'running',
                value ->> '$.input', ?2, value ->> '$.first_step', value ->> '$.parent',
                value ->> '$.depth', value ->> '$.key',
                coalesce(value ->> '$.events_after', (SELECT coalesce(max(id), 0) FROM events)),
                value ->> '$.created', value ->> '$.created', value ->> '$.domain'
         FROM json_each(?1) WHERE true";
    let sql = if skip_existing {
        format!("{INSERT} ON CONFLICT (trigger_key) DO NOTHING RETURNING id")
    } else {
        format!("{INSERT} RETURNING id")
    };
    Ok(sqlx::query_scalar(&sql)
        .bind(serde_json::Value::Array(rows).to_string())
        .bind(crate::store::runs::FRESH_CONTEXT)
        .fetch_all(conn)
        .await?)
}
