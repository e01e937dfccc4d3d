//! Jobs: claiming due work for this process's workers, and the queue's figures for
//! readiness, metrics and tests.
//!
//! Claiming is where the backends differ most: the embedded store keeps its claims in
//! this process's memory; PostgreSQL leases rows with `FOR UPDATE SKIP LOCKED` so several
//! processes share the queue.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::transaction::Tx;
use super::{Backend, Store, StoreError, from_millis, millis};
use crate::run::{Job, NewJob};

/// The job queue. Made by [`Store::jobs`].
#[derive(Clone, Copy)]
pub struct Jobs<'a> {
    pub(super) store: &'a Store,
}

impl Jobs<'_> {
    /// Claims up to `limit` due jobs (engine time `now`), at most one per run and none of
    /// a run that already has a claimed job, leased to `owner` until `wall_now + lease`.
    pub async fn claim(
        self,
        owner: &str,
        now: DateTime<Utc>,
        wall_now: DateTime<Utc>,
        lease: chrono::Duration,
        limit: u32,
    ) -> Result<Vec<Job>, StoreError> {
        match &self.store.backend {
            Backend::Sqlite(db) => super::sqlite::jobs::claim(db, now, limit).await,
            Backend::Postgres(db) => {
                super::postgres::jobs::claim(db, owner, now, wall_now, lease, limit).await
            }
        }
    }

    /// When the earliest job is due, if any.
    pub async fn next_due(self) -> Result<Option<DateTime<Utc>>, StoreError> {
        on_reader!(self.store, |pool| {
            let due: Option<i64> = sqlx::query_scalar("SELECT min(due_at) FROM jobs")
                .fetch_one(pool)
                .await?;
            Ok(due.map(from_millis))
        })
    }

    /// Jobs due at `now` (leased or not): work the engine has not finished yet.
    pub async fn due(self, now: DateTime<Utc>) -> Result<i64, StoreError> {
        on_reader!(self.store, |pool| Ok(sqlx::query_scalar(
            "SELECT count(*) FROM jobs WHERE due_at <= $1"
        )
        .bind(millis(now))
        .fetch_one(pool)
        .await?))
    }

    /// How many jobs are due at `now` and since when the oldest of them has been due.
    pub async fn queue_stats(
        self,
        now: DateTime<Utc>,
    ) -> Result<(i64, Option<DateTime<Utc>>), StoreError> {
        on_reader!(self.store, |pool| {
            let row = sqlx::query(
                "SELECT count(*) AS n, min(due_at) AS oldest FROM jobs WHERE due_at <= $1",
            )
            .bind(millis(now))
            .fetch_one(pool)
            .await?;
            Ok((
                row.get("n"),
                row.get::<Option<i64>, _>("oldest").map(from_millis),
            ))
        })
    }

    /// Number of jobs (all kinds), for tests and readiness.
    pub async fn pending(self) -> Result<i64, StoreError> {
        on_reader!(self.store, |pool| Ok(sqlx::query_scalar(
            "SELECT count(*) FROM jobs"
        )
        .fetch_one(pool)
        .await?))
    }
}

/// Schedules jobs inside a transaction, each backend its fastest way (and PostgreSQL's
/// other processes are told by the transaction's `NOTIFY`, which its caller sends).
pub(super) async fn insert_jobs(
    tx: &mut Tx<'_>,
    jobs: &[(&str, &NewJob)],
) -> Result<(), StoreError> {
    match tx {
        Tx::Sqlite(conn) => super::sqlite::jobs::insert_jobs(conn, jobs).await,
        Tx::Postgres(conn) => super::postgres::jobs::insert_jobs(conn, jobs).await,
    }
}
