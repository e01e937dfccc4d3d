//! The SQLite backend: one file in WAL mode, one writer connection with group commit,
//! read-only connections beside it. The database belongs to one process.

mod group_commit;

pub(super) mod bounces;
pub(super) mod commit;
pub(super) mod cron;
pub(super) mod events;
pub(super) mod jobs;
pub(super) mod leads;
pub(super) mod outbox;
pub(super) mod retention;
pub(super) mod runs;

use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use crate::store::StoreError;
use group_commit::GroupWrite;

/// The store. Cheap to clone.
#[derive(Clone, Debug)]
pub(super) struct SqliteStore {
    /// Exactly one connection: every write transaction is serialized in-process, so
    /// SQLite never answers `SQLITE_BUSY` to our own workers.
    pub(in crate::store) writer: SqlitePool,
    /// Readers see committed data only (WAL) and never block the writer.
    pub(in crate::store) reader: SqlitePool,
    /// Jobs claimed by this process's workers and not committed yet. The embedded store
    /// belongs to one process, so its leases live here rather than in the file: a claim
    /// is a read, not a write transaction, and a killed process leaves no lease behind.
    claims: Arc<tokio::sync::Mutex<Claims>>,
    /// Workflow versions known to be stored, so starting a run skips that insert.
    stored_versions: Arc<std::sync::Mutex<HashSet<String>>>,
    /// Group commit: step outcomes and run starts go to one writer task, which commits
    /// whatever has queued up meanwhile in one transaction (one fsync for all).
    group: tokio::sync::mpsc::Sender<GroupWrite>,
}

#[derive(Debug, Default)]
pub(super) struct Claims {
    pub(super) jobs: HashSet<i64>,
    pub(super) runs: HashSet<String>,
}

type Tx<'a> = Transaction<'a, Sqlite>;

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite://path/to/file.db`) and
    /// applies migrations.
    pub async fn open(url: &str) -> Result<SqliteStore, StoreError> {
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| StoreError::Open {
                url: url.to_string(),
                reason: "only sqlite:// URLs are supported by this build".into(),
            })?;
        let path = path.split('?').next().unwrap_or(path);
        if let Some(parent) = Path::new(path)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::Open {
                url: url.to_string(),
                reason: format!("cannot create {}: {e}", parent.display()),
            })?;
        }
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Open {
                url: url.to_string(),
                reason: e.to_string(),
            })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit survives power loss, not only a process crash.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(StdDuration::from_secs(10))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        Ok(SqliteStore::with_pools(writer, reader, 1024))
    }

    /// The store on its pools, with the group-commit writer behind a queue of `queue`.
    fn with_pools(writer: SqlitePool, reader: SqlitePool, queue: usize) -> SqliteStore {
        let (group, requests) = tokio::sync::mpsc::channel(queue);
        tokio::spawn(group_commit::group_writer(writer.clone(), requests));
        SqliteStore {
            writer,
            reader,
            claims: Arc::default(),
            stored_versions: Arc::default(),
            group,
        }
    }

    /// The database at `url` for reading only (`kontor simulate`): no migration runs, no
    /// file is made, and every connection is read-only, so nothing — not even a WAL
    /// checkpoint when the last connection closes — changes the file. A database that
    /// predates this binary's migrations is refused.
    pub async fn open_read_only(url: &str) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Open {
                url: url.to_string(),
                reason: e.to_string(),
            })?
            .read_only(true)
            .busy_timeout(StdDuration::from_secs(10));
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await?;
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&reader)
                .await
                .unwrap_or(None);
        let known = sqlx::migrate!("migrations/sqlite")
            .iter()
            .map(|m| m.version)
            .max()
            .unwrap_or(0);
        if applied.unwrap_or(0) < known {
            return Err(StoreError::Open {
                url: url.to_string(),
                reason: "the database predates this Kontor (its migrations have not run): start `kontor serve` on it once".into(),
            });
        }
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        Ok(SqliteStore::with_pools(writer, reader, 1))
    }

    /// The durability settings in force, e.g. `journal_mode=wal, synchronous=FULL`.
    pub async fn durability(&self) -> Result<String, StoreError> {
        let mut conn = self.writer.acquire().await?;
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *conn)
            .await?;
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut *conn)
            .await?;
        let level = match synchronous {
            0 => "OFF",
            1 => "NORMAL",
            2 => "FULL",
            _ => "EXTRA",
        };
        Ok(format!(
            "journal_mode={journal}, synchronous={level} (every commit is fsynced)"
        ))
    }

    /// The state of several runs in one query (the runs of a claimed batch).
    pub(super) fn version_stored(&self, version: &str) -> bool {
        self.stored_versions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(version)
    }
}
