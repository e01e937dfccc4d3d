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
    GroupWrite::submit(&db.group, |reply| GroupWrite::Deliver {
        event: event.clone(),
        delivery_id: delivery_id.map(str::to_string),
        starts: starts.to_vec(),
        now,
        reply,
    })
    .await
}
