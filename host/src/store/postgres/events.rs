//! Events and waits on PostgreSQL: a run parking in `wait_for` and an event arriving for
//! it take the same transaction-scoped advisory lock (per event type and key); a parent
//! parking in `wait_children` and a child finishing lock the parent's row.

use chrono::{DateTime, Utc};
use serde_json::Value as Json;
use sqlx::Row;
use sqlx::postgres::PgConnection;

use super::{PgStore, Tx};
use crate::run::{NewEvent, NewJob, NewRun, RunStatus, TIMER_EVENT_PREFIX, WaitFor};
use crate::store::events::Delivered;
use crate::store::rows::{child_counts, event_output};
use crate::store::runs::ChildCounts;
use crate::store::{StoreError, millis};

pub(in crate::store) async fn deliver(
    db: &PgStore,
    event: &NewEvent,
    starts: &[NewRun],
    now: DateTime<Utc>,
) -> Result<Delivered, StoreError> {
    let mut tx = db.pool.begin().await?;
    let (event_id, resumed_runs) = insert_event(&mut tx, event, now).await?;
    let mut started_runs = Vec::new();
    for run in starts {
        let mut run = run.clone();
        run.trigger_key = Some(format!("event:{event_id}:{}", run.workflow));
        started_runs.push(
            super::runs::insert_run(&mut tx, &run, false, now)
                .await?
                .run_id,
        );
    }
    super::notify(&mut tx, super::WORK_CHANNEL).await?;
    tx.commit().await?;
    Ok(Delivered {
        event_id,
        resumed_runs,
        started_runs,
    })
}

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
                super::lock(tx, "event", event_type, key).await?;
            }
            match find_arrived_event(tx, run_id, keys).await? {
                Some(event) => {
                    consume(tx, run_id, event["event_id"].as_i64().unwrap_or_default()).await?;
                    super::runs::insert_jobs(tx, &[(run_id, &NewJob::resume(step, event, now))])
                        .await?;
                    Ok(RunStatus::Running)
                }
                None => {
                    for (event_type, key) in keys {
                        sqlx::query(
                            "INSERT INTO waits (run_id, event_type, key, step) VALUES ($1, $2, $3, $4)
                             ON CONFLICT DO NOTHING",
                        )
                        .bind(run_id)
                        .bind(event_type)
                        .bind(key)
                        .bind(step)
                        .execute(&mut **tx)
                        .await?;
                    }
                    if let Some(timeout) = timeout {
                        super::runs::insert_jobs(tx, &[(run_id, timeout)]).await?;
                    }
                    Ok(status)
                }
            }
        }
        WaitFor::Children { step } => {
            // Serialize with children finishing in other processes (they lock this row
            // before looking for the wait).
            sqlx::query("SELECT 1 FROM runs WHERE id = $1 FOR UPDATE")
                .bind(run_id)
                .execute(&mut **tx)
                .await?;
            if has_unfinished_children(tx, run_id).await? {
                sqlx::query(
                    "INSERT INTO waits (run_id, event_type, key, step) VALUES ($1, 'children', '', $2)
                     ON CONFLICT DO NOTHING",
                )
                .bind(run_id)
                .bind(step)
                .execute(&mut **tx)
                .await?;
                Ok(status)
            } else {
                let counts = child_counts_of(tx, run_id).await?;
                super::runs::insert_jobs(
                    tx,
                    &[(
                        run_id,
                        &NewJob::resume(step, serde_json::to_value(counts)?, now),
                    )],
                )
                .await?;
                Ok(RunStatus::Running)
            }
        }
    }
}

