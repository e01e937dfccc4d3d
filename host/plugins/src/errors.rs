//! Why a plugin could not be loaded ([`LoadError`]) or a call failed ([`CallError`]).
//! The messages are what operators and workflow authors read (the server log, the
//! run's step history, `kontor plugin inspect`), so each says what to do about it;
//! [`CallError::is_retryable`] decides whether a failed step is tried again.

use std::path::PathBuf;
use std::time::Duration;

use crate::contract::{CONTRACT_VERSION, HANDLER};

/// Why a component could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The component file could not be read from disk.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The component file.
        path: PathBuf,
        /// What the file system said.
        error: std::io::Error,
    },
    /// The file is not a component: a core module, something else, or a component
    /// wasmtime refuses to compile.
    #[error("{path} is not a WebAssembly component: {message}")]
    NotAComponent {
        /// The component file.
        path: PathBuf,
        /// What is wrong with it, and how to build a component instead.
        message: String,
    },
    /// The component exports neither the step handler nor the connector interface.
    #[error(
        "{path} does not implement Kontor's `step` world: it exports {exports}, but a step plugin exports `{HANDLER}@{CONTRACT_VERSION}` (build it with kontor-sdk and `export_step!`)"
    )]
    WrongWorld {
        /// The component file.
        path: PathBuf,
        /// What it exports instead, for the message.
        exports: String,
    },
    /// The component was built against a contract version this host does not run.
    #[error(
        "{path} was built against kontor:plugin@{found}, which this Kontor does not support (it runs kontor:plugin@{CONTRACT_VERSION}); rebuild the plugin with a kontor-sdk for {CONTRACT_VERSION}"
    )]
    IncompatibleContract {
        /// The component file.
        path: PathBuf,
        /// The contract version it was built against.
        found: String,
    },
    /// The component imports something the host does not link (another WASI, a
    /// capability that does not exist).
    #[error("{path} needs imports Kontor does not provide: {message}")]
    Imports {
        /// The component file.
        path: PathBuf,
        /// wasmtime's account of the first unsatisfied import.
        message: String,
    },
    /// The plugin's `describe()` trapped, failed, or returned a schema that is not JSON.
    #[error("plugin `{name}`: describe() failed: {message}")]
    Describe {
        /// The plugin's name in Kontor.
        name: String,
        /// What went wrong, as a [`CallError`](crate::CallError) message.
        message: String,
    },
    /// A schema the plugin declared is JSON, but not a JSON Schema.
    #[error("plugin `{name}`: its {which} schema is not a valid JSON Schema: {message}")]
    Schema {
        /// The plugin's name in Kontor.
        name: String,
        /// `config`, `input` or `output`.
        which: &'static str,
        /// What the schema compiler objected to.
        message: String,
    },
    /// The configured `config` does not fit the plugin's config schema.
    #[error("plugin `{name}`: configuration does not fit the plugin's schema: {message}")]
    Config {
        /// The plugin's name in Kontor.
        name: String,
        /// The first problem, with the JSON path where it is.
        message: String,
    },
    /// The plugin asks (in `describe()`) for capabilities its grants do not give it.
    #[error(
        "plugin `{name}` asks for capabilities it is not granted: {}; grant them in kontor.toml under [plugin.{name}.grants] ({})",
        .missing.join(", "),
        .suggestion
    )]
    Ungranted {
        /// The plugin's name in Kontor.
        name: String,
        /// The missing grants, as `grants` entries (`http: "https://erp:443"`).
        missing: Vec<String>,
        /// The complete `grants` table that would let it load.
        suggestion: String,
    },
}

/// Why a call failed. The step fails with its message; only [`CallError::Retryable`] and
/// [`CallError::Busy`] are retried ([`CallError::is_retryable`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    /// The plugin says the failure is passing (the ERP is down, a 503): try again later.
    #[error("{0}")]
    Retryable(String),
    /// The plugin says trying again will not help.
    #[error("{0}")]
    Fatal(String),
    /// The input does not fit the plugin's input schema, or the plugin rejected it.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The call ran past the plugin's wall-clock deadline and was interrupted.
    #[error("the plugin ran longer than its deadline of {}", human_duration(*.0))]
    Timeout(Duration),
    /// The call used up its CPU budget (the plugin's `fuel`).
    #[error("the plugin used up its fuel of {0} units")]
    OutOfFuel(u64),
    /// The guest asked for more linear memory than its cap (in bytes).
    #[error("the plugin exceeded its memory cap of {} MiB", .0 >> 20)]
    OutOfMemory(usize),
    /// The guest trapped (a panic, an unreachable, a bad access), with the last lines it
    /// wrote to stderr when there are any.
    #[error("the plugin crashed: {0}")]
    Trap(String),
    /// The input document is larger than the plugin's `max_input`.
    #[error("the input is {size} bytes; the plugin accepts at most {limit}")]
    InputTooLarge {
        /// The input's size in bytes.
        size: usize,
        /// The plugin's `max_input`.
        limit: usize,
    },
    /// The output document is larger than the plugin's `max_output`.
    #[error("the output is {size} bytes; the plugin may return at most {limit}")]
    OutputTooLarge {
        /// The output's size in bytes.
        size: usize,
        /// The plugin's `max_output`.
        limit: usize,
    },
    /// The output is not JSON, or does not fit the plugin's output schema.
    #[error("the output does not fit: {0}")]
    BadOutput(String),
    /// Every instance slot of the pooling allocator is taken; a retry will find one.
    #[error("no free plugin instance: {0}")]
    Busy(String),
    /// The plugin used a capability its grants do not give it; the call fails even if
    /// the plugin handled the refusal.
    #[error("capability refused: {0}")]
    Denied(String),
    /// The plugin was called the way the other world is called (`plugin:` on a
    /// connector, `connector:` on a step plugin).
    #[error("plugin `{plugin}` is a {world} plugin: {message}")]
    WrongKind {
        /// The plugin's name in Kontor.
        plugin: String,
        /// The world it does implement (`step` or `erp-connector`).
        world: &'static str,
        /// How to call it instead.
        message: String,
    },
}

impl CallError {
    /// Whether the engine should try the step again.
    pub fn is_retryable(&self) -> bool {
        matches!(self, CallError::Retryable(_) | CallError::Busy(_))
    }

    /// A short machine-readable kind: `retryable`, `fatal`, `invalid-input`, `timeout`,
    /// `out-of-fuel`, `out-of-memory`, `trap`, `input-too-large`, `output-too-large`,
    /// `bad-output`, `busy`, `capability-denied`, `wrong-kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::Retryable(_) => "retryable",
            CallError::Fatal(_) => "fatal",
            CallError::InvalidInput(_) => "invalid-input",
            CallError::Timeout(_) => "timeout",
            CallError::OutOfFuel(_) => "out-of-fuel",
            CallError::OutOfMemory(_) => "out-of-memory",
            CallError::Trap(_) => "trap",
            CallError::InputTooLarge { .. } => "input-too-large",
            CallError::OutputTooLarge { .. } => "output-too-large",
            CallError::BadOutput(_) => "bad-output",
            CallError::Busy(_) => "busy",
            CallError::Denied(_) => "capability-denied",
            CallError::WrongKind { .. } => "wrong-kind",
        }
    }
}

fn human_duration(d: Duration) -> String {
    if d.as_millis().is_multiple_of(1000) {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}
