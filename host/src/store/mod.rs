//! The store: the only module that speaks SQL.
//!
//! Everything durable goes through [`Store`]: workflow versions, runs, jobs, step history,
//! events and waits, effects, tokens, cron firings. Its API is shaped for batches — claim
//! many jobs, commit many [`JobOutcome`]s in one transaction — so group commit and the
//! PostgreSQL backend (`FOR UPDATE SKIP LOCKED`, leases across processes) fit behind it
//! without changing the engine.
//!
//! The embedded default is one SQLite file in WAL mode with a single writer connection,
//! so concurrent workers never see `SQLITE_BUSY`.

mod sqlite;
mod types;

pub use sqlite::Store;
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
