//! Committing executed jobs: each outcome's step records, run update, next jobs, waits,
//! timers, events, child runs, effects (records, outbox rows) and plugin key-value writes,
//! many outcomes in one transaction.
//!
//! This is the commit point of the whole engine, so each backend does it its own fastest
//! way: SQLite through its group-commit writer with JSON-array statements, PostgreSQL with
//! `UNNEST` arrays, only for jobs still leased to the committing process.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{Backend, Store, StoreError};
use crate::run::JobOutcome;

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
