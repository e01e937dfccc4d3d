//! Events: storing what arrived, resuming the runs waiting for it, starting the runs it
//! triggers — one transaction, so an event is never half delivered.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value as Json;
use sqlx::Row;

use super::jobs::insert_jobs;
use super::rows::{child_counts, event_output};
use super::runs::ChildCounts;
use super::runs::insert_new_run;
use super::transaction::{Notice, Tx, on_tx};
use super::{Store, StoreError, millis};
use crate::run::{NewEvent, NewJob, NewRun, RunStatus, TIMER_EVENT_PREFIX, WaitFor};

/// Events and waits. Made by [`Store::events`].
#[derive(Clone, Copy)]
pub struct Events<'a> {
    pub(super) store: &'a Store,
}

/// Result of delivering an event.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Delivered {
    pub event_id: i64,
    /// The event's delivery id was seen before: nothing was stored, resumed or started
    /// again, and `event_id` is the first delivery's.
    pub duplicate: bool,
    /// Runs that were waiting for it and now continue.
    pub resumed_runs: Vec<String>,
    /// Runs started because their workflow is triggered by this event type.
    pub started_runs: Vec<String>,
}

impl Events<'_> {
    /// Stores an event, resumes the runs waiting for it and starts the runs it triggers
    /// (`starts`, whose trigger keys are derived from the event id), atomically.
    pub async fn deliver(
        self,
        event: &NewEvent,
        delivery_id: Option<&str>,
        starts: &[NewRun],
        now: DateTime<Utc>,
    ) -> Result<Delivered, StoreError> {
        match &self.store.backend {
            // Through the group-commit writer: concurrent deliveries share one commit.
            super::Backend::Sqlite(db) => {
                super::sqlite::events::deliver(db, event, delivery_id, starts, now).await
            }
            super::Backend::Postgres(db) => {
                let starts: Vec<(NewRun, bool)> = starts
                    .iter()
                    .map(|r| (r.clone(), db.version_stored(&r.version)))
                    .collect();
                let mut transaction = db.pool.begin().await?;
                let delivered = deliver_in(
                    &mut Tx::from(&mut *transaction),
                    event,
                    delivery_id,
                    &starts,
                    now,
                )
                .await?;
                transaction.commit().await?;
                // A repeated delivery stored nothing, its versions included.
                if !delivered.duplicate {
                    db.versions_stored(starts.iter().map(|(r, _)| &r.version));
                }
                Ok(delivered)
            }
        }
    }
}

/// [`Events::deliver`] inside the transaction `tx` (PostgreSQL; SQLite's group writer
/// applies deliveries in batches, `sqlite::events::deliver_together`); each start says
/// whether its workflow version is known to be stored already.
pub(super) async fn deliver_in(
    tx: &mut Tx<'_>,
    event: &NewEvent,
    delivery_id: Option<&str>,
    starts: &[(NewRun, bool)],
    now: DateTime<Utc>,
) -> Result<Delivered, StoreError> {
    if let Some(delivery_id) = delivery_id {
        tx.lock("event delivery", delivery_id, "").await?;
        let seen: Option<i64> = on_tx!(tx, |conn| sqlx::query_scalar(
            "SELECT id FROM events WHERE delivery_id = $1"
        )
        .bind(delivery_id)
        .fetch_optional(conn)
        .await)?;
        if let Some(event_id) = seen {
            return Ok(Delivered {
                event_id,
                duplicate: true,
                resumed_runs: Vec::new(),
                started_runs: Vec::new(),
            });
        }
    }
    let (event_id, resumed_runs) = insert_event(tx, event, delivery_id, now).await?;
    let mut started_runs = Vec::new();
    for (run, version_stored) in starts {
        let mut run = run.clone();
        // The event was inserted just now: no run can have its key yet.
        run.trigger_key = Some(format!("event:{event_id}:{}", run.workflow));
        started_runs.push(insert_new_run(tx, &run, *version_stored, now).await?.run_id);
    }
    tx.notify(Notice::Work).await?;
    Ok(Delivered {
        event_id,
        duplicate: false,
        resumed_runs,
        started_runs,
    })
}

// ----- inside a transaction: the same on both backends ----------------------------------

