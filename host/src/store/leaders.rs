//! Leaders: what one process at a time does when several share a database — fire cron
//! (so each firing is decided once) and dispatch email (so throttles and daily caps,
//! kept in that process's memory, hold for the whole installation).

use std::time::{Duration, Instant};

pub use super::postgres::leaders::LeaderLease;
use super::{Backend, Store, StoreError};

/// A duty one process at a time performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Cron,
    Mail,
}

impl Store {
    /// Tries to become the leader for `role`. The embedded store's process always leads;
    /// on PostgreSQL the lease is an advisory lock held on its own connection, lost when
    /// that connection (or the process) dies.
    pub async fn try_lead(&self, role: Role) -> Result<Option<LeaderLease>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(Some(LeaderLease::embedded())),
            Backend::Postgres(db) => super::postgres::leaders::try_lead(db, role).await,
        }
    }
}

/// Whether this process leads a [`Role`], kept by a loop that asks before each pass: the
/// store is consulted at most once a second (to check a held lease, or to try to take a
/// free one).
pub struct Leadership {
    role: Role,
    lease: Option<LeaderLease>,
    asked: Option<Instant>,
}

impl Leadership {
    /// Not leading yet; the first [`Leadership::holds`] asks.
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
            .is_some_and(|at| at.elapsed() < Duration::from_secs(1))
        {
            return self.lease.is_some();
        }
        self.asked = Some(Instant::now());
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
