//! Cron: how far each workflow's schedule has been handled, and every firing, so a
//! firing happens once per (workflow, local time) however many processes look.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Backend, Store, StoreError, from_millis};
use crate::run::NewRun;

/// Cron cursors and firings. Made by [`Store::cron`].
#[derive(Clone, Copy)]
pub struct Cron<'a> {
    pub(super) store: &'a Store,
}

impl Cron<'_> {
    /// Up to when the schedule of `workflow` has been handled.
    pub async fn cursor(self, workflow: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        on_reader!(self.store, |pool| {
            let checked_to: Option<i64> =
                sqlx::query_scalar("SELECT checked_to FROM cron_cursors WHERE workflow = $1")
                    .bind(workflow)
                    .fetch_optional(pool)
                    .await?;
            Ok(checked_to.map(from_millis))
        })
    }

    /// Records one firing and starts its run, unless this (workflow, local time) fired
    /// already; moves the cursor. Returns whether a run was started.
    pub async fn fire(
        self,
        workflow: &str,
        local_time: &str,
        run: Option<&NewRun>,
        checked_to: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        match &self.store.backend {
            Backend::Sqlite(db) => {
                super::sqlite::cron::fire(db, workflow, local_time, run, checked_to, now).await
            }
            Backend::Postgres(db) => {
                super::postgres::cron::fire(db, workflow, local_time, run, checked_to, now).await
            }
        }
    }

    /// Every recorded firing of a workflow's schedule: (local time, run id).
    pub async fn firings(
        self,
        workflow: &str,
    ) -> Result<Vec<(String, Option<String>)>, StoreError> {
        on_reader!(self.store, |pool| {
            let rows = sqlx::query(
                "SELECT local_time, run_id FROM cron_firings WHERE workflow = $1 ORDER BY fired_at, local_time",
            )
            .bind(workflow)
            .fetch_all(pool)
            .await?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }
}
