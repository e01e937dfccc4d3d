//! `kontor-sdk`: write Kontor workflow steps in Rust and run them as sandboxed
//! WebAssembly plugins.
//!
//! A plugin is a `cdylib` crate built for `wasm32-wasip2` (`kontor plugin new NAME`
//! scaffolds one, `kontor plugin build NAME` builds it). It implements [`Step`] with plain
//! Rust types and exports it with [`export_step!`]; the SDK turns the JSON the host sends
//! into your types, and your result or [`Error`] back into the WIT contract
//! (`kontor:plugin@0.3.0`, world `step`, in `sdk/wit/`). An ERP connector implements
//! [`Connector`] and exports it with [`export_connector!`]. Plugins reach the outside
//! only through granted capabilities: [`http`], [`secrets`], [`kv`] and their [`config`].
//!
//! ```
//! use kontor_sdk::{Error, Info, Invocation, Step, export_step, json, log};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize, Default)]
//! #[serde(default)]
//! struct Config {
//!     bonus: i64,
//! }
//!
//! #[derive(Deserialize)]
//! struct Input {
//!     name: String,
//!     points: i64,
//! }
//!
//! #[derive(Serialize, Debug, PartialEq)]
//! struct Output {
//!     greeting: String,
//!     total: i64,
//! }
//!
//! struct Greeter;
//!
//! impl Step for Greeter {
//!     type Config = Config;
//!     type Input = Input;
//!     type Output = Output;
//!
//!     fn info() -> Info {
//!         Info::new("greeter", "1.0.0")
//!             .description("Greets a lead and adds a bonus to its points")
//!             .input_schema(json!({
//!                 "type": "object",
//!                 "required": ["name", "points"],
//!                 "properties": {"name": {"type": "string"}, "points": {"type": "integer"}}
//!             }))
//!     }
//!
//!     fn run(invocation: &Invocation, config: Config, input: Input) -> Result<Output, Error> {
//!         if input.points < 0 {
//!             return Err(Error::invalid_input("`points` must not be negative"));
//!         }
//!         log::info_with("greeting", &[("run", &invocation.run_id)]);
//!         Ok(Output {
//!             greeting: format!("Grüß Gott, {}!", input.name),
//!             total: input.points + config.bonus,
//!         })
//!     }
//! }
//!
//! export_step!(Greeter);
//!
//! // The same logic, tested natively with `cargo test`:
//! let output = kontor_sdk::testing::run::<Greeter>(
//!     json!({"bonus": 5}),
//!     json!({"name": "Jürgen", "points": 10}),
//! );
//! assert_eq!(output, Ok(json!({"greeting": "Grüß Gott, Jürgen!", "total": 15})));
//!
//! let refused = kontor_sdk::testing::run::<Greeter>(json!({}), json!({"name": "Jürgen"}));
//! assert!(matches!(refused, Err(Error::InvalidInput(m)) if m.contains("points")));
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use serde_json::{Value, json};

/// The version of the WIT contract this SDK implements.
pub const CONTRACT_VERSION: &str = "0.3.0";

/// Bindings generated from `sdk/wit/`. Plugin code does not need them; [`export_step!`]
/// wires a [`Step`] to them.
#[doc(hidden)]
#[allow(clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "step",
        path: "wit",
        pub_export_macro: true,
        default_bindings_module: "kontor_sdk::bindings",
    });
}

/// Bindings of the `erp-connector` world; [`export_connector!`] wires a [`Connector`]
/// to them. Its imports are the same as the step world's.
#[doc(hidden)]
#[allow(clippy::all)]
pub mod connector_bindings {
    wit_bindgen::generate!({
        world: "erp-connector",
        path: "wit",
        pub_export_macro: true,
        default_bindings_module: "kontor_sdk::connector_bindings",
        additional_derives: [serde::Serialize, serde::Deserialize, PartialEq, Eq],
        with: {
            "kontor:plugin/types@0.3.0": crate::bindings::kontor::plugin::types,
            "kontor:plugin/log@0.3.0": crate::bindings::kontor::plugin::log,
            "kontor:plugin/config@0.3.0": crate::bindings::kontor::plugin::config,
            "kontor:plugin/secrets@0.3.0": crate::bindings::kontor::plugin::secrets,
            "kontor:plugin/kv@0.3.0": crate::bindings::kontor::plugin::kv,
            "kontor:plugin/http@0.3.0": crate::bindings::kontor::plugin::http,
        },
    });
}

