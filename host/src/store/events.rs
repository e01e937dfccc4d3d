//! Events: storing what arrived, resuming the runs waiting for it, starting the runs it
//! triggers — one transaction, so an event is never half delivered.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Backend, Store, StoreError};
use crate::run::{NewEvent, NewRun};

/// Events and waits. Made by [`Store::events`].
#[derive(Clone, Copy)]
pub struct Events<'a> {
    pub(super) store: &'a Store,
}

/// Result of delivering an event.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Delivered {
    pub event_id: i64,
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
        starts: &[NewRun],
        now: DateTime<Utc>,
    ) -> Result<Delivered, StoreError> {
        match &self.store.backend {
            Backend::Sqlite(db) => super::sqlite::events::deliver(db, event, starts, now).await,
            Backend::Postgres(db) => super::postgres::events::deliver(db, event, starts, now).await,
        }
    }
}
