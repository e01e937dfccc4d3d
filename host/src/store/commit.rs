//! Committing executed jobs: each outcome's step records, run update, next jobs, waits,
//! timers, events, child runs, effects (records, outbox rows) and plugin key-value writes,
//! many outcomes in one transaction.
//!
//! This is the commit point of the whole engine, so each backend does it its own fastest
//! way: SQLite through its group-commit writer with JSON-array statements, PostgreSQL with
//! `UNNEST` arrays, only for jobs still leased to the committing process.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::events::forget_timer;
use super::jobs::insert_jobs;
use super::outbox::enqueue_row;
use super::transaction::{Tx, on_tx};
use super::{Backend, Store, StoreError, millis};
use crate::run::{Effect, JobOutcome, KvWrite};

impl Store {
    /// Commits the outcomes of many jobs in one transaction. An outcome whose job no
    /// longer exists, or is no longer leased to `owner`, is skipped and reported `false`.
    pub async fn commit(
        &self,
        owner: &str,
        outcomes: Arc<[JobOutcome]>,
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        if outcomes.is_empty() {
            return Ok(Vec::new());
        }
        match &self.backend {
            Backend::Sqlite(db) => super::sqlite::commit::commit(db, outcomes, now).await,
            Backend::Postgres(db) => {
                super::postgres::commit::commit(db, owner, outcomes, now).await
            }
        }
    }
}

// ----- inside a transaction: the same on both backends ----------------------------------

/// What an outcome writes besides its step records and run update: effects, plugin
/// key-value writes, timers started and cancelled, child runs. Returns whether it queued
/// mail.
/// `records_applied`: its record effects were applied already (SQLite applies a batch's
/// records with two statements for all).
pub(super) async fn apply_outcome_writes(
    tx: &mut Tx<'_>,
    outcome: &JobOutcome,
    records_applied: bool,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let run_id = outcome.run_id.as_str();
    let mut mail = false;
    for (key, effect) in &outcome.effects {
        if records_applied && matches!(effect, Effect::Record { .. }) {
            continue;
        }
        mail |= apply_effect(tx, run_id, key, effect, now).await?;
    }
    for write in &outcome.kv_writes {
        write_kv(tx, write, now).await?;
    }
    for name in &outcome.cancel_timers {
        forget_timer(tx, run_id, name).await?;
    }
    for timer in &outcome.start_timers {
        if let Some(name) = &timer.timer {
            forget_timer(tx, run_id, name).await?;
        }
        insert_jobs(tx, &[(run_id, timer)]).await?;
    }
    super::runs::insert_children(tx, &outcome.children, now).await?;
    Ok(mail)
}

/// The step an effect's idempotency key (`RUN:SEQ:STEP:N`) names.
pub(super) fn effect_step(key: &str) -> Option<&str> {
    key.rsplit(':').nth(1)
}

/// Applies one effect unless its key was applied before; returns whether it queued mail.
async fn apply_effect(
    tx: &mut Tx<'_>,
    run_id: &str,
    key: &str,
    effect: &Effect,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let step = effect_step(key);
    let inserted = on_tx!(tx, |conn| {
        sqlx::query(
        "INSERT INTO effects (idempotency_key, run_id, step, kind, payload, created_at) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (idempotency_key) DO NOTHING",
    )
    .bind(key)
    .bind(run_id)
    .bind(step.unwrap_or_default())
    .bind(effect.kind())
    .bind(serde_json::to_string(effect)?)
    .bind(millis(now))
    .execute(conn)
    .await
    .map(|done| done.rows_affected())
    })?;
    if inserted == 0 {
        return Ok(false);
    }
    match effect {
        Effect::Email(email) => {
            enqueue_row(tx, Some(run_id), step, email, now).await?;
            Ok(true)
        }
        Effect::Record {
            collection,
            key,
            data,
        } => {
            on_tx!(tx, |conn| {
                sqlx::query(
                "INSERT INTO records (collection, key, data, run_id, updated_at) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (collection, key) DO UPDATE SET data = excluded.data, run_id = excluded.run_id,
                                                             updated_at = excluded.updated_at",
            )
            .bind(collection)
            .bind(key)
            .bind(data.to_string())
            .bind(run_id)
            .bind(millis(now))
            .execute(conn)
    .await
    .map(|done| done.rows_affected())
            })?;
            Ok(false)
        }
    }
}

/// Applies one plugin key-value write (a `None` value deletes the key).
async fn write_kv(tx: &mut Tx<'_>, write: &KvWrite, now: DateTime<Utc>) -> Result<(), StoreError> {
    match &write.value {
        Some(value) => {
            on_tx!(tx, |conn| {
                sqlx::query(
                "INSERT INTO plugin_kv (plugin, key, value, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (plugin, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            )
            .bind(&write.plugin)
            .bind(&write.key)
            .bind(value)
            .bind(millis(now))
            .execute(conn)
    .await
    .map(|done| done.rows_affected())
            })?;
        }
        None => {
            on_tx!(tx, |conn| sqlx::query(
                "DELETE FROM plugin_kv WHERE plugin = $1 AND key = $2"
            )
            .bind(&write.plugin)
            .bind(&write.key)
            .execute(conn)
            .await
            .map(|done| done.rows_affected()))?;
        }
    }
    Ok(())
}
