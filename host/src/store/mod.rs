//! The store: the only module that speaks SQL.
//!
//! Everything durable goes through [`Store`], one facade per concept, named for what it
//! holds — `store.runs().get(id)`, `store.outbox().claim(now, 100)` — so a caller never
//! cares which backend holds the data:
//!
//! - **SQLite** (`sqlite://path/file.db`, the embedded default): one file in WAL mode with
//!   a single writer connection and group commit; it belongs to one process, so claims
//!   live in that process's memory.
//! - **PostgreSQL** (`postgres://…`): several `kontor serve` processes share one database.
//!   Jobs and outbox messages are claimed with `FOR UPDATE SKIP LOCKED` and a lease;
//!   `LISTEN/NOTIFY` wakes idle workers in every process; one process at a time fires
//!   cron and one dispatches email, each holding an advisory lock on a dedicated
//!   connection.
//!
//! # Layout
//!
//! Each concept has a facade file here, and `sqlite/` and `postgres/` hold files of the
//! **same names** for what only that backend does (claiming, batching, notifications,
//! dialect), so `diff sqlite/X.rs postgres/X.rs` shows only real differences. A statement
//! whose SQL is the same on both backends (`$1` placeholders work on both) is written once
//! in the facade with [`on_reader!`] or [`on_writer!`].
//!
//! | facade | holds |
//! |---|---|
//! | [`runs`] | starting runs, their state, views and step history; cancel and retry |
//! | [`jobs`] | claiming due jobs; queue figures |
//! | [`commit`] | committing the outcomes of executed jobs, with their effects |
//! | [`events`] | events, and the runs waiting for them |
//! | [`records`] | what `record` steps wrote; effect keys |
//! | [`outbox`] | queued email and what became of it |
//! | [`suppressions`] | addresses mail must not go to; bounces |
//! | [`secrets`] | sealed secret values (sealing them is not the store's job) |
//! | [`tokens`] | API tokens (hashes only) |
//! | [`leads`] | leads, their history, assignment counters and absence; routing a lead in one transaction |
//! | [`users`] | people: roles, team, rep id, active |
//! | [`audit`] | who changed what and when, written in the change's own transaction |
//! | [`plugin_state`] | plugins' key-value stores and API-set configurations |
//! | [`cron`] | schedule cursors and firings |
//! | [`retention`] | pruning what is old |
//! | [`leaders`] | which process fires cron and dispatches email |
//! | [`rows`] | decoding rows into the types above, once for both backends |
//! | [`scratch`] | scratch PostgreSQL databases for tests and benchmarks |
//! | [`testing`] | running one behaviour test on both backends |

/// Runs `$body` with `$pool` bound to the backend's pool for reads (SQLite's read-only
/// connections, PostgreSQL's pool): a statement whose SQL is the same on both backends,
/// written once and compiled for each.
macro_rules! on_reader {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.backend {
            $crate::store::Backend::Sqlite(db) => {
                let $pool = &db.reader;
                $body
            }
            $crate::store::Backend::Postgres(db) => {
                let $pool = &db.pool;
                $body
            }
        }
    };
}

/// Like [`on_reader!`], with the pool for writes (SQLite's single writer connection).
macro_rules! on_writer {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.backend {
            $crate::store::Backend::Sqlite(db) => {
                let $pool = &db.writer;
                $body
            }
            $crate::store::Backend::Postgres(db) => {
                let $pool = &db.pool;
                $body
            }
        }
    };
}

pub mod audit;
pub mod commit;
pub mod cron;
pub mod events;
pub mod jobs;
pub mod leaders;
pub mod leads;
pub mod outbox;
pub mod plugin_state;
pub mod records;
pub mod retention;
mod rows;
pub mod runs;
pub mod scratch;
pub mod secrets;
pub mod suppressions;
pub mod testing;
pub mod tickets;
pub mod timeline;
pub mod tokens;
pub mod users;

mod postgres;
mod sqlite;
mod transaction;

use std::sync::Arc;

use chrono::{DateTime, Utc};

pub use audit::Actor;
pub use events::Delivered;
pub use leaders::{LeaderLease, Leadership, Role};
pub use outbox::{MessageFilter, MessageView, OutboxMessage, OutboxUpdate};
pub use runs::{ChildCounts, IdempotentStart, RetryRefused, RunFilter, RunView, StoredAnswer};
pub use scratch::{drop_scratch_postgres_database, scratch_postgres_database};
pub use secrets::{Sealed, SecretInfo};
pub use suppressions::Suppression;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("group commit failed: {0}")]
    GroupCommit(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// What was asked for cannot be done with this data (a `route` step's run has no lead).
    #[error("{0}")]
    Invalid(String),
    #[error("cannot open the database at {url}: {reason}")]
    Open { url: String, reason: String },
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

/// The store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
}

