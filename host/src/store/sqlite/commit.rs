//! Committing on SQLite: outcomes reach the group-commit writer, which applies a batch
//! with a handful of JSON-array statements (each statement is a round trip to SQLite's
//! thread) and per-outcome statements only for what is rare.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use super::group_commit::GroupWrite;
use super::{SqliteStore, Tx};
use crate::run::{JobOutcome, NewJob};
use crate::store::transaction::Tx as AnyTx;
use crate::store::{StoreError, millis};

/// Commits the outcomes of many jobs in one transaction. An outcome whose job no
/// longer exists (deleted meanwhile, e.g. a timeout an event made moot) is skipped
/// and reported as `false`. `owner` names the lease holder for backends shared by
/// several processes.
pub(in crate::store) async fn commit(
    db: &SqliteStore,
    outcomes: Arc<[JobOutcome]>,
    now: DateTime<Utc>,
) -> Result<Vec<bool>, StoreError> {
    let result = GroupWrite::submit(&db.group, |reply| GroupWrite::Commit {
        outcomes: outcomes.clone(),
        now,
        reply,
    })
    .await;
    // Committed or not, the claims end here; uncommitted jobs are claimed again.
    super::jobs::release(db, &outcomes).await;
    result
}

/// Applies the outcomes of a batch of jobs with a handful of statements for the whole
/// batch (each statement is a round trip to SQLite's thread), plus per-outcome statements
/// only for what is rare: waits, timers, effects, events, children, key-value writes.
///
/// Outcomes in one batch belong to different runs (claims take one job per run).
pub(super) async fn commit_outcomes(
    tx: &mut Tx<'_>,
    outcomes: &[JobOutcome],
    now: DateTime<Utc>,
) -> Result<Vec<bool>, StoreError> {
    // The commit point of each execution: its job is deleted. A job that is gone already
    // (an event ended the wait whose timeout this was) makes its outcome void.
    let job_ids: Vec<i64> = outcomes.iter().map(|o| o.job_id).collect();
    let deleted: Vec<i64> = sqlx::query_scalar(
        "DELETE FROM jobs WHERE id IN (SELECT value FROM json_each(?)) RETURNING id",
    )
    .bind(serde_json::to_string(&job_ids)?)
    .fetch_all(&mut **tx)
    .await?;
    let deleted: std::collections::HashSet<i64> = deleted.into_iter().collect();
    let applied: Vec<bool> = outcomes
        .iter()
        .map(|o| deleted.contains(&o.job_id))
        .collect();
    let live: Vec<&JobOutcome> = outcomes
        .iter()
        .zip(&applied)
        .filter(|(_, a)| **a)
        .map(|(o, _)| o)
        .collect();

    // Step history.
    let records: Vec<Json> = live
        .iter()
        .flat_map(|o| {
            o.steps.iter().map(move |s| {
                serde_json::json!({
                    "run": o.run_id, "step": s.step, "action": s.action, "attempt": s.attempt,
                    "status": s.status.as_str(), "input": s.input.as_ref().map(Json::to_string),
                    "output": s.output.as_ref().map(Json::to_string), "error": s.error,
                    "log": s.log.as_ref().map(Json::to_string),
                    "started": millis(s.started_at), "finished": millis(s.finished_at),
                })
            })
        })
        .collect();
    if !records.is_empty() {
        sqlx::query(
            "INSERT INTO step_runs (run_id, step, action, attempt, status, input, output, error, log, started_at, finished_at)
             SELECT value ->> '$.run', value ->> '$.step', value ->> '$.action', value ->> '$.attempt',
                    value ->> '$.status', value ->> '$.input', value ->> '$.output', value ->> '$.error',
                    value ->> '$.log', value ->> '$.started', value ->> '$.finished'
             FROM json_each(?)",
        )
        .bind(Json::Array(records).to_string())
        .execute(&mut **tx)
        .await?;
    }

    for outcome in &live {
        crate::store::commit::apply_outcome_writes(&mut AnyTx::from(&mut **tx), outcome, now)
            .await?;
    }

    // New jobs of the whole batch.
    let jobs: Vec<(&str, &NewJob)> = live
        .iter()
        .flat_map(|o| o.jobs.iter().map(move |j| (o.run_id.as_str(), j)))
        .collect();
    crate::store::jobs::insert_jobs(&mut AnyTx::from(&mut **tx), &jobs).await?;

    // A timed-out wait is over: its other event keys no longer apply. (A wait ended by
    // an event was cleared when the event arrived.)
    let ended: Vec<&str> = live
        .iter()
        .filter(|o| o.ends_wait)
        .map(|o| o.run_id.as_str())
        .collect();
    if !ended.is_empty() {
        let ids = serde_json::to_string(&ended)?;
        sqlx::query("DELETE FROM waits WHERE run_id IN (SELECT value FROM json_each(?))")
            .bind(&ids)
            .execute(&mut **tx)
            .await?;
    }

    // Run updates; new waits are registered, unless what they wait for is already there
    // (then the run resumes at once).
    let mut rows = Vec::new();
    let mut finished = Vec::new();
    let mut parents = std::collections::BTreeSet::new();
    for outcome in &live {
        let Some(update) = &outcome.run else { continue };
        let status = match &outcome.wait {
            Some(wait) => {
                crate::store::events::register_wait(
                    &mut AnyTx::from(&mut **tx),
                    &outcome.run_id,
                    wait,
                    update.status,
                    now,
                )
                .await?
            }
            None => update.status,
        };
        if status.is_finished() {
            finished.push(outcome.run_id.as_str());
            parents.extend(outcome.parent_id.iter());
        }
        rows.push(serde_json::json!({
            "id": outcome.run_id, "status": status.as_str(), "context": update.context.to_string(),
            "current_step": update.current_step, "output": update.output.as_ref().map(Json::to_string),
            "error": update.error, "step_count": update.step_count,
            "finished_at": status.is_finished().then(|| millis(now)),
        }));
    }
    if !rows.is_empty() {
        sqlx::query(
            "UPDATE runs SET status = u.status, context = u.context, current_step = u.current_step,
                             output = u.output, error = u.error, step_count = u.step_count,
                             updated_at = ?1, finished_at = u.finished_at
             FROM (SELECT value ->> '$.id' AS id, value ->> '$.status' AS status,
                          value ->> '$.context' AS context, value ->> '$.current_step' AS current_step,
                          value ->> '$.output' AS output, value ->> '$.error' AS error,
                          value ->> '$.step_count' AS step_count, value ->> '$.finished_at' AS finished_at
                   FROM json_each(?2)) AS u
             WHERE runs.id = u.id",
        )
        .bind(millis(now))
        .bind(Json::Array(rows).to_string())
        .execute(&mut **tx)
        .await?;
    }
    if !finished.is_empty() {
        // A finished run leaves no timers behind.
        sqlx::query("DELETE FROM jobs WHERE run_id IN (SELECT value FROM json_each(?))")
            .bind(serde_json::to_string(&finished)?)
            .execute(&mut **tx)
            .await?;
    }
    for outcome in &live {
        for event in &outcome.events {
            crate::store::events::insert_event(&mut AnyTx::from(&mut **tx), event, None, now)
                .await?;
        }
    }
    for parent in parents {
        crate::store::events::wake_parent(&mut AnyTx::from(&mut **tx), parent, now).await?;
    }
    Ok(applied)
}
