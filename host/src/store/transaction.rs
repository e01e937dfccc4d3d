//! A transaction on either backend, for the statements inside a commit, a delivery or a
//! start that read the same on both: inserting a run, registering and ending waits,
//! storing events, applying effects. Each backend opens its own transaction and hands its
//! connection in as a [`Tx`]; what only PostgreSQL needs (advisory locks, row locks
//! between processes) is asked for by name and is nothing on SQLite, whose single writer
//! serializes everything anyway.

use sqlx::{PgConnection, SqliteConnection};

use super::StoreError;

/// The connection of an open transaction.
pub(super) enum Tx<'t> {
    Sqlite(&'t mut SqliteConnection),
    Postgres(&'t mut PgConnection),
}

/// Runs `$body` with `$conn` bound to the transaction's connection: one statement,
/// written once, compiled for each backend.
macro_rules! on_tx {
    ($tx:expr, |$conn:ident| $body:expr) => {
        match $tx {
            $crate::store::transaction::Tx::Sqlite(c) => {
                let $conn = &mut **c;
                $body
            }
            $crate::store::transaction::Tx::Postgres(c) => {
                let $conn = &mut **c;
                $body
            }
        }
    };
}
pub(super) use on_tx;

impl<'t> From<&'t mut SqliteConnection> for Tx<'t> {
    fn from(conn: &'t mut SqliteConnection) -> Self {
        Tx::Sqlite(conn)
    }
}

impl<'t> From<&'t mut PgConnection> for Tx<'t> {
    fn from(conn: &'t mut PgConnection) -> Self {
        Tx::Postgres(conn)
    }
}

/// What a transaction tells the other processes on a shared database when it commits.
#[derive(Debug, Clone, Copy)]
pub(super) enum Notice {
    /// Jobs or events were added: idle workers look for work.
    Work,
    /// Email was queued or requeued: the dispatcher looks at the outbox.
    Mail,
}

impl Tx<'_> {
    /// The same transaction, lent for a call that takes a `Tx` by value.
    pub(super) fn reborrow(&mut self) -> Tx<'_> {
        match self {
            Tx::Sqlite(c) => Tx::Sqlite(c),
            Tx::Postgres(c) => Tx::Postgres(c),
        }
    }

    /// `NOTIFY`s every listening process when the transaction commits (several of one
    /// kind in a transaction are delivered once). Nothing on SQLite, whose only writer is
    /// this process.
    pub(super) async fn notify(&mut self, notice: Notice) -> Result<(), StoreError> {
        if let Tx::Postgres(conn) = self {
            super::postgres::notify(conn, notice).await?;
        }
        Ok(())
    }

    /// A transaction-scoped advisory lock on (`scope`, `a`, `b`), serializing processes
    /// that touch the same thing (an event key, an idempotency key, an address). Nothing
    /// on SQLite.
    pub(super) async fn lock(&mut self, scope: &str, a: &str, b: &str) -> Result<(), StoreError> {
        if let Tx::Postgres(conn) = self {
            sqlx::query(
                "SELECT pg_advisory_xact_lock(hashtextextended($1 || chr(31) || $2 || chr(31) || $3, 0))",
            )
            .bind(scope)
            .bind(a)
            .bind(b)
            .execute(&mut **conn)
            .await?;
        }
        Ok(())
    }

    /// Locks a run's row until the transaction ends, so a parent parking for its children
    /// and a child finishing in another process see each other. Nothing on SQLite.
    pub(super) async fn lock_run(&mut self, run_id: &str) -> Result<(), StoreError> {
        if let Tx::Postgres(conn) = self {
            sqlx::query("SELECT 1 FROM runs WHERE id = $1 FOR UPDATE")
                .bind(run_id)
                .execute(&mut **conn)
                .await?;
        }
        Ok(())
    }
}
