//! Leaders on PostgreSQL: a session advisory lock held on a connection of its own (a
//! pooled connection could be handed to someone else, or recycled, taking the lock with
//! it); when the process or the connection dies, the lock is released and another process
//! takes over.

use std::sync::Arc;

use sqlx::Connection;
use sqlx::postgres::PgConnection;

use super::PgStore;
use crate::store::StoreError;
use crate::store::leaders::Role;

/// A leader's connection, opened on first use and kept.
pub(super) type LeaderConnection = Arc<tokio::sync::Mutex<Option<PgConnection>>>;

/// Advisory lock keys of the leaders ("kontorcr", "kontorml" as 64-bit integers).
pub(super) fn lock_key(role: Role) -> i64 {
    match role {
        Role::Cron => 0x6b6f_6e74_6f72_6372,
        Role::Mail => 0x6b6f_6e74_6f72_6d6c,
    }
}

/// Asks for a leader's lock on this process's connection for that role (opened on
/// first use and kept, so followers do not reconnect every time they ask).
pub(in crate::store) async fn try_lead(
    db: &PgStore,
    role: Role,
) -> Result<Option<LeaderLease>, StoreError> {
    let conn = match role {
        Role::Cron => &db.cron_conn,
        Role::Mail => &db.mail_conn,
    };
    let mut slot = conn.lock().await;
    if slot.is_none() {
        *slot = Some(PgConnection::connect_with(&db.options).await?);
    }
    let session = slot.as_mut().expect("connected above");
    let locked = sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
        .bind(lock_key(role))
        .fetch_one(&mut *session)
        .await;
    match locked {
        Ok(true) => Ok(Some(LeaderLease {
            conn: Some(conn.clone()),
        })),
        Ok(false) => Ok(None),
        Err(e) => {
            *slot = None;
            Err(e.into())
        }
    }
}

/// A leadership of one process. On PostgreSQL it is a session advisory lock held on a
/// connection of its own (a pooled connection could be handed to someone else, or
/// recycled, taking the lock with it); when the process or the connection dies, the lock
/// is released and another process takes over.
#[derive(Debug)]
pub struct LeaderLease {
    conn: Option<LeaderConnection>,
}

impl LeaderLease {
    /// The embedded store's process always leads.
    pub fn embedded() -> LeaderLease {
        LeaderLease { conn: None }
    }

    /// Whether the lease still holds: a session advisory lock lasts as long as its
    /// connection, so the connection answering is the lock being held.
    pub async fn is_held(&self) -> bool {
        let Some(conn) = &self.conn else {
            return true;
        };
        let mut slot = conn.lock().await;
        let Some(conn) = slot.as_mut() else {
            return false;
        };
        if sqlx::query("SELECT 1").execute(&mut *conn).await.is_ok() {
            return true;
        }
        *slot = None;
        false
    }
}
