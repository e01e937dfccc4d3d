//! The store: the only module that speaks SQL.
//!
//! Everything durable goes through [`Store`]: workflow versions, runs, jobs, step history,
//! events and waits, effects, tokens, cron firings, the email outbox. Its API is shaped
//! for batches — claim many jobs, commit many [`JobOutcome`]s in one transaction — so the
//! engine does not care which backend holds the data:
//!
//! - **SQLite** (`sqlite://path/file.db`, the embedded default): one file in WAL mode with
//!   a single writer connection and group commit; it belongs to one process, so claims
//!   live in that process's memory.
//! - **PostgreSQL** (`postgres://…`): several `kontor serve` processes share one database.
//!   Jobs and outbox messages are claimed with `FOR UPDATE SKIP LOCKED` and a lease;
//!   `LISTEN/NOTIFY` wakes idle workers in every process; one process at a time fires
//!   cron and one dispatches email, each holding an advisory lock on a dedicated
//!   connection.

mod postgres;
mod rows;
mod sqlite;
pub mod testing;
mod types;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use crate::engine::effects::OutgoingEmail;
pub use postgres::{LeaderLease, Role};
pub use types::*;

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
pub enum Store {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

impl Store {
    /// Opens the database at `url` and applies migrations: `sqlite://path/file.db`
    /// (created if missing) or `postgres://user:password@host/database`.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Store::Postgres(postgres::PgStore::open(url).await?))
        } else if url.starts_with("sqlite:") {
            Ok(Store::Sqlite(sqlite::SqliteStore::open(url).await?))
        } else {
            Err(StoreError::Open {
                url: redact(url),
                reason: "database_url must start with sqlite:// or postgres://".into(),
            })
        }
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Whether other processes may work on the same database (then cron needs a leader).
    pub fn is_shared(&self) -> bool {
        matches!(self, Store::Postgres(_))
    }

    /// Notified when another process (or this one) added work: new jobs or events. `None`
    /// for the embedded store, whose only writer is this process.
    pub fn work_added(&self) -> Option<&Arc<tokio::sync::Notify>> {
        match self {
            Store::Sqlite(_) => None,
            Store::Postgres(s) => Some(s.work_added()),
        }
    }

    /// Notified when a process queued email.
    pub fn mail_added(&self) -> Option<&Arc<tokio::sync::Notify>> {
        match self {
            Store::Sqlite(_) => None,
            Store::Postgres(s) => Some(s.mail_added()),
        }
    }

    /// Tries to become the leader for `role`. The embedded store's process always leads;
    /// on PostgreSQL the lease is an advisory lock held on its own connection, lost when
    /// that connection (or the process) dies.
    pub async fn try_lead(&self, role: Role) -> Result<Option<LeaderLease>, StoreError> {
        match self {
            Store::Sqlite(_) => Ok(Some(LeaderLease::embedded())),
            Store::Postgres(s) => s.try_lead(role).await,
        }
    }

    /// How long a claimed outbox message stays leased to this process (shared store only:
    /// the embedded store requeues interrupted sends at start).
    pub fn set_mail_lease(&self, lease: std::time::Duration) {
        if let Store::Postgres(s) = self {
            s.set_mail_lease(lease);
        }
    }

    /// Re-seals every secret in one transaction: `reseal` gets each name and sealed value
    /// and returns the new sealed value. Nothing changes if any secret fails.
    pub async fn reseal_secrets<E>(
        &self,
        reseal: impl FnMut(&str, &crate::secrets::Sealed) -> Result<crate::secrets::Sealed, E>,
        now: DateTime<Utc>,
    ) -> Result<Result<usize, E>, StoreError> {
        match self {
            Store::Sqlite(s) => s.reseal_secrets(reseal, now).await,
            Store::Postgres(s) => s.reseal_secrets(reseal, now).await,
        }
    }
}

