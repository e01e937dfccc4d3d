//! Committing on SQLite: outcomes reach the group-commit writer, which applies a batch
//! with a handful of JSON-array statements (each statement is a round trip to SQLite's
//! thread) and per-outcome statements only for what is rare.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use super::group_commit::GroupWrite;
use super::{SqliteStore, Tx};
use crate::run::{Effect, JobOutcome, NewJob, WaitFor};
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

    apply_records(tx, &live, now).await?;
    for outcome in &live {
        crate::store::commit::apply_outcome_writes(&mut AnyTx::from(&mut **tx), outcome, true, now)
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
    let parked = register_event_waits(tx, &live).await?;
    let mut rows = Vec::new();
    let mut finished = Vec::new();
    let mut parents = std::collections::BTreeSet::new();
    for outcome in &live {
        let Some(update) = &outcome.run else { continue };
        let status = match &outcome.wait {
            Some(_) if parked.contains(outcome.run_id.as_str()) => update.status,
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

/// Applies the record effects of a batch with two statements: the effects whose keys are
/// new, then their records in the batch's order (a later write of a key wins, as one by
/// one). Email effects and the rest stay with [`apply_outcome_writes`].
///
/// [`apply_outcome_writes`]: crate::store::commit::apply_outcome_writes
async fn apply_records(
    tx: &mut Tx<'_>,
    outcomes: &[&JobOutcome],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut effects = Vec::new();
    for outcome in outcomes {
        for (key, effect) in &outcome.effects {
            if let Effect::Record {
                collection,
                key: record_key,
                data,
            } = effect
            {
                effects.push(serde_json::json!({
                    "key": key, "run": outcome.run_id, "step": crate::store::commit::effect_step(key).unwrap_or_default(),
                    "payload": serde_json::to_string(effect)?, "collection": collection,
                    "record": record_key, "data": data.to_string(),
                }));
            }
        }
    }
    if effects.is_empty() {
        return Ok(());
    }
    let effects = Json::Array(effects).to_string();
    let new: Vec<String> = sqlx::query_scalar(
        "INSERT INTO effects (idempotency_key, run_id, step, kind, payload, created_at)
         SELECT value ->> '$.key', value ->> '$.run', value ->> '$.step', 'record', value ->> '$.payload', ?2
         FROM json_each(?1) WHERE true
         ON CONFLICT (idempotency_key) DO NOTHING
         RETURNING idempotency_key",
    )
    .bind(&effects)
    .bind(millis(now))
    .fetch_all(&mut **tx)
    .await?;
    if new.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO records (collection, key, data, run_id, updated_at)
         SELECT value ->> '$.collection', value ->> '$.record', value ->> '$.data', value ->> '$.run', ?3
         FROM json_each(?1)
         WHERE value ->> '$.key' IN (SELECT value FROM json_each(?2))
         ORDER BY json_each.key
         ON CONFLICT (collection, key) DO UPDATE SET data = excluded.data, run_id = excluded.run_id,
                                                     updated_at = excluded.updated_at",
    )
    .bind(&effects)
    .bind(serde_json::to_string(&new)?)
    .bind(millis(now))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Registers the event waits of a batch with three statements for all of them: which
/// runs have a matching event already (those go one by one and resume at once), then the
/// wait rows and the timeout jobs of the rest. Returns the runs parked here.
async fn register_event_waits<'o>(
    tx: &mut Tx<'_>,
    outcomes: &[&'o JobOutcome],
) -> Result<std::collections::HashSet<&'o str>, StoreError> {
    let mut keys = Vec::new();
    for outcome in outcomes {
        if let (
            Some(_),
            Some(WaitFor::Events {
                step, keys: pairs, ..
            }),
        ) = (&outcome.run, &outcome.wait)
        {
            for (event_type, key) in pairs {
                keys.push(serde_json::json!({
                    "run": outcome.run_id, "type": event_type, "key": key, "step": step,
                }));
            }
        }
    }
    let mut parked = std::collections::HashSet::new();
    if keys.is_empty() {
        return Ok(parked);
    }
    let keys = Json::Array(keys).to_string();
    let arrived: std::collections::HashSet<String> = sqlx::query_scalar(
        "SELECT DISTINCT j.value ->> '$.run' FROM json_each(?1) AS j
         JOIN events e ON e.type = j.value ->> '$.type' AND e.key = j.value ->> '$.key'
         WHERE e.id > (SELECT events_after FROM runs WHERE id = j.value ->> '$.run')
           AND NOT EXISTS (SELECT 1 FROM consumed_events c
                           WHERE c.run_id = j.value ->> '$.run' AND c.event_id = e.id)",
    )
    .bind(&keys)
    .fetch_all(&mut **tx)
    .await?
    .into_iter()
    .collect();
    let mut timeouts = Vec::new();
    for outcome in outcomes {
        if let (Some(_), Some(WaitFor::Events { timeout, .. })) = (&outcome.run, &outcome.wait)
            && !arrived.contains(&outcome.run_id)
        {
            parked.insert(outcome.run_id.as_str());
            if let Some(timeout) = timeout {
                timeouts.push((outcome.run_id.as_str(), timeout));
            }
        }
    }
    sqlx::query(
        "INSERT INTO waits (run_id, event_type, key, step)
         SELECT value ->> '$.run', value ->> '$.type', value ->> '$.key', value ->> '$.step'
         FROM json_each(?1)
         WHERE value ->> '$.run' NOT IN (SELECT value FROM json_each(?2))
         ON CONFLICT DO NOTHING",
    )
    .bind(&keys)
    .bind(serde_json::to_string(&arrived)?)
    .execute(&mut **tx)
    .await?;
    crate::store::jobs::insert_jobs(&mut AnyTx::from(&mut **tx), &timeouts).await?;
    Ok(parked)
}