pub mod capabilities;
pub mod connector;

pub use capabilities::{config, http, kv, secrets};
pub use connector::{Connector, erp};

use bindings::exports::kontor::plugin::handler as wit;

/// The run step a call belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Invocation {
    /// The run; use it to make effects idempotent (e.g. as an ERP order reference).
    pub run_id: String,
    /// The workflow the run belongs to.
    pub workflow: String,
    /// The step's id within the workflow.
    pub step: String,
    /// 1 for the first attempt; retries count up.
    pub attempt: u32,
}

/// What a plugin says about itself: read by the host at load and shown by
/// `kontor plugin inspect`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Info {
    /// The plugin's own name (Kontor calls it by its file name).
    pub name: String,
    /// The plugin's version, shown by `kontor plugin inspect` and the plugins API.
    pub version: String,
    /// One line for people choosing a plugin ([`Info::description`]).
    pub description: String,
    /// Set with [`Info::config_schema`].
    pub config_schema: Option<Value>,
    /// Set with [`Info::input_schema`].
    pub input_schema: Option<Value>,
    /// Set with [`Info::output_schema`].
    pub output_schema: Option<Value>,
    /// Outbound HTTP origins the plugin will ask for.
    pub hosts: Vec<String>,
    /// Secret names the plugin will ask for.
    pub secrets: Vec<String>,
    /// Whether the plugin uses its key-value store ([`kv`]).
    pub kv: bool,
}

impl Info {
    /// A description with only a name and a version: no schemas, no grants asked for.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Info {
            name: name.into(),
            version: version.into(),
            ..Info::default()
        }
    }

    /// One line saying what the plugin does, shown next to its name.
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = text.into();
        self
    }

    /// JSON Schema the host checks the plugin's configuration against at load.
    pub fn config_schema(mut self, schema: Value) -> Self {
        self.config_schema = Some(schema);
        self
    }

    /// JSON Schema the host checks every input against before calling the plugin.
    pub fn input_schema(mut self, schema: Value) -> Self {
        self.input_schema = Some(schema);
        self
    }

    /// JSON Schema the host checks every output against.
    pub fn output_schema(mut self, schema: Value) -> Self {
        self.output_schema = Some(schema);
        self
    }

    /// An HTTP origin (`https://erp.example.com`) the plugin calls with [`http`]; it
    /// must be granted.
    pub fn host(mut self, origin: impl Into<String>) -> Self {
        self.hosts.push(origin.into());
        self
    }

    /// A secret the plugin reads with [`secrets::get`]; it must be granted.
    pub fn secret(mut self, name: impl Into<String>) -> Self {
        self.secrets.push(name.into());
        self
    }

    /// The plugin uses its key-value store ([`kv`]); it must be granted.
    pub fn kv(mut self) -> Self {
        self.kv = true;
        self
    }
}

/// Why a step failed. The host retries [`Error::Retryable`] with backoff and fails the
/// step at once for the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A passing problem: the ERP is down, a rate limit, a timeout.
    Retryable(String),
    /// The step cannot succeed.
    Fatal(String),
    /// The input does not fit; the message names the problem.
    InvalidInput(String),
}