/// Creates a new, empty PostgreSQL database next to the one `admin_url` names and returns
/// its URL (tests and benchmarks: each gets a database of its own).
pub async fn scratch_postgres_database(
    admin_url: &str,
    prefix: &str,
) -> Result<String, StoreError> {
    use sqlx::Connection;
    let open_error = |reason: String| StoreError::Open {
        url: redact(admin_url),
        reason,
    };
    let mut conn = sqlx::PgConnection::connect(admin_url)
        .await
        .map_err(|e| open_error(e.to_string()))?;
    let name = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await?;
    let (base, _) = admin_url
        .split_once('?')
        .map_or((admin_url, ""), |(b, q)| (b, q));
    let server = base
        .rsplit_once('/')
        .filter(|(server, _)| server.contains("://") && !server.ends_with('/'))
        .map_or(base, |(server, _)| server);
    let query = admin_url.split_once('?').map(|(_, q)| format!("?{q}"));
    Ok(format!("{server}/{name}{}", query.unwrap_or_default()))
}

/// Drops a database made by [`scratch_postgres_database`] (disconnecting its sessions).
pub async fn drop_scratch_postgres_database(admin_url: &str, url: &str) -> Result<(), StoreError> {
    use sqlx::Connection;
    let name = url
        .split('?')
        .next()
        .and_then(|base| base.rsplit('/').next())
        .unwrap_or_default();
    let mut conn = sqlx::PgConnection::connect(admin_url).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut conn)
        .await?;
    Ok(())
}

/// Whether this process leads a [`Role`], kept by a loop that asks before each pass: the
/// store is consulted at most once a second (to check a held lease, or to try to take a
/// free one).
pub struct Leadership {
    role: Role,
    lease: Option<LeaderLease>,
    asked: Option<std::time::Instant>,
}

impl Leadership {
    pub fn new(role: Role) -> Leadership {
        Leadership {
            role,
            lease: None,
            asked: None,
        }
    }

