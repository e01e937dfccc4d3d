//! The PostgreSQL backend: several `kontor serve` processes on one database.
//!
//! - **Claims**: jobs (and outbox messages) are claimed in batches with
//!   `FOR UPDATE SKIP LOCKED` and leased to the claiming process until a wall-clock time.
//!   A job whose lease expired (its process died) is claimed again; a commit only applies
//!   to jobs still leased to the committing process, so a taken-over job is never
//!   committed twice.
//! - **Wakeups**: every transaction that adds jobs, events or mail sends `NOTIFY`; one
//!   `LISTEN` connection per process wakes its idle workers. Polling stays as fallback.
//! - **Leaders**: one process fires cron and one dispatches email, each holding a session
//!   advisory lock on a connection of its own (see [`leaders`]).
//! - **Races between processes**: a run parking in `wait_for` and an event arriving for
//!   it take the same transaction-scoped advisory lock (per event type and key); a parent
//!   parking in `wait_children` and a child finishing lock the parent's row. Either way
//!   the second transaction sees what the first committed.

pub(super) mod commit;
pub(super) mod cron;
pub(super) mod jobs;
pub(super) mod leaders;
pub(super) mod leads;
pub(super) mod outbox;
pub(super) mod retention;
pub(super) mod runs;

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration as StdDuration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};
use tokio::sync::Notify;
use tracing::{debug, warn};

use crate::store::transaction::Notice;
use crate::store::{StoreError, redact};
use leaders::LeaderConnection;

/// Channel notified when jobs or events were added.
const WORK_CHANNEL: &str = "kontor_work";
/// Channel notified when email was queued.
const MAIL_CHANNEL: &str = "kontor_mail";

type Tx<'a> = Transaction<'a, Postgres>;

#[derive(Clone, Debug)]
pub(super) struct PgStore {
    pub(in crate::store) pool: PgPool,
    /// Connections for taking and giving back job leases, whose commits do not wait for
    /// their WAL flush (`synchronous_commit=off`): a lease lost in a database crash only
    /// makes its job claimable again, and the commit of the job's outcome checks that the
    /// lease is still this process's, so nothing runs to a commit twice.
    pub(in crate::store) claims: PgPool,
    pub(in crate::store) options: Arc<PgConnectOptions>,
    /// Names this process in outbox leases.
    pub(in crate::store) owner: String,
    /// How long a claimed outbox message stays leased (ms, wall clock).
    pub(in crate::store) mail_lease_ms: Arc<AtomicI64>,
    pub(in crate::store) stored_versions: Arc<std::sync::Mutex<HashSet<String>>>,
    /// The connections that hold (or ask for) the leaders' advisory locks.
    pub(in crate::store) cron_conn: LeaderConnection,
    pub(in crate::store) mail_conn: LeaderConnection,
    pub(in crate::store) work_added: Arc<Notify>,
    pub(in crate::store) mail_added: Arc<Notify>,
}

impl PgStore {
    pub async fn open(url: &str) -> Result<PgStore, StoreError> {
        let open_error = |reason: String| StoreError::Open {
            url: redact(url),
            reason,
        };
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| open_error(e.to_string()))?
            .application_name("kontor");
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .min_connections(2)
            .acquire_timeout(StdDuration::from_secs(30))
            .connect_with(options.clone())
            .await
            .map_err(|e| open_error(e.to_string()))?;
        // sqlx takes an advisory lock around migrations, so processes starting together
        // apply them once.
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        let claims = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(StdDuration::from_secs(30))
            .connect_lazy_with(options.clone().options([("synchronous_commit", "off")]));
        let store = PgStore {
            pool,
            claims,
            options: Arc::new(options),
            owner: format!(
                "kontor-{}-{}",
                std::process::id(),
                uuid::Uuid::now_v7().simple()
            ),
            mail_lease_ms: Arc::new(AtomicI64::new(120_000)),
            stored_versions: Arc::default(),
            cron_conn: Arc::default(),
            mail_conn: Arc::default(),
            work_added: Arc::new(Notify::new()),
            mail_added: Arc::new(Notify::new()),
        };
        store.listen().await?;
        Ok(store)
    }

    /// Starts the `LISTEN` task: notifications from any process wake this one's workers
    /// and dispatcher. A lost connection is re-established by sqlx; since notifications
    /// sent meanwhile are lost, everyone is woken once to look for themselves.
    async fn listen(&self) -> Result<(), StoreError> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen_all([WORK_CHANNEL, MAIL_CHANNEL]).await?;
        let work = self.work_added.clone();
        let mail = self.mail_added.clone();
        tokio::spawn(async move {
            loop {
                match listener.try_recv().await {
                    Ok(Some(n)) if n.channel() == MAIL_CHANNEL => mail.notify_waiters(),
                    Ok(Some(_)) => work.notify_waiters(),
                    Ok(None) => {
                        debug!("LISTEN connection lost; reconnecting");
                        work.notify_waiters();
                        mail.notify_waiters();
                    }
                    Err(e) => {
                        warn!(error = %e, "LISTEN failed; polling until it is back");
                        tokio::time::sleep(StdDuration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(())
    }

    /// How long a claimed outbox message stays leased to this process.
    pub fn set_mail_lease(&self, lease: StdDuration) {
        self.mail_lease_ms
            .store(lease.as_millis() as i64, Ordering::Relaxed);
    }

    pub async fn durability(&self) -> Result<String, StoreError> {
        let sync: String = sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(&self.pool)
            .await?;
        let fsync: String = sqlx::query_scalar("SHOW fsync")
            .fetch_one(&self.pool)
            .await?;
        Ok(format!(
            "PostgreSQL synchronous_commit={sync}, fsync={fsync}"
        ))
    }

    pub(super) fn version_stored(&self, version: &str) -> bool {
        self.stored_versions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(version)
    }

    pub(super) fn versions_stored<'a>(&self, versions: impl IntoIterator<Item = &'a String>) {
        self.stored_versions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(versions.into_iter().cloned());
    }
}

/// `NOTIFY` of a [`Notice`], delivered to every listening process when the transaction
/// commits (several in one transaction are delivered once).
pub(super) async fn notify(conn: &mut PgConnection, notice: Notice) -> Result<(), StoreError> {
    let channel = match notice {
        Notice::Work => WORK_CHANNEL,
        Notice::Mail => MAIL_CHANNEL,
    };
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(channel)
        .execute(conn)
        .await?;
    Ok(())
}
