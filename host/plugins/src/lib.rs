//! The sandboxed WebAssembly plugin runtime of Kontor.
//!
//! Plugins are WebAssembly components implementing the `step` or the `erp-connector`
//! world of the WIT contract `kontor:plugin@0.3.0` (`sdk/wit/plugin.wit`). This crate is
//! the only place that touches wasmtime:
//!
//! - [`PluginRuntime`]: one wasmtime `Engine` (pooling allocator, on-disk code cache,
//!   fuel, epoch interruption ticked by a dedicated thread) and one `Linker` with WASI
//!   granting nothing and the `log` import.
//! - [`Plugin`]: a loaded component, checked against the contract, pre-instantiated
//!   (`InstancePre`) and described (`describe()` is called once at load). Every
//!   [`Plugin::call`] gets a fresh `Store` with its own limits; the instance is thrown
//!   away afterwards, whatever happened in it.
//! - [`PluginRegistry`]: the plugins of a directory by name, reloaded when their file
//!   changes (calls in flight finish on the old code) or their configuration is replaced.
//! - Capabilities, each only as far as [`Grants`] allow (deny by default, checked against
//!   `describe()` at load): outbound HTTP behind an SSRF guard (`http`), secrets and the
//!   committed key-value state lent by the host through [`HostServices`], and the
//!   plugin's configuration. A refused use fails the call ([`CallError::Denied`]).
//! - Two worlds: `step` ([`Plugin::call`]) and `erp-connector`
//!   ([`Plugin::call_connector`], functions in [`CONNECTOR_FUNCTIONS`]).
//!
//! # Layout
//!
//! One concept a file, in the order a call meets them:
//!
//! - `settings`: [`RuntimeSettings`] for the process, [`PluginSettings`] per plugin — what
//!   the host crate fills from kontor.toml.
//! - `grants`: [`Grants`] and [`Origin`], what a plugin may use (deny by default).
//! - `contract`: [`CONTRACT_VERSION`], the two [`World`]s, and the check of a component's
//!   exports against them. `bindings` and [`connector_bindings`] are wasmtime's generated
//!   code for the two worlds of the WIT file.
//! - `runtime`: [`PluginRuntime`], the shared engine, linker, epoch ticker and plugin
//!   threads; loading a component starts here.
//! - `plugin`: [`Plugin`], a loaded component with the checks made once at load;
//!   `inspection`: [`Inspection`], what `kontor plugin inspect` shows of a file.
//! - `call`: [`Plugin::call`] and [`Plugin::call_connector`], and judging what a call
//!   returned; `limits`: the store with deadline, fuel and memory cap, and which limit
//!   stopped a guest; `connector`: the functions of the `erp-connector` world by name.
//! - `sandbox`: the per-call state of a store — WASI granting nothing, the capability
//!   imports (`config`, `secrets`, `kv`, `http`, `log`), captured stdout/stderr.
//! - `http`: outbound HTTP for plugins — the exchange and its redirects, kept-alive
//!   connections, and the SSRF address guard.
//! - `services`: [`HostServices`], the secrets and key-value state the host lends calls.
//! - `reports` and `errors`: what the runtime hands back — [`PluginInfo`],
//!   [`CallReport`], [`CallFailure`], [`KvWrite`]; [`LoadError`] and [`CallError`].
//! - `registry`: [`PluginRegistry`], the plugins of a directory by name, reloaded when
//!   their files change.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod bindings;
mod call;
mod connector;
pub mod connector_bindings;
mod contract;
mod errors;
mod grants;
mod http;
mod inspection;
mod instantiate;
mod limits;
mod plugin;
mod registry;
mod reports;
mod runtime;
mod sandbox;
mod services;
mod settings;

pub use call::Invocation;
pub use connector::{CONNECTOR_FUNCTIONS, ConnectorFunction};
pub use contract::{CONTRACT_VERSION, World};
pub use errors::{CallError, LoadError};
pub use grants::{Grants, Origin};
pub use http::HttpLimits;
pub use inspection::{GrantsView, Inspection};
pub use plugin::{Plugin, first_problem};
pub use registry::{MAX_NAME_LENGTH, PluginRegistry, RegistryError, check_name};
pub use reports::{CallFailure, CallReport, KvWrite, PluginInfo};
pub use runtime::PluginRuntime;
pub use sandbox::LogLine;
pub use services::{BoxFuture, HostServices};
pub use settings::{PluginSettings, RuntimeSettings};