impl Error {
    /// An [`Error::Retryable`]: the host tries the step again later.
    pub fn retryable(message: impl Into<String>) -> Self {
        Error::Retryable(message.into())
    }
    /// An [`Error::Fatal`]: the step fails at once.
    pub fn fatal(message: impl Into<String>) -> Self {
        Error::Fatal(message.into())
    }
    /// An [`Error::InvalidInput`]: the step fails at once; name the field in `message`.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Error::InvalidInput(message.into())
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Retryable(m) => write!(f, "retryable: {m}"),
            Error::Fatal(m) => write!(f, "fatal: {m}"),
            Error::InvalidInput(m) => write!(f, "invalid input: {m}"),
        }
    }
}

impl std::error::Error for Error {}

/// A workflow step implemented in a plugin.
pub trait Step {
    /// The plugin's configuration (from `kontor.toml`); JSON `null` reads as `{}`.
    type Config: DeserializeOwned;
    /// What the workflow step passes in.
    type Input: DeserializeOwned;
    /// What joins the run's context as the step's output.
    type Output: Serialize;

    /// What the plugin says about itself; the host asks once, at load.
    fn info() -> Info;

    /// Runs the step once. It may run again for the same step (a retry, a crash
    /// before the result was committed), so it must be idempotent.
    fn run(
        invocation: &Invocation,
        config: Self::Config,
        input: Self::Input,
    ) -> Result<Self::Output, Error>;
}

/// Structured logging into the step's log (shown with the run's steps and in the server
/// log). Natively (in `cargo test`) lines go to stderr.
pub mod log {
    use crate::bindings::kontor::plugin::log::Level;

    fn write(level: Level, message: &str, fields: &[(&str, &str)]) {
        #[cfg(target_arch = "wasm32")]
        {
            let fields: Vec<(String, String)> = fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            crate::bindings::kontor::plugin::log::log(level, message, &fields);
        }
        #[cfg(not(target_arch = "wasm32"))]
        eprintln!("[{level:?}] {message} {fields:?}");
    }

    /// Detail for whoever debugs the plugin.
    pub fn debug(message: &str) {
        write(Level::Debug, message, &[]);
    }
    /// What the step did, for the run's log.
    pub fn info(message: &str) {
        write(Level::Info, message, &[]);
    }
    /// Something worth a look that did not fail the step.
    pub fn warn(message: &str) {
        write(Level::Warn, message, &[]);
    }
    /// A failure the plugin handled or is about to return.
    pub fn error(message: &str) {
        write(Level::Error, message, &[]);
    }
    /// [`debug`] with structured `fields` (key, value), kept apart from the text.
    pub fn debug_with(message: &str, fields: &[(&str, &str)]) {
        write(Level::Debug, message, fields);
    }
    /// [`info`] with structured `fields` (key, value), kept apart from the text.
    pub fn info_with(message: &str, fields: &[(&str, &str)]) {
        write(Level::Info, message, fields);
    }
    /// [`warn`] with structured `fields` (key, value), kept apart from the text.
    pub fn warn_with(message: &str, fields: &[(&str, &str)]) {
        write(Level::Warn, message, fields);
    }
    /// [`error`] with structured `fields` (key, value), kept apart from the text.
    pub fn error_with(message: &str, fields: &[(&str, &str)]) {
        write(Level::Error, message, fields);
    }
}

/// Running a [`Step`] natively, through the same JSON path the host uses.
pub mod testing {
    use super::*;

    /// Runs `S` with `config` and `input` as the host would, with a test invocation.
    pub fn run<S: Step>(config: Value, input: Value) -> Result<Value, Error> {
        let invocation = Invocation {
            run_id: "test-run".into(),
            workflow: "test".into(),
            step: "test".into(),
            attempt: 1,
        };
        run_with::<S>(&invocation, config, input)
    }

    /// Sets the configuration [`crate::config`] returns natively (this thread).
    pub fn set_config(config: Value) {
        crate::capabilities::native::CONFIG.with(|c| *c.borrow_mut() = config);
    }

    /// Grants and sets a secret for native tests (this thread).
    pub fn set_secret(name: &str, value: &str) {
        crate::capabilities::native::SECRETS
            .with(|s| s.borrow_mut().insert(name.into(), value.into()));
    }

