//! Runs on SQLite: starts go through the group-commit writer; the rest are transactions
//! on the single writer connection.

use chrono::{DateTime, Utc};
use serde_json::Value as Json;
use sqlx::Row;

use super::group_commit::GroupWrite;
use super::{SqliteStore, Tx};
use crate::run::{NewJob, NewRun, RunState, Started};
use crate::store::rows::run_state;
use crate::store::runs::{IdempotentStart, RetryRefused, StoredAnswer};
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
    let mut tx = db.writer.begin().await?;
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
    insert_run(&mut tx, run, db.version_stored(&run.version), now).await?;
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
        "SELECT id, workflow, version, status, input, context, parent_id, step_count, created_at
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
    let mut tx = db.writer.begin().await?;
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
        super::events::wake_parent(&mut tx, &parent, now).await?;
    }
    tx.commit().await?;
    Ok(Some(cancelled))
}

/// Puts a failed run back to work at the step that failed, with a fresh attempt
/// count; the run keeps its workflow version. Returns the step, or why not.
pub(in crate::store) async fn retry(
    db: &SqliteStore,
    id: &str,
    now: DateTime<Utc>,
) -> Result<Result<String, RetryRefused>, StoreError> {
    let mut tx = db.writer.begin().await?;
    let row = sqlx::query("SELECT status, current_step FROM runs WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = row else {
        return Ok(Err(RetryRefused::NotFound));
    };
    let status: String = row.get("status");
    let step: Option<String> = row.get("current_step");
    let Some(step) = step.filter(|_| status == "failed") else {
        return Ok(Err(RetryRefused::NotFailed(status)));
    };
    sqlx::query("UPDATE runs SET status = 'running', error = NULL, finished_at = NULL, updated_at = ? WHERE id = ?")
        .bind(millis(now))
        .bind(id)
        .execute(&mut *tx)
        .await?;
    insert_job(&mut tx, id, &NewJob::step(&step, now)).await?;
    tx.commit().await?;
    Ok(Ok(step))
}

/// Inserts a run and its first job; `version_stored` skips storing the workflow version.
pub(super) async fn insert_run(
    tx: &mut Tx<'_>,
    run: &NewRun,
    version_stored: bool,
    now: DateTime<Utc>,
) -> Result<Started, StoreError> {
    if let Some(key) = &run.trigger_key {
        let existing: Option<String> =
            sqlx::query_scalar("SELECT id FROM runs WHERE trigger_key = ?")
                .bind(key)
                .fetch_optional(&mut **tx)
                .await?;
        if let Some(run_id) = existing {
            return Ok(Started {
                run_id,
                created: false,
            });
        }
    }
    if !version_stored {
        sqlx::query(
            "INSERT INTO workflow_versions (version, name, source, created_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (version) DO NOTHING",
        )
        .bind(&run.version)
        .bind(&run.workflow)
        .bind(&run.source)
        .bind(millis(now))
        .execute(&mut **tx)
        .await?;
    }
    sqlx::query(
        "INSERT INTO runs (id, workflow, version, status, input, context, current_step, parent_id,
                           trigger_key, events_after, created_at, updated_at)
         VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, (SELECT coalesce(max(id), 0) FROM events), ?, ?)",
    )
    .bind(&run.id)
    .bind(&run.workflow)
    .bind(&run.version)
    .bind(run.input.to_string())
    .bind(serde_json::json!({"vars": {}, "steps": {}}).to_string())
    .bind(&run.first_step)
    .bind(&run.parent_id)
    .bind(&run.trigger_key)
    .bind(millis(now))
    .bind(millis(now))
    .execute(&mut **tx)
    .await?;
    insert_job(tx, &run.id, &NewJob::step(&run.first_step, run.due_at)).await?;
    Ok(Started {
        run_id: run.id.clone(),
        created: true,
    })
}

pub(super) async fn insert_job(
    tx: &mut Tx<'_>,
    run_id: &str,
    job: &NewJob,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO jobs (run_id, kind, step, timer, payload, due_at, attempt) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(run_id)
    .bind(job.kind.as_str())
    .bind(&job.step)
    .bind(&job.timer)
    .bind(job.payload.as_ref().map(Json::to_string))
    .bind(millis(job.due_at))
    .bind(i64::from(job.attempt))
    .execute(&mut **tx)
    .await?;
    Ok(())
}
