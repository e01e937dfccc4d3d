//! Claiming on SQLite: the embedded store belongs to one process, so its claims live in
//! that process's memory — a claim is a read, not a write transaction, and a killed
//! process leaves no lease behind.

use chrono::{DateTime, Utc};
use serde_json::Value as Json;
use sqlx::{Row, SqliteConnection};

use super::SqliteStore;
use crate::run::{Job, JobOutcome, NewJob};
use crate::store::rows::job;
use crate::store::{StoreError, millis};

/// Claims up to `limit` due jobs, at most one per run and none of a run that already
/// has a claimed job. `now` is engine time (due dates). Claims are held in memory.
pub(in crate::store) async fn claim(
    db: &SqliteStore,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<Job>, StoreError> {
    let mut claims = db.claims.lock().await;
    let busy: Vec<&String> = claims.runs.iter().collect();
    let rows = sqlx::query(
        "SELECT j.id, j.run_id, j.kind, j.step, j.timer, j.payload, j.due_at, j.attempt FROM jobs j
         WHERE j.due_at <= ?1
           AND j.id = (SELECT min(m.id) FROM jobs m WHERE m.run_id = j.run_id AND m.due_at <= ?1)
           AND j.run_id NOT IN (SELECT value FROM json_each(?2))
         ORDER BY j.due_at, j.id
         LIMIT ?3",
    )
    .bind(millis(now))
    .bind(serde_json::to_string(&busy)?)
    .bind(i64::from(limit))
    .fetch_all(&db.reader)
    .await?;
    for r in &rows {
        claims.jobs.insert(r.get("id"));
        claims.runs.insert(r.get("run_id"));
    }
    drop(claims);
    let mut jobs: Vec<Job> = rows.iter().map(job).collect::<Result<_, StoreError>>()?;
    jobs.sort_by_key(|j| (j.due_at, j.id));
    Ok(jobs)
}

/// Forgets the claims of these jobs (committed, or given back).
pub(super) async fn release(db: &SqliteStore, outcomes: &[JobOutcome]) {
    let mut claims = db.claims.lock().await;
    for outcome in outcomes {
        claims.jobs.remove(&outcome.job_id);
        claims.runs.remove(&outcome.run_id);
    }
}

/// Inserts jobs: one plain statement for a single job (the common case: a run's first
/// job), one JSON-array statement for a batch.
pub(in crate::store) async fn insert_jobs(
    conn: &mut SqliteConnection,
    jobs: &[(&str, &NewJob)],
) -> Result<(), StoreError> {
    match jobs {
        [] => Ok(()),
        [(run_id, job)] => {
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
            .execute(conn)
            .await?;
            Ok(())
        }
        _ => {
            let rows: Vec<Json> = jobs
                .iter()
                .map(|(run_id, job)| {
                    serde_json::json!({
                        "run": run_id, "kind": job.kind.as_str(), "step": job.step, "timer": job.timer,
                        "payload": job.payload.as_ref().map(Json::to_string), "due": millis(job.due_at),
                        "attempt": job.attempt,
                    })
                })
                .collect();
            sqlx::query(
                "INSERT INTO jobs (run_id, kind, step, timer, payload, due_at, attempt)
                 SELECT value ->> '$.run', value ->> '$.kind', value ->> '$.step', value ->> '$.timer',
                        value ->> '$.payload', value ->> '$.due', value ->> '$.attempt'
                 FROM json_each(?)",
            )
            .bind(Json::Array(rows).to_string())
            .execute(conn)
            .await?;
            Ok(())
        }
    }
}
