//! Committing on PostgreSQL: a batch's outcomes apply with `UNNEST` array statements,
//! only for jobs still leased to the committing process; other processes are notified of
//! the jobs and mail it added.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value as Json;
use tracing::warn;

use super::{PgStore, Tx};
use crate::run::{JobOutcome, NewJob, StepRecord};
use crate::store::transaction::{Notice, Tx as AnyTx};
use crate::store::{StoreError, millis};

pub(in crate::store) async fn commit(
    db: &PgStore,
    owner: &str,
    outcomes: Arc<[JobOutcome]>,
    now: DateTime<Utc>,
) -> Result<Vec<bool>, StoreError> {
    let result = async {
        let mut tx = db.pool.begin().await?;
        let applied = commit_outcomes(&mut tx, owner, &outcomes, now).await?;
        tx.commit().await?;
        Ok::<_, StoreError>(applied)
    }
    .await;
    if result.is_err() {
        // Not committed: give the jobs back now rather than when their lease ends.
        let ids: Vec<i64> = outcomes.iter().map(|o| o.job_id).collect();
        if let Err(e) = super::jobs::release(db, owner, &ids).await {
            warn!(error = %e, "could not release the leases of an uncommitted batch");
        }
    }
    result
}

/// Applies the outcomes of a batch: a handful of array statements for the whole batch,
/// per-outcome statements only for what is rare (waits, timers, effects, events,
/// children). An outcome counts only if its job still exists and is still leased to
/// `owner`; otherwise another process has taken it over and the outcome is void.
pub(super) async fn commit_outcomes(
    tx: &mut Tx<'_>,
    owner: &str,
    outcomes: &[JobOutcome],
    now: DateTime<Utc>,
) -> Result<Vec<bool>, StoreError> {
    // The claimed jobs go; so do the other jobs (timers) of runs this batch finishes — a
    // finished run leaves no timers behind — if their job was still ours. One statement.
    let job_ids: Vec<i64> = outcomes.iter().map(|o| o.job_id).collect();
    let finishing: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.run.as_ref().is_some_and(|r| r.status.is_finished()))
        .map(|o| o.run_id.as_str())
        .collect();
    let deleted: Vec<i64> = sqlx::query_scalar(
        "WITH mine AS (DELETE FROM jobs WHERE id = ANY($1) AND lease_owner = $2 RETURNING id, run_id),
              timers AS (DELETE FROM jobs WHERE run_id = ANY($3) AND id <> ALL($1)
                           AND run_id IN (SELECT run_id FROM mine))
         SELECT id FROM mine",
    )
    .bind(&job_ids)
    .bind(owner)
    .bind(&finishing)
    .fetch_all(&mut **tx)
    .await?;
    let deleted: HashSet<i64> = deleted.into_iter().collect();
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
    if live.is_empty() {
        return Ok(applied);
    }

    // Step history.
    let steps: Vec<(&str, &StepRecord)> = live
        .iter()
        .flat_map(|o| o.steps.iter().map(move |s| (o.run_id.as_str(), s)))
        .collect();
    if !steps.is_empty() {
        let column = |f: &dyn Fn(&StepRecord) -> Option<String>| -> Vec<Option<String>> {
            steps.iter().map(|(_, s)| f(s)).collect()
        };
        let runs: Vec<&str> = steps.iter().map(|(r, _)| *r).collect();
        sqlx::query(
            "INSERT INTO step_runs (run_id, step, action, attempt, status, input, output, error, log, started_at, finished_at)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::text[],
                                  $7::text[], $8::text[], $9::text[], $10::int8[], $11::int8[])",
        )
        .bind(&runs)
        .bind(column(&|s| Some(s.step.clone())))
        .bind(column(&|s| Some(s.action.clone())))
        .bind(steps.iter().map(|(_, s)| i64::from(s.attempt)).collect::<Vec<_>>())
        .bind(column(&|s| Some(s.status.as_str().to_string())))
        .bind(column(&|s| s.input.as_ref().map(Json::to_string)))
        .bind(column(&|s| s.output.as_ref().map(Json::to_string)))
        .bind(column(&|s| s.error.clone()))
        .bind(column(&|s| s.log.as_ref().map(Json::to_string)))
        .bind(steps.iter().map(|(_, s)| millis(s.started_at)).collect::<Vec<_>>())
        .bind(steps.iter().map(|(_, s)| millis(s.finished_at)).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }

    let mut mail = false;
    for outcome in &live {
        mail |= crate::store::commit::apply_outcome_writes(
            &mut AnyTx::from(&mut **tx),
            outcome,
            false,
            now,
        )
        .await?;
    }

    let jobs: Vec<(&str, &NewJob)> = live
        .iter()
        .flat_map(|o| o.jobs.iter().map(move |j| (o.run_id.as_str(), j)))
        .collect();
    crate::store::jobs::insert_jobs(&mut AnyTx::from(&mut **tx), &jobs).await?;

    let ended: Vec<&str> = live
        .iter()
        .filter(|o| o.ends_wait)
        .map(|o| o.run_id.as_str())
        .collect();
    if !ended.is_empty() {
        sqlx::query("DELETE FROM waits WHERE run_id = ANY($1)")
            .bind(&ended)
            .execute(&mut **tx)
            .await?;
    }

    // Run updates; new waits are registered, unless what they wait for is already there
    // (then the run resumes at once).
    let mut ids = Vec::new();
    let mut statuses = Vec::new();
    let mut contexts = Vec::new();
    let mut current = Vec::new();
    let mut outputs = Vec::new();
    let mut errors = Vec::new();
    let mut counts = Vec::new();
    let mut finished_at = Vec::new();
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
            parents.extend(outcome.parent_id.iter());
        }
        ids.push(outcome.run_id.as_str());
        statuses.push(status.as_str());
        contexts.push(update.context.to_string());
        current.push(update.current_step.clone());
        outputs.push(update.output.as_ref().map(Json::to_string));
        errors.push(update.error.clone());
        counts.push(update.step_count);
        finished_at.push(status.is_finished().then(|| millis(now)));
    }
    if !ids.is_empty() {
        sqlx::query(
            "UPDATE runs SET status = u.status, context = u.context, current_step = u.current_step,
                             output = u.output, error = u.error, step_count = u.step_count,
                             updated_at = $1, finished_at = u.finished_at
             FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                         $8::int8[], $9::int8[])
                  AS u(id, status, context, current_step, output, error, step_count, finished_at)
             WHERE runs.id = u.id",
        )
        .bind(millis(now))
        .bind(&ids)
        .bind(&statuses)
        .bind(&contexts)
        .bind(&current)
        .bind(&outputs)
        .bind(&errors)
        .bind(&counts)
        .bind(&finished_at)
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
    if !jobs.is_empty()
        || live
            .iter()
            .any(|o| !o.events.is_empty() || !o.children.is_empty())
    {
        super::notify(tx, Notice::Work).await?;
    }
    if mail {
        super::notify(tx, Notice::Mail).await?;
    }
    Ok(applied)
}
