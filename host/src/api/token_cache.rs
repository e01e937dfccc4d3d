//! Token checks without a store read on the hot path: the principal of each token hash
//! seen in the last second is kept in memory. A token revoked or a user deactivated
//! elsewhere — `kontor token revoke` in another process, another server on the same
//! PostgreSQL database — is refused within that second; a change made through this
//! process's API clears the cache at once. Expiry is checked on every request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::auth::Principal;

/// How long a token's principal is trusted without reading the store again.
const FRESH_FOR: Duration = Duration::from_secs(1);
/// Tokens kept at most; one more empties the cache (it refills within a second).
const CAPACITY: usize = 10_000;

/// A token's principal as last read from the store.
#[derive(Debug, Clone)]
pub struct Cached {
    pub principal: Principal,
    pub expires_at: Option<DateTime<Utc>>,
    /// When the store last recorded the token's use.
    pub last_used_at: Option<DateTime<Utc>>,
    read_at: Instant,
}

/// The principals of recently used tokens, by token hash.
#[derive(Debug, Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<String, Cached>>,
}

impl TokenCache {
    pub fn new() -> TokenCache {
        TokenCache::default()
    }

    /// The principal of `hash` if it was read within the last second and has not expired
    /// by `now`.
    pub fn get(&self, hash: &str, now: DateTime<Utc>) -> Option<Cached> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(hash)
            .filter(|c| c.read_at.elapsed() < FRESH_FOR)
            .filter(|c| c.expires_at.is_none_or(|at| at > now))
            .cloned()
    }

    /// Keeps the principal just read for `hash`.
    pub fn put(
        &self,
        hash: String,
        principal: Principal,
        expires_at: Option<DateTime<Utc>>,
        last_used_at: Option<DateTime<Utc>>,
    ) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CAPACITY && !entries.contains_key(&hash) {
            entries.clear();
        }
        entries.insert(
            hash,
            Cached {
                principal,
                expires_at,
                last_used_at,
                read_at: Instant::now(),
            },
        );
    }

    /// Notes that the store now has `at` as the token's last use.
    pub fn used(&self, hash: &str, at: DateTime<Utc>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cached) = entries.get_mut(hash) {
            cached.last_used_at = Some(at);
        }
    }

    /// Forgets every principal: users or tokens changed through this process.
    pub fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}
