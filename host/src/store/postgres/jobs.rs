//! Claiming on PostgreSQL: due jobs are leased in batches with `FOR UPDATE SKIP LOCKED`,
//! so several processes share the queue; an expired lease is claimed again. Leases are
//! written on connections that do not wait for the WAL flush (see `PgStore::claims`).

use chrono::{DateTime, Utc};

use serde_json::Value as Json;
use sqlx::postgres::PgConnection;

use super::PgStore;
use crate::run::{Job, NewJob};
use crate::store::rows::job;
use crate::store::{StoreError, millis};

/// Claims due jobs whose lease is free or expired, skipping rows other processes are
/// claiming right now, at most one per run and none of a run with a live lease or an
/// earlier due job.
pub(in crate::store) async fn claim(
    db: &PgStore,
    owner: &str,
    now: DateTime<Utc>,
    wall_now: DateTime<Utc>,
    lease: chrono::Duration,
    limit: u32,
) -> Result<Vec<Job>, StoreError> {
    let rows = sqlx::query(
        "WITH picked AS (
             SELECT j.id FROM jobs j
             WHERE j.due_at <= $1 AND (j.lease_until IS NULL OR j.lease_until < $2)
               AND NOT EXISTS (
                   SELECT 1 FROM jobs o
                   WHERE o.run_id = j.run_id AND o.id <> j.id
                     AND (o.lease_until >= $2 OR (o.due_at <= $1 AND o.id < j.id)))
             ORDER BY j.due_at, j.id
             LIMIT $5
             FOR UPDATE SKIP LOCKED)
         -- ANY(ARRAY(...)): primary-key lookups; a join here made the planner scan
         -- the whole table.
         UPDATE jobs SET lease_owner = $3, lease_until = $4
         WHERE id = ANY(ARRAY(SELECT id FROM picked))
         RETURNING id, run_id, kind, step, timer, payload, due_at, attempt",
    )
    .bind(millis(now))
    .bind(millis(wall_now))
    .bind(owner)
    .bind(millis(wall_now + lease))
    .bind(i64::from(limit))
    .fetch_all(&db.claims)
    .await?;
    let mut jobs: Vec<Job> = rows.iter().map(job).collect::<Result<_, StoreError>>()?;
    jobs.sort_by_key(|j| (j.due_at, j.id));
    Ok(jobs)
}

/// Gives jobs back before their lease ends (their commit failed).
pub(super) async fn release(db: &PgStore, owner: &str, ids: &[i64]) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE jobs SET lease_owner = NULL, lease_until = NULL
         WHERE id = ANY($1) AND lease_owner = $2",
    )
    .bind(ids)
    .bind(owner)
    .execute(&db.claims)
    .await?;
    Ok(())
}

/// Inserts many jobs with one statement.
pub(in crate::store) async fn insert_jobs(
    conn: &mut PgConnection,
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
    .execute(conn)
    .await?;
    Ok(())
}
