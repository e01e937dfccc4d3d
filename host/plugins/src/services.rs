//! What a call can reach beyond its own instance: the host's secrets and committed
//! key-value state ([`HostServices`], lent by the host crate, which owns the store), and
//! the per-plugin context every call of a loaded plugin shares ([`CallContext`]).

use std::sync::Arc;

use serde_json::Value as Json;

use crate::{Grants, HttpLimits, http};

/// What the host lends capability calls: the encrypted secrets and the committed
/// key-value state, from Kontor's store.
pub trait HostServices: Send + Sync {
    /// The value of secret `name`, if it is set.
    fn secret<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<String>, String>>;
    /// The committed value of `key` in the key-value store of plugin `plugin`.
    fn kv_get<'a>(
        &'a self,
        plugin: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, String>>;
}

/// The future a [`HostServices`] method returns: boxed, so the trait stays object safe
/// and the host's store can answer asynchronously.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// What one call may use (shared by the calls of a loaded plugin).
pub(crate) struct CallContext {
    pub plugin: String,
    pub grants: Grants,
    pub http: HttpLimits,
    pub config: Json,
    pub config_text: String,
    pub services: Option<Arc<dyn HostServices>>,
    /// Kept-alive HTTP connections, shared by the plugin's calls.
    pub connections: http::ConnectionPool,
}