/// Registers a parked run's wait; returns the run's status: `Running` if what it waits
/// for is already there (a resume job is scheduled), else the status it asked for.
pub(super) async fn register_wait(
    tx: &mut Tx<'_>,
    run_id: &str,
    wait: &WaitFor,
    status: RunStatus,
    now: DateTime<Utc>,
) -> Result<RunStatus, StoreError> {
    match wait {
        WaitFor::Events {
            step,
            keys,
            timeout,
        } => {
            // Serialize with deliveries of these events (same lock, sorted against
            // deadlocks between two parking runs).
            let mut sorted: Vec<&(String, String)> = keys.iter().collect();
            sorted.sort();
            for (event_type, key) in &sorted {
                tx.lock("event", event_type, key).await?;
            }
            match find_arrived_event(tx, run_id, keys).await? {
                Some(event) => {
                    consume(tx, run_id, event["event_id"].as_i64().unwrap_or_default()).await?;
                    insert_jobs(tx, &[(run_id, &NewJob::resume(step, event, now))]).await?;
                    Ok(RunStatus::Running)
                }
                None => {
                    for (event_type, key) in keys {
                        on_tx!(tx, |conn| {
                            sqlx::query(
                            "INSERT INTO waits (run_id, event_type, key, step) VALUES ($1, $2, $3, $4)
                             ON CONFLICT DO NOTHING",
                        )
                        .bind(run_id)
                        .bind(event_type)
                        .bind(key)
                        .bind(step)
                        .execute(conn)
                        .await
    .map(|done| done.rows_affected())
                        })?;
                    }
                    if let Some(timeout) = timeout {
                        insert_jobs(tx, &[(run_id, timeout)]).await?;
                    }
                    Ok(status)
                }
            }
        }
        WaitFor::Children { step } => {
            // Serialize with children finishing in other processes (they lock this row
            // before looking for the wait).
            tx.lock_run(run_id).await?;
            if has_unfinished_children(tx, run_id).await? {
                on_tx!(tx, |conn| {
                    sqlx::query(
                    "INSERT INTO waits (run_id, event_type, key, step) VALUES ($1, 'children', '', $2)
                     ON CONFLICT DO NOTHING",
                )
                .bind(run_id)
                .bind(step)
                .execute(conn)
                .await
    .map(|done| done.rows_affected())
                })?;
                Ok(status)
            } else {
                let counts = child_counts_in(tx, run_id).await?;
                let resume = NewJob::resume(step, serde_json::to_value(counts)?, now);
                insert_jobs(tx, &[(run_id, &resume)]).await?;
                Ok(RunStatus::Running)
            }
        }
    }
}

/// Deletes a pending timer and marks its fired-but-unconsumed events as consumed, so a
/// restarted timer is not satisfied by its previous firing.
pub(super) async fn forget_timer(
    tx: &mut Tx<'_>,
    run_id: &str,
    name: &str,
) -> Result<(), StoreError> {
    on_tx!(tx, |conn| sqlx::query(
        "DELETE FROM jobs WHERE run_id = $1 AND timer = $2"
    )
    .bind(run_id)
    .bind(name)
    .execute(conn)
    .await
    .map(|done| done.rows_affected()))?;
    on_tx!(tx, |conn| sqlx::query(
        "INSERT INTO consumed_events (run_id, event_id)
         SELECT $1, id FROM events WHERE type = $2 AND key = $1
         ON CONFLICT DO NOTHING",
    )
    .bind(run_id)
    .bind(format!("{TIMER_EVENT_PREFIX}{name}"))
    .execute(conn)
    .await
    .map(|done| done.rows_affected()))?;
    Ok(())
}

