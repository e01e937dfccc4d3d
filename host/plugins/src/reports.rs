//! What the runtime tells its callers: what a plugin says about itself
//! ([`PluginInfo`]), what a successful call produced ([`CallReport`], with the
//! key-value writes to commit, [`KvWrite`]) and what a failed one left behind
//! ([`CallFailure`]). Plain data, so the engine can store and show them without
//! knowing wasmtime.

use std::time::Duration;

use serde_json::Value as Json;

use crate::{CallError, LogLine};

/// What a plugin says about itself (its `describe()`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PluginInfo {
    /// The name the plugin gives itself (Kontor calls it by its file name).
    pub name: String,
    /// The plugin's own version, shown by `kontor plugin inspect` and the plugins API.
    pub version: String,
    /// One line for people choosing a plugin.
    pub description: String,
    /// JSON Schema of its configuration; `None` accepts anything.
    pub config_schema: Option<Json>,
    /// JSON Schema of a step's input, checked before every call; `None` accepts anything.
    pub input_schema: Option<Json>,
    /// JSON Schema of a step's output, checked after every call; `None` accepts anything.
    pub output_schema: Option<Json>,
    /// Outbound HTTP origins it asks for; each must be granted or it does not load.
    pub hosts: Vec<String>,
    /// Names of the secrets it asks for; each must be granted.
    pub secrets: Vec<String>,
    /// Whether it asks for its key-value store.
    pub kv: bool,
}

/// What a successful call produced, with its measurements.
#[derive(Debug, Clone)]
pub struct CallReport {
    /// The output document (checked against the output schema for a step).
    pub output: Json,
    /// What the plugin logged, stdout and stderr included, secrets redacted.
    pub logs: Vec<LogLine>,
    /// Wall-clock time of the call, instantiation included.
    pub duration: Duration,
    /// Fuel units the call consumed.
    pub fuel_used: u64,
    /// Largest linear memory of the instance, in bytes.
    pub peak_memory: usize,
    /// Key-value writes to commit with the step's result.
    pub kv_writes: Vec<KvWrite>,
}

/// A failed call, with what the plugin logged before it failed.
#[derive(Debug, Clone)]
pub struct CallFailure {
    /// Why it failed; decides whether the step is retried.
    pub error: CallError,
    /// What the plugin logged before it failed, secrets redacted.
    pub logs: Vec<LogLine>,
    /// Wall-clock time until it failed.
    pub duration: Duration,
    /// For a retryable failure: the server's `Retry-After` (of a 429 or 503 answer the
    /// plugin received), at most an hour. A retry should not come sooner.
    pub retry_after: Option<Duration>,
}

/// A key-value write of a successful call: commit it with the step's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvWrite {
    /// The plugin whose key-value store it belongs to (each plugin has its own).
    pub plugin: String,
    /// The key, 1 to 256 bytes.
    pub key: String,
    /// `None` deletes the key.
    pub value: Option<Vec<u8>>,
}