    /// True while this process leads; logs when it takes over or loses the role.
    pub async fn holds(&mut self, store: &Store) -> bool {
        if self
            .asked
            .is_some_and(|at| at.elapsed() < std::time::Duration::from_secs(1))
        {
            return self.lease.is_some();
        }
        self.asked = Some(std::time::Instant::now());
        let duty = match self.role {
            Role::Cron => "leads cron",
            Role::Mail => "dispatches email",
        };
        if let Some(lease) = &self.lease
            && !lease.is_held().await
        {
            tracing::warn!("this process no longer {duty}");
            self.lease = None;
        }
        if self.lease.is_none() {
            match store.try_lead(self.role).await {
                Ok(Some(lease)) => {
                    if store.is_shared() {
                        tracing::info!("this process now {duty}");
                    }
                    self.lease = Some(lease);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "could not ask whether this process {duty}"),
            }
        }
        self.lease.is_some()
    }
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

/// Both backends answer the same methods; these forward to the one in use.
macro_rules! forward {
    ($( $(#[$meta:meta])* fn $name:ident(&self $(, $arg:ident: $ty:ty)* $(,)?) -> $ret:ty; )*) => {
        impl Store {
            $(
                $(#[$meta])*
                pub async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    match self {
                        Store::Sqlite(s) => s.$name($($arg),*).await,
                        Store::Postgres(s) => s.$name($($arg),*).await,
                    }
                }
            )*
        }
    };
}

forward! {
    /// The durability settings in force.
    fn durability(&self) -> Result<String, StoreError>;
    /// Step records committed so far (benchmarks count these).
    fn committed_steps(&self) -> Result<i64, StoreError>;
    /// Returns true when the database answers.
    fn ping(&self) -> bool;
    /// Starts runs (each with its first job), idempotently by trigger key.
    fn start_runs(&self, runs: &[NewRun], now: DateTime<Utc>) -> Result<Vec<Started>, StoreError>;
    /// Starts `run` unless `key` was used before; stores the answer for replays.
    fn start_run_once(&self, run: &NewRun, key: &str, request_hash: &str, answer: &StoredAnswer, now: DateTime<Utc>) -> Result<Once, StoreError>;
    /// The state of several runs in one query (the runs of a claimed batch).
    fn load_runs(&self, ids: &[&str]) -> Result<Vec<RunState>, StoreError>;
    fn get_run(&self, id: &str) -> Result<Option<RunView>, StoreError>;
    fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunView>, StoreError>;
    fn step_history(&self, run_id: &str) -> Result<Vec<StepRecord>, StoreError>;
    fn child_counts(&self, parent_id: &str) -> Result<ChildCounts, StoreError>;
    /// The stored source of a workflow version (for runs whose file has changed since).
    fn workflow_source(&self, version: &str) -> Result<Option<(String, String)>, StoreError>;
    /// Records of a collection (what `record` steps wrote), for the API and tests.
    fn records(&self, collection: &str) -> Result<Vec<(String, Json)>, StoreError>;
    /// All effect idempotency keys, in commit order (crash tests compare them).
    fn effect_keys(&self) -> Result<Vec<String>, StoreError>;
    /// Claims up to `limit` due jobs (engine time `now`), at most one per run and none of
    /// a run that already has a claimed job, leased to `owner` until `wall_now + lease`.
    fn claim_jobs(&self, owner: &str, now: DateTime<Utc>, wall_now: DateTime<Utc>, lease: chrono::Duration, limit: u32) -> Result<Vec<Job>, StoreError>;
    /// When the earliest job is due, if any.
    fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Jobs due at `now` (leased or not): work the engine has not finished yet.
    fn due_jobs(&self, now: DateTime<Utc>) -> Result<i64, StoreError>;
    /// How many jobs are due at `now` and since when the oldest of them has been due.
    fn queue_stats(&self, now: DateTime<Utc>) -> Result<(i64, Option<DateTime<Utc>>), StoreError>;
    /// Cancels a run that has not finished, and all its descendants; returns the
    /// cancelled run ids, or `None` if the run does not exist.
    fn cancel_run(&self, id: &str, now: DateTime<Utc>) -> Result<Option<Vec<String>>, StoreError>;
    /// Puts a failed run back to work at the step that failed.
    fn retry_run(&self, id: &str, now: DateTime<Utc>) -> Result<Result<String, RetryRefused>, StoreError>;
    /// Deletes up to `batch` finished runs (completed or cancelled) with their history.
    fn prune_runs(&self, cutoff: DateTime<Utc>, batch: u32) -> Result<u64, StoreError>;
    /// Deletes up to `batch` events received before `cutoff`.
    fn prune_events(&self, cutoff: DateTime<Utc>, batch: u32) -> Result<u64, StoreError>;
    /// Forgets idempotency keys stored before `cutoff` (at most `batch`).
    fn prune_idempotency_keys(&self, cutoff: DateTime<Utc>, batch: u32) -> Result<u64, StoreError>;
    /// Number of jobs (all kinds), for tests and readiness.
    fn pending_jobs(&self) -> Result<i64, StoreError>;
    /// Commits the outcomes of many jobs in one transaction. An outcome whose job no
    /// longer exists, or is no longer leased to `owner`, is skipped and reported `false`.
    fn commit(&self, owner: &str, outcomes: Arc<[JobOutcome]>, now: DateTime<Utc>) -> Result<Vec<bool>, StoreError>;
    /// Stores an event, resumes the runs waiting for it and starts the runs it triggers.
    fn deliver_event(&self, event: &NewEvent, starts: &[NewRun], now: DateTime<Utc>) -> Result<Delivered, StoreError>;
    fn insert_token(&self, id: &str, token_hash: &str, role: &str, description: Option<&str>, now: DateTime<Utc>) -> Result<(), StoreError>;
    fn count_tokens(&self) -> Result<i64, StoreError>;
    /// The role of the token with this hash, if any.
    fn token_role(&self, token_hash: &str) -> Result<Option<String>, StoreError>;
    /// Stores a sealed secret (insert or replace).
    fn put_secret(&self, name: &str, sealed: &crate::secrets::Sealed, now: DateTime<Utc>) -> Result<(), StoreError>;
    /// Stores a sealed secret unless one of that name exists; returns whether it did
    /// (several processes creating the same secret at once: one wins, all read it).
    fn put_secret_if_absent(&self, name: &str, sealed: &crate::secrets::Sealed, now: DateTime<Utc>) -> Result<bool, StoreError>;
    fn get_secret(&self, name: &str) -> Result<Option<crate::secrets::Sealed>, StoreError>;
    /// The committed value of `key` in the key-value store of plugin `plugin`.
    fn plugin_kv_get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Plugin configurations set through the API, by plugin.
    fn plugin_configs(&self) -> Result<Vec<(String, Json)>, StoreError>;
    /// Sets (or with `None` removes) the API configuration of `plugin`.
    fn put_plugin_config(&self, plugin: &str, config: Option<&Json>, now: DateTime<Utc>) -> Result<(), StoreError>;
    /// Names and times of all secrets (never their values).
    fn list_secrets(&self) -> Result<Vec<SecretInfo>, StoreError>;
    fn delete_secret(&self, name: &str) -> Result<bool, StoreError>;
    /// Up to when the schedule of `workflow` has been handled.
    fn cron_cursor(&self, workflow: &str) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Records one firing and starts its run, unless this (workflow, local time) fired
    /// already; moves the cursor. Returns whether a run was started.
    fn fire_cron(&self, workflow: &str, local_time: &str, run: Option<&NewRun>, checked_to: DateTime<Utc>, now: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Every recorded firing of a workflow's schedule: (local time, run id).
    fn cron_firings(&self, workflow: &str) -> Result<Vec<(String, Option<String>)>, StoreError>;
    /// Queues messages outside any run in one transaction (proofs, benchmarks).
    fn enqueue_emails(&self, emails: &[OutgoingEmail], now: DateTime<Utc>) -> Result<(), StoreError>;
    /// Messages a crash left mid-send go back to the queue with their id (and so their
    /// Message-ID). Returns how many.
    fn recover_outbox(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;
    /// Claims up to `limit` due messages: they become `sending`.
    fn claim_outbox(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<OutboxMessage>, StoreError>;
    /// Records what happened to dispatched messages, all in one transaction.
    fn update_outbox(&self, updates: &[OutboxUpdate]) -> Result<(), StoreError>;
    /// Messages a channel sent on the UTC day of `now`.
    fn sent_today(&self, channel: &str, now: DateTime<Utc>) -> Result<u64, StoreError>;
    /// Why mail for `purpose` may not go to `address`, if it may not.
    fn suppression(&self, address: &str, purpose: &str) -> Result<Option<Suppression>, StoreError>;
    /// Blocks `purpose` (`*`: every purpose) for `address`. Keeps the first reason.
    fn suppress(&self, address: &str, purpose: &str, reason: &str, detail: Option<&str>, now: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Suppressions of one address, or all (newest first).
    fn suppressions(&self, address: Option<&str>, limit: u32) -> Result<Vec<Suppression>, StoreError>;
    /// Stores a bounce report; returns how many soft bounces `address` had since `since`.
    #[allow(clippy::too_many_arguments)]
    fn record_bounce(&self, address: &str, kind: &str, status: Option<&str>, detail: Option<&str>, message_id: Option<&str>, since: DateTime<Utc>, now: DateTime<Utc>) -> Result<i64, StoreError>;
    fn get_message(&self, id: &str) -> Result<Option<MessageView>, StoreError>;
    /// Messages by run, campaign, recipient and status; newest first, `before` an id.
    fn list_messages(&self, filter: &MessageFilter) -> Result<Vec<MessageView>, StoreError>;
    /// Messages by status for the filter's run, campaign and recipient.
    fn message_counts(&self, filter: &MessageFilter) -> Result<std::collections::BTreeMap<String, i64>, StoreError>;
    /// Deletes up to `batch` messages that reached a final state before `cutoff`.
    fn prune_outbox(&self, cutoff: DateTime<Utc>, batch: u32) -> Result<u64, StoreError>;
}