/// Marks an event as taken by a run, so the run's next wait does not take it again.
pub(super) async fn consume(
    tx: &mut Tx<'_>,
    run_id: &str,
    event_id: i64,
) -> Result<(), StoreError> {
    on_tx!(tx, |conn| sqlx::query(
        "INSERT INTO consumed_events (run_id, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(run_id)
    .bind(event_id)
    .execute(conn)
    .await
    .map(|done| done.rows_affected()))?;
    Ok(())
}

/// The oldest event matching one of `keys` that arrived after the run started and that
/// the run has not consumed yet.
async fn find_arrived_event(
    tx: &mut Tx<'_>,
    run_id: &str,
    keys: &[(String, String)],
) -> Result<Option<Json>, StoreError> {
    let mut best: Option<(i64, Json)> = None;
    for (event_type, key) in keys {
        let found = on_tx!(tx, |conn| {
            let row = sqlx::query(
                "SELECT e.* FROM events e
                 WHERE e.type = $1 AND e.key = $2
                   AND e.id > (SELECT events_after FROM runs WHERE id = $3)
                   AND NOT EXISTS (SELECT 1 FROM consumed_events c WHERE c.run_id = $3 AND c.event_id = e.id)
                 ORDER BY e.id LIMIT 1",
            )
            .bind(event_type)
            .bind(key)
            .bind(run_id)
            .fetch_optional(conn)
            .await?;
            row.map(|r| Ok::<_, StoreError>((r.get::<i64, _>("id"), event_output(&r)?)))
                .transpose()?
        });
        if let Some((id, event)) = found
            && best.as_ref().is_none_or(|(b, _)| id < *b)
        {
            best = Some((id, event));
        }
    }
    Ok(best.map(|(_, e)| e))
}

/// Stores an event and resumes every run waiting for it. Returns the event id and the
/// resumed runs.
pub(super) async fn insert_event(
    tx: &mut Tx<'_>,
    event: &NewEvent,
    delivery_id: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(i64, Vec<String>), StoreError> {
    tx.lock("event", &event.event_type, &event.key).await?;
    let (event_id, output) = on_tx!(tx, |conn| {
        let row = sqlx::query(
            "INSERT INTO events (type, key, payload, received_at, delivery_id) VALUES ($1, $2, $3, $4, $5) RETURNING *",
        )
        .bind(&event.event_type)
        .bind(&event.key)
        .bind(event.payload.to_string())
        .bind(millis(now))
        .bind(delivery_id)
        .fetch_one(conn)
        .await?;
        (row.get::<i64, _>("id"), event_output(&row)?)
    });
    let waiting: Vec<(String, String)> = on_tx!(tx, |conn| sqlx::query_as(
        "SELECT run_id, step FROM waits WHERE event_type = $1 AND key = $2"
    )
    .bind(&event.event_type)
    .bind(&event.key)
    .fetch_all(conn)
    .await)?;
    let mut resumed = Vec::new();
    for (run_id, step) in waiting {
        resume_waiting_run(tx, &run_id, &step, output.clone(), now).await?;
        consume(tx, &run_id, event_id).await?;
        resumed.push(run_id);
    }
    Ok((event_id, resumed))
}

/// Ends a run's wait: drops its wait rows and timeout, schedules the resume.
pub(super) async fn resume_waiting_run(
    tx: &mut Tx<'_>,
    run_id: &str,
    step: &str,
    payload: Json,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    on_tx!(tx, |conn| sqlx::query(
        "DELETE FROM waits WHERE run_id = $1"
    )
    .bind(run_id)
    .execute(conn)
    .await
    .map(|done| done.rows_affected()))?;
    on_tx!(tx, |conn| sqlx::query(
        "DELETE FROM jobs WHERE run_id = $1 AND kind = 'timeout'"
    )
    .bind(run_id)
    .execute(conn)
    .await
    .map(|done| done.rows_affected()))?;
    insert_jobs(tx, &[(run_id, &NewJob::resume(step, payload, now))]).await?;
    on_tx!(tx, |conn| sqlx::query(
        "UPDATE runs SET status = 'running', updated_at = $1 WHERE id = $2 AND status = 'waiting'",
    )
    .bind(millis(now))
    .bind(run_id)
    .execute(conn)
    .await
    .map(|done| done.rows_affected()))?;
    Ok(())
}

/// Whether a parent still has a child that is running or waiting.
async fn has_unfinished_children(tx: &mut Tx<'_>, parent: &str) -> Result<bool, StoreError> {
    let unfinished: i64 = on_tx!(tx, |conn| {
        sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT 1 FROM runs WHERE parent_id = $1 AND status IN ('running', 'waiting') LIMIT 1) AS unfinished",
    )
    .bind(parent)
    .fetch_one(conn)
    .await
    })?;
    Ok(unfinished > 0)
}

/// Resumes a parent waiting for its children once the last of them has finished.
pub(super) async fn wake_parent(
    tx: &mut Tx<'_>,
    parent: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    // The parent may be parking in another process right now: wait for its row.
    tx.lock_run(parent).await?;
    let step: Option<String> = on_tx!(tx, |conn| sqlx::query_scalar(
        "SELECT step FROM waits WHERE run_id = $1 AND event_type = 'children'"
    )
    .bind(parent)
    .fetch_optional(conn)
    .await)?;
    let Some(step) = step else { return Ok(()) };
    if has_unfinished_children(tx, parent).await? {
        return Ok(());
    }
    let counts = child_counts_in(tx, parent).await?;
    resume_waiting_run(tx, parent, &step, serde_json::to_value(counts)?, now).await
}

/// A parent's children counted by status, as the transaction sees them.
async fn child_counts_in(tx: &mut Tx<'_>, parent: &str) -> Result<ChildCounts, StoreError> {
    let rows: Vec<(String, i64)> = on_tx!(tx, |conn| sqlx::query_as(
        "SELECT status, count(*) AS n FROM runs WHERE parent_id = $1 GROUP BY status",
    )
    .bind(parent)
    .fetch_all(conn)
    .await)?;
    Ok(child_counts(&rows))
}
