//! Events on SQLite: a delivery goes through the group-commit writer, so concurrent
//! deliveries (and run starts, and step commits) share one transaction and one fsync;
//! each still answers only once its own write is durable, and one that fails fails alone.

use chrono::{DateTime, Utc};

use super::SqliteStore;
use super::group_commit::GroupWrite;
use crate::run::{NewEvent, NewJob, NewRun};
use crate::store::transaction::Tx as AnyTx;
use crate::store::{Delivered, StoreError, millis};

pub(in crate::store) async fn deliver(
    db: &SqliteStore,
    event: &NewEvent,
    delivery_id: Option<&str>,
    starts: &[NewRun],
    now: DateTime<Utc>,
) -> Result<Delivered, StoreError> {
    let versions: Vec<String> = starts.iter().map(|r| r.version.clone()).collect();
    let starts = starts
        .iter()
        .map(|r| (r.clone(), db.version_stored(&r.version)))
        .collect();
    let delivered = GroupWrite::submit(&db.group, |reply| GroupWrite::Deliver {
        event: event.clone(),
        delivery_id: delivery_id.map(str::to_string),
        starts,
        now,
        reply,
    })
    .await?;
    // A repeated delivery stored nothing, its versions included.
    if !delivered.duplicate {
        db.stored_versions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(versions);
    }
    Ok(delivered)
}

/// A delivery the group writer applies together with others: [`deliver_together`].
pub(super) struct Delivery<'a> {
    pub event: &'a NewEvent,
    pub delivery_id: Option<&'a str>,
    /// Each with whether its workflow version is stored already.
    pub starts: &'a [(NewRun, bool)],
    pub now: DateTime<Utc>,
}

