//! Events on SQLite: a delivery goes through the group-commit writer, so concurrent
//! deliveries (and run starts, and step commits) share one transaction and one fsync;
//! each still answers only once its own write is durable, and one that fails fails alone.

use chrono::{DateTime, Utc};

use super::SqliteStore;
use super::group_commit::GroupWrite;
use crate::run::{NewEvent, NewRun};
use crate::store::{Delivered, StoreError};

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
