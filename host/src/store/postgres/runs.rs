//! Runs on PostgreSQL: every transaction that adds jobs notifies the other processes;
//! idempotency keys and retries lock what two processes could race on.

use chrono::{DateTime, Utc};
use serde_json::Value as Json;
use sqlx::Row;

use super::{PgStore, Tx};
use crate::run::{NewJob, NewRun, RunState, Started};
use crate::store::rows::run_state;
use crate::store::runs::{IdempotentStart, RetryRefused, StoredAnswer};
use crate::store::{StoreError, millis};

pub(in crate::store) async fn start(
    db: &PgStore,
    runs: &[NewRun],
    now: DateTime<Utc>,
) -> Result<Vec<Started>, StoreError> {
    let mut tx = db.pool.begin().await?;
    let mut started = Vec::with_capacity(runs.len());
    for run in runs {
        started.push(insert_run(&mut tx, run, db.version_stored(&run.version), now).await?);
    }
    super::notify(&mut tx, super::WORK_CHANNEL).await?;
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
    super::lock(&mut tx, "idempotency", key, "").await?;
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
    insert_run(&mut tx, run, db.version_stored(&run.version), now).await?;
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
    super::notify(&mut tx, super::WORK_CHANNEL).await?;
    tx.commit().await?;
    db.versions_stored([&run.version]);
    Ok(IdempotentStart::Started)
}

pub(in crate::store) async fn load(
    db: &PgStore,
    ids: &[&str],
) -> Result<Vec<RunState>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, workflow, version, status, input, context, parent_id, step_count, created_at
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
        super::events::wake_parent(&mut tx, &parent, now).await?;
    }
    super::notify(&mut tx, super::WORK_CHANNEL).await?;
    tx.commit().await?;
    Ok(Some(cancelled))
}

pub(in crate::store) async fn retry(
    db: &PgStore,
    id: &str,
    now: DateTime<Utc>,
) -> Result<Result<String, RetryRefused>, StoreError> {
    let mut tx = db.pool.begin().await?;
    let row = sqlx::query("SELECT status, current_step FROM runs WHERE id = $1 FOR UPDATE")
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
    sqlx::query("UPDATE runs SET status = 'running', error = NULL, finished_at = NULL, updated_at = $1 WHERE id = $2")
        .bind(millis(now))
        .bind(id)
        .execute(&mut *tx)
        .await?;
    insert_jobs(&mut tx, &[(id, &NewJob::step(&step, now))]).await?;
    super::notify(&mut tx, super::WORK_CHANNEL).await?;
    tx.commit().await?;
    Ok(Ok(step))
}

pub(super) async fn insert_run(
    tx: &mut Tx<'_>,
    run: &NewRun,
    version_stored: bool,
    now: DateTime<Utc>,
) -> Result<Started, StoreError> {
    if let Some(key) = &run.trigger_key {
        let existing: Option<String> =
            sqlx::query_scalar("SELECT id FROM runs WHERE trigger_key = $1")
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
            "INSERT INTO workflow_versions (version, name, source, created_at) VALUES ($1, $2, $3, $4)
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
         VALUES ($1, $2, $3, 'running', $4, $5, $6, $7, $8, (SELECT coalesce(max(id), 0) FROM events), $9, $9)",
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
    .execute(&mut **tx)
    .await?;
    insert_jobs(tx, &[(&run.id, &NewJob::step(&run.first_step, run.due_at))]).await?;
    Ok(Started {
        run_id: run.id.clone(),
        created: true,
    })
}

/// Inserts many jobs with one statement.
pub(super) async fn insert_jobs(
    tx: &mut Tx<'_>,
    jobs: &[(&str, &NewJob)],
) -> Result<(), StoreError> {
    if jobs.is_empty() {
        return Ok(());
    }
    let mut run_ids = Vec::with_capacity(jobs.len());
    let mut kinds = Vec::with_capacity(jobs.len());
    let mut steps = Vec::with_capacity(jobs.len());
    let mut timers = Vec::with_capacity(jobs.len());
    let mut payloads = Vec::with_capacity(jobs.len());
    let mut dues = Vec::with_capacity(jobs.len());
    let mut attempts = Vec::with_capacity(jobs.len());
    for (run_id, job) in jobs {
        run_ids.push(*run_id);
        kinds.push(job.kind.as_str());
        steps.push(job.step.as_str());
        timers.push(job.timer.as_deref());
        payloads.push(job.payload.as_ref().map(Json::to_string));
        dues.push(millis(job.due_at));
        attempts.push(i64::from(job.attempt));
    }
    sqlx::query(
        "INSERT INTO jobs (run_id, kind, step, timer, payload, due_at, attempt)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[], $7::int8[])",
    )
    .bind(&run_ids)
    .bind(&kinds)
    .bind(&steps)
    .bind(&timers)
    .bind(&payloads)
    .bind(&dues)
    .bind(&attempts)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