/// Applies deliveries with a handful of statements for all of them — every statement is
/// a round trip to SQLite's thread, and intake under load is many small deliveries —
/// with the same effect as applying them one by one in this order: a delivery id seen
/// before (stored, or earlier in the batch) is a duplicate that stores nothing; each
/// other event gets the next id, resumes the runs waiting for it (rare for an intake
/// event: those go one by one), and starts its runs, which see events after their own.
pub(super) async fn deliver_together(
    conn: &mut sqlx::SqliteConnection,
    deliveries: &[Delivery<'_>],
) -> Result<Vec<Delivered>, StoreError> {
    enum Slot {
        Fresh(usize),
        Stored(i64),
        Repeats(usize),
    }
    let ids: Vec<&str> = deliveries.iter().filter_map(|d| d.delivery_id).collect();
    let stored: std::collections::HashMap<String, i64> = if ids.is_empty() {
        Default::default()
    } else {
        sqlx::query_as(
            "SELECT delivery_id, id FROM events WHERE delivery_id IN (SELECT value FROM json_each(?1))",
        )
        .bind(serde_json::to_string(&ids)?)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect()
    };
    let mut fresh = Vec::new();
    let mut first = std::collections::HashMap::new();
    let slots: Vec<Slot> = deliveries
        .iter()
        .map(|d| match d.delivery_id {
            Some(id) if stored.contains_key(id) => Slot::Stored(stored[id]),
            Some(id) if first.contains_key(id) => Slot::Repeats(first[id]),
            _ => {
                if let Some(id) = d.delivery_id {
                    first.insert(id, fresh.len());
                }
                fresh.push(d);
                Slot::Fresh(fresh.len() - 1)
            }
        })
        .collect();
    let delivered = deliver_fresh(conn, &fresh).await?;
    let duplicate = |event_id| Delivered {
        event_id,
        duplicate: true,
        resumed_runs: Vec::new(),
        started_runs: Vec::new(),
    };
    Ok(slots
        .into_iter()
        .map(|slot| match slot {
            Slot::Fresh(k) => delivered[k].clone(),
            Slot::Stored(event_id) => duplicate(event_id),
            Slot::Repeats(k) => duplicate(delivered[k].event_id),
        })
        .collect())
}

/// [`deliver_together`] for deliveries whose ids, if any, are new.
async fn deliver_fresh(
    conn: &mut sqlx::SqliteConnection,
    deliveries: &[&Delivery<'_>],
) -> Result<Vec<Delivered>, StoreError> {
    if deliveries.is_empty() {
        return Ok(Vec::new());
    }
    use sqlx::Row;
    let events: Vec<serde_json::Value> = deliveries
        .iter()
        .map(|d| {
            serde_json::json!({
                "type": d.event.event_type, "key": d.event.key, "delivery": d.delivery_id,
                "payload": d.event.payload.to_string(), "received": millis(d.now),
            })
        })
        .collect();
    let events = serde_json::Value::Array(events).to_string();
    // Inserted in the array's order, so ascending ids match the deliveries' order.
    let mut rows = sqlx::query(
        "INSERT INTO events (type, key, payload, received_at, delivery_id)
         SELECT value ->> '$.type', value ->> '$.key', value ->> '$.payload', value ->> '$.received',
                value ->> '$.delivery'
         FROM json_each(?1) ORDER BY json_each.key
         RETURNING *",
    )
    .bind(&events)
    .fetch_all(&mut *conn)
    .await?;
    rows.sort_by_key(|r| r.get::<i64, _>("id"));
    if rows.len() != deliveries.len() {
        return Err(StoreError::GroupCommit(format!(
            "{} events inserted for {} deliveries",
            rows.len(),
            deliveries.len()
        )));
    }
    let ids: Vec<i64> = rows.iter().map(|r| r.get("id")).collect();

    // Runs waiting for one of these events: resumed by the first of them, as one by one.
    let waiting: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT run_id, step, event_type, key FROM waits
         WHERE (event_type, key) IN (SELECT value ->> '$.type', value ->> '$.key' FROM json_each(?1))",
    )
    .bind(&events)
    .fetch_all(&mut *conn)
    .await?;
    let mut resumed: Vec<Vec<String>> = vec![Vec::new(); deliveries.len()];
    if !waiting.is_empty() {
        let mut done = std::collections::HashSet::new();
        for (i, d) in deliveries.iter().enumerate() {
            let output = crate::store::rows::event_output(&rows[i])?;
            for (run_id, step, event_type, key) in &waiting {
                if *event_type != d.event.event_type || *key != d.event.key || done.contains(run_id)
                {
                    continue;
                }
                let mut tx = AnyTx::from(&mut *conn);
                crate::store::events::resume_waiting_run(
                    &mut tx,
                    run_id,
                    step,
                    output.clone(),
                    d.now,
                )
                .await?;
                crate::store::events::consume(&mut tx, run_id, ids[i]).await?;
                done.insert(run_id.clone());
                resumed[i].push(run_id.clone());
            }
        }
    }

    // The runs the events start, each seeing the events after its own.
    let mut starts = Vec::new();
    for (i, d) in deliveries.iter().enumerate() {
        for (run, _) in d.starts {
            let mut run = run.clone();
            // The event was inserted just now: no run can have its key yet.
            run.trigger_key = Some(format!("event:{}:{}", ids[i], run.workflow));
            starts.push((i, run));
        }
    }
    let unstored: Vec<&NewRun> = deliveries
        .iter()
        .flat_map(|d| d.starts)
        .filter(|(_, stored)| !stored)
        .map(|(run, _)| run)
        .collect();
    crate::store::runs::store_versions(&mut AnyTx::from(&mut *conn), unstored, deliveries[0].now)
        .await?;
    let mut started: Vec<Vec<String>> = vec![Vec::new(); deliveries.len()];
    if !starts.is_empty() {
        let rows: Vec<super::runs::RunRow> = starts
            .iter()
            .map(|(i, run)| super::runs::RunRow {
                run,
                events_after: Some(ids[*i]),
                created: deliveries[*i].now,
            })
            .collect();
        let inserted = super::runs::insert_runs(conn, &rows, false).await?;
        if inserted.len() != starts.len() {
            return Err(StoreError::GroupCommit(format!(
                "{} runs inserted for {} starts",
                inserted.len(),
                starts.len()
            )));
        }
        let jobs: Vec<NewJob> = starts
            .iter()
            .map(|(_, run)| NewJob::step(&run.first_step, run.due_at))
            .collect();
        let jobs: Vec<(&str, &NewJob)> = starts
            .iter()
            .zip(&jobs)
            .map(|((_, run), job)| (run.id.as_str(), job))
            .collect();
        super::jobs::insert_jobs(conn, &jobs).await?;
        for (i, run) in &starts {
            started[*i].push(run.id.clone());
        }
    }
    Ok(ids
        .into_iter()
        .zip(resumed)
        .zip(started)
        .map(|((event_id, resumed_runs), started_runs)| Delivered {
            event_id,
            duplicate: false,
            resumed_runs,
            started_runs,
        })
        .collect())
}
