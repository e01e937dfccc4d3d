//! The knobs of the runtime: [`RuntimeSettings`] for the process as a whole,
//! [`PluginSettings`] for each plugin (`[plugins.NAME]` in kontor.toml). The host crate
//! fills them from its configuration; the defaults are what a plugin gets when nothing
//! is configured.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value as Json;

use crate::{Grants, HttpLimits};

/// Settings of the runtime as a whole.
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    /// Where compiled code is cached, so a restart does not recompile. `None`: no cache.
    pub cache_dir: Option<PathBuf>,
    /// The largest memory any plugin may get (the pooling allocator's slot size).
    pub max_memory: usize,
    /// How many plugin instances may exist at once (concurrent calls).
    pub max_instances: u32,
    /// Threads that run plugin code. Plugins never run on the caller's threads, so a
    /// runaway guest cannot slow down the HTTP API or the engine.
    pub threads: usize,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        RuntimeSettings {
            cache_dir: None,
            max_memory: 64 << 20,
            max_instances: 256,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// Limits and configuration of one plugin (`[plugins.NAME]` in kontor.toml).
#[derive(Debug, Clone, PartialEq)]
pub struct PluginSettings {
    /// Wall-clock time one call may take.
    pub deadline: Duration,
    /// CPU budget of one call in wasmtime fuel units; `None`: only the deadline.
    pub fuel: Option<u64>,
    /// Linear memory cap in bytes.
    pub memory: usize,
    /// Largest input document in bytes.
    pub max_input: usize,
    /// Largest output document in bytes.
    pub max_output: usize,
    /// The plugin's configuration, checked against its `config-schema` at load.
    pub config: Json,
    /// What the plugin may use; nothing by default.
    pub grants: Grants,
    /// Caps on its outbound HTTP.
    pub http: HttpLimits,
}

impl Default for PluginSettings {
    fn default() -> Self {
        PluginSettings {
            deadline: Duration::from_secs(2),
            fuel: None,
            memory: 64 << 20,
            max_input: 1 << 20,
            max_output: 4 << 20,
            config: Json::Object(Default::default()),
            grants: Grants::default(),
            http: HttpLimits::default(),
        }
    }
}