    /// What [`crate::kv`] holds natively (this thread).
    pub fn kv_snapshot() -> std::collections::BTreeMap<String, Vec<u8>> {
        crate::capabilities::native::KV.with(|kv| kv.borrow().clone())
    }

    /// Like [`run`], with an invocation of your choice.
    pub fn run_with<S: Step>(
        invocation: &Invocation,
        config: Value,
        input: Value,
    ) -> Result<Value, Error> {
        let output = __private::run_json::<S>(invocation, &config.to_string(), &input.to_string())?;
        serde_json::from_str(&output).map_err(|e| Error::fatal(e.to_string()))
    }
}

#[doc(hidden)]
pub mod __private {
    use super::*;
    pub use crate::bindings::exports::kontor::plugin::handler::Guest;
    pub use wit::{Invocation as WitInvocation, PluginError, PluginInfo};

    pub fn run_json<S: Step>(
        invocation: &Invocation,
        config: &str,
        input: &str,
    ) -> Result<String, Error> {
        let config: Value = serde_json::from_str(config)
            .map_err(|e| Error::fatal(format!("the plugin configuration is not JSON: {e}")))?;
        let config = if config.is_null() { json!({}) } else { config };
        let config: S::Config = serde_json::from_value(config)
            .map_err(|e| Error::fatal(format!("invalid plugin configuration: {e}")))?;
        let input: S::Input = serde_json::from_str(input).map_err(|e| {
            Error::invalid_input(
                e.to_string()
                    .split(" at line ")
                    .next()
                    .unwrap_or("")
                    .to_string(),
            )
        })?;
        let output = S::run(invocation, config, input)?;
        serde_json::to_string(&output)
            .map_err(|e| Error::fatal(format!("the output cannot be written as JSON: {e}")))
    }

    pub fn describe<S: Step>() -> PluginInfo {
        plugin_info(S::info())
    }

    /// What `describe()` returns for `info` (steps and connectors alike).
    pub fn plugin_info(info: Info) -> PluginInfo {
        let text = |v: Option<Value>| v.map(|v| v.to_string());
        PluginInfo {
            name: info.name,
            version: info.version,
            description: info.description,
            config_schema: text(info.config_schema),
            input_schema: text(info.input_schema),
            output_schema: text(info.output_schema),
            hosts: info.hosts,
            secrets: info.secrets,
            kv: info.kv,
        }
    }

    pub fn run<S: Step>(
        invocation: WitInvocation,
        config: String,
        input: String,
    ) -> Result<String, PluginError> {
        let invocation = Invocation {
            run_id: invocation.run_id,
            workflow: invocation.workflow,
            step: invocation.step,
            attempt: invocation.attempt,
        };
        run_json::<S>(&invocation, &config, &input).map_err(to_wit)
    }

    /// A step or connector error as the contract's `plugin-error`.
    pub fn to_wit(e: Error) -> PluginError {
        match e {
            Error::Retryable(m) => PluginError::Retryable(m),
            Error::Fatal(m) => PluginError::Fatal(m),
            Error::InvalidInput(m) => PluginError::InvalidInput(m),
        }
    }
}

/// Exports a [`Step`] implementation as the plugin's `kontor:plugin/handler`.
#[macro_export]
macro_rules! export_step {
    ($step:ty) => {
        const _: () = {
            struct KontorStepExport;
            impl $crate::__private::Guest for KontorStepExport {
                fn describe() -> $crate::__private::PluginInfo {
                    $crate::__private::describe::<$step>()
                }
                fn run(
                    invocation: $crate::__private::WitInvocation,
                    config: ::std::string::String,
                    input: ::std::string::String,
                ) -> ::std::result::Result<::std::string::String, $crate::__private::PluginError>
                {
                    $crate::__private::run::<$step>(invocation, config, input)
                }
            }
    $crate::__export_step_impl!(KontorStepExport with_types_in $crate::bindings);
        };
    };
}