pub(super) async fn forget_timer(
    tx: &mut Tx<'_>,
    run_id: &str,
    name: &str,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM jobs WHERE run_id = $1 AND timer = $2")
        .bind(run_id)
        .bind(name)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "INSERT INTO consumed_events (run_id, event_id)
         SELECT $1, id FROM events WHERE type = $2 AND key = $1
         ON CONFLICT DO NOTHING",
    )
    .bind(run_id)
    .bind(format!("{}{name}", TIMER_EVENT_PREFIX))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub(super) async fn consume(
    tx: &mut Tx<'_>,
    run_id: &str,
    event_id: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO consumed_events (run_id, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(run_id)
    .bind(event_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub(super) async fn find_arrived_event(
    tx: &mut Tx<'_>,
    run_id: &str,
    keys: &[(String, String)],
) -> Result<Option<Json>, StoreError> {
    let mut best: Option<(i64, Json)> = None;
    for (event_type, key) in keys {
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
        .fetch_optional(&mut **tx)
        .await?;
        if let Some(row) = row {
            let id: i64 = row.get("id");
            if best.as_ref().is_none_or(|(b, _)| id < *b) {
                best = Some((id, event_output(&row)?));
            }
        }
    }
    Ok(best.map(|(_, e)| e))
}

pub(super) async fn insert_event(
    tx: &mut Tx<'_>,
    event: &NewEvent,
    now: DateTime<Utc>,
) -> Result<(i64, Vec<String>), StoreError> {
    super::lock(tx, "event", &event.event_type, &event.key).await?;
    let row = sqlx::query(
        "INSERT INTO events (type, key, payload, received_at) VALUES ($1, $2, $3, $4) RETURNING *",
    )
    .bind(&event.event_type)
    .bind(&event.key)
    .bind(event.payload.to_string())
    .bind(millis(now))
    .fetch_one(&mut **tx)
    .await?;
    let event_id: i64 = row.get("id");
    let output = event_output(&row)?;
    let waiting = sqlx::query("SELECT run_id, step FROM waits WHERE event_type = $1 AND key = $2")
        .bind(&event.event_type)
        .bind(&event.key)
        .fetch_all(&mut **tx)
        .await?;
    let mut resumed = Vec::new();
    for w in waiting {
        let run_id: String = w.get("run_id");
        let step: String = w.get("step");
        resume_waiting_run(tx, &run_id, &step, output.clone(), now).await?;
        consume(tx, &run_id, event_id).await?;
        resumed.push(run_id);
    }
    Ok((event_id, resumed))
}

pub(super) async fn resume_waiting_run(
    tx: &mut Tx<'_>,
    run_id: &str,
    step: &str,
    payload: Json,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM waits WHERE run_id = $1")
        .bind(run_id)
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM jobs WHERE run_id = $1 AND kind = 'timeout'")
        .bind(run_id)
        .execute(&mut **tx)
        .await?;
    super::runs::insert_jobs(tx, &[(run_id, &NewJob::resume(step, payload, now))]).await?;
    sqlx::query(
        "UPDATE runs SET status = 'running', updated_at = $1 WHERE id = $2 AND status = 'waiting'",
    )
    .bind(millis(now))
    .bind(run_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub(super) async fn has_unfinished_children(
    tx: &mut Tx<'_>,
    parent: &str,
) -> Result<bool, StoreError> {
    let found: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM runs WHERE parent_id = $1 AND status IN ('running', 'waiting') LIMIT 1",
    )
    .bind(parent)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(found.is_some())
}

pub(super) async fn wake_parent(
    tx: &mut Tx<'_>,
    parent: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    // The parent may be parking in another process right now: wait for its row.
    sqlx::query("SELECT 1 FROM runs WHERE id = $1 FOR UPDATE")
        .bind(parent)
        .execute(&mut **tx)
        .await?;
    let step: Option<String> =
        sqlx::query_scalar("SELECT step FROM waits WHERE run_id = $1 AND event_type = 'children'")
            .bind(parent)
            .fetch_optional(&mut **tx)
            .await?;
    let Some(step) = step else { return Ok(()) };
    if has_unfinished_children(tx, parent).await? {
        return Ok(());
    }
    let counts = child_counts_of(tx, parent).await?;
    resume_waiting_run(tx, parent, &step, serde_json::to_value(counts)?, now).await
}

pub(super) async fn child_counts_of(
    conn: &mut PgConnection,
    parent: &str,
) -> Result<ChildCounts, StoreError> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT status, count(*) AS n FROM runs WHERE parent_id = $1 GROUP BY status",
    )
    .bind(parent)
    .fetch_all(&mut *conn)
    .await?;
    Ok(child_counts(&rows))
}