/// The database behind a [`Store`].
#[derive(Clone, Debug)]
enum Backend {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

impl Store {
    /// Opens the database at `url` and applies migrations: `sqlite://path/file.db`
    /// (created if missing) or `postgres://user:password@host/database`.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres(postgres::PgStore::open(url).await?)
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite(sqlite::SqliteStore::open(url).await?)
        } else {
            return Err(StoreError::Open {
                url: redact(url),
                reason: "database_url must start with sqlite:// or postgres://".into(),
            });
        };
        Ok(Store { backend })
    }

    /// The store for reading only: on SQLite every connection is read-only and no
    /// migration runs, so not even a WAL checkpoint changes the file; on PostgreSQL, the
    /// store as [`Store::open`] opens it.
    pub async fn open_read_only(url: &str) -> Result<Store, StoreError> {
        if url.starts_with("sqlite:") {
            let db = sqlite::SqliteStore::open_read_only(url).await?;
            return Ok(Store {
                backend: Backend::Sqlite(db),
            });
        }
        Store::open(url).await
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Whether other processes may work on the same database (then cron needs a leader).
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Runs: starting them, their state and history, cancel and retry.
    pub fn runs(&self) -> runs::Runs<'_> {
        runs::Runs { store: self }
    }

    /// Jobs: claiming due work, queue figures.
    pub fn jobs(&self) -> jobs::Jobs<'_> {
        jobs::Jobs { store: self }
    }

    /// Events and the runs waiting for them.
    pub fn events(&self) -> events::Events<'_> {
        events::Events { store: self }
    }

    /// Records `record` steps wrote, and effect keys.
    pub fn records(&self) -> records::Records<'_> {
        records::Records { store: self }
    }

    /// The email outbox.
    pub fn outbox(&self) -> outbox::Outbox<'_> {
        outbox::Outbox { store: self }
    }

    /// Addresses mail must not go to, and bounces.
    pub fn suppressions(&self) -> suppressions::Suppressions<'_> {
        suppressions::Suppressions { store: self }
    }

    /// Sealed secret values.
    pub fn secrets(&self) -> secrets::Secrets<'_> {
        secrets::Secrets { store: self }
    }

    /// API tokens.
    pub fn tokens(&self) -> tokens::Tokens<'_> {
        tokens::Tokens { store: self }
    }

    /// Leads, their history and the counters assignment reads.
    pub fn leads(&self) -> leads::Leads<'_> {
        leads::Leads { store: self }
    }

    /// Service tickets and their timeline.
    pub fn tickets(&self) -> tickets::Tickets<'_> {
        tickets::Tickets { store: self }
    }

    /// People: their roles, team and rep id.
    pub fn users(&self) -> users::Users<'_> {
        users::Users { store: self }
    }

    /// The audit log.
    pub fn audit(&self) -> audit::Audit<'_> {
        audit::Audit { store: self }
    }

    /// Plugins' key-value stores and configurations.
    pub fn plugin_state(&self) -> plugin_state::PluginState<'_> {
        plugin_state::PluginState { store: self }
    }

    /// Cron cursors and firings.
    pub fn cron(&self) -> cron::Cron<'_> {
        cron::Cron { store: self }
    }

    /// Pruning of old runs, events, keys and messages.
    pub fn retention(&self) -> retention::Retention<'_> {
        retention::Retention { store: self }
    }

    /// Notified when another process (or this one) added work: new jobs or events. `None`
    /// for the embedded store, whose only writer is this process.
    pub fn work_added(&self) -> Option<&Arc<tokio::sync::Notify>> {
        match &self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(db) => Some(&db.work_added),
        }
    }

    /// Notified when a process queued email.
    pub fn mail_added(&self) -> Option<&Arc<tokio::sync::Notify>> {
        match &self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(db) => Some(&db.mail_added),
        }
    }

    /// The durability settings in force.
    pub async fn durability(&self) -> Result<String, StoreError> {
        match &self.backend {
            Backend::Sqlite(db) => db.durability().await,
            Backend::Postgres(db) => db.durability().await,
        }
    }

    /// Returns true when the database answers.
    pub async fn ping(&self) -> bool {
        on_reader!(self, |pool| sqlx::query("SELECT 1")
            .execute(pool)
            .await
            .is_ok())
    }
}

/// Milliseconds since the epoch, the store's time unit.
pub(crate) fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The time of a stored epoch-milliseconds value.
pub(crate) fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_string(),
    }
}

/// Opening a write transaction on either backend's writer.
///
/// On SQLite it is `BEGIN IMMEDIATE`: a deferred transaction that reads first and then
/// writes is refused at once with "database is locked" when another process (a CLI
/// command next to `kontor serve`) wrote in between — the busy timeout does not apply to
/// that upgrade — while an immediate one waits for the write lock up front.
pub(crate) trait BeginWrite {
    type Db: sqlx::Database;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<Output = Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>>
    + Send;
}

impl BeginWrite for sqlx::SqlitePool {
    type Db = sqlx::Sqlite;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<
        Output = Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error>,
    > + Send {
        self.begin_with("BEGIN IMMEDIATE")
    }
}

impl BeginWrite for sqlx::PgPool {
    type Db = sqlx::Postgres;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<
        Output = Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error>,
    > + Send {
        self.begin()
    }
}
