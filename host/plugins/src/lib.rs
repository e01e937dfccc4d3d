//! The sandboxed WebAssembly plugin runtime of Kontor.
//!
//! Plugins are WebAssembly components implementing the `step` or the `erp-connector`
//! world of the WIT contract `kontor:plugin@0.2.0` (`sdk/wit/plugin.wit`). This crate is
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

#![forbid(unsafe_code)]

mod connector;
mod grants;
mod http;
mod registry;
mod sandbox;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use wasmtime::component::{Component, Linker, types::ComponentItem};
use wasmtime::{Config, Engine, Store, Trap, UpdateDeadline};

pub use registry::{PluginRegistry, RegistryError};
pub use sandbox::LogLine;
use sandbox::State;

/// Host-side bindings of the contract: the `step` world, whose imports every plugin
/// shares.
mod bindings {
    wasmtime::component::bindgen!({
        world: "step",
        path: "../../sdk/wit",
        exports: { default: async },
        imports: {
            "kontor:plugin/http.send": async,
            "kontor:plugin/kv.get": async,
            "kontor:plugin/secrets.get": async,
        },
    });
}

/// Host-side bindings of the `erp-connector` world; its imports are the step world's.
pub mod connector_bindings {
    wasmtime::component::bindgen!({
        world: "erp-connector",
        path: "../../sdk/wit",
        exports: { default: async },
        with: {
            "kontor:plugin/types": crate::bindings::kontor::plugin::types,
            "kontor:plugin/log": crate::bindings::kontor::plugin::log,
            "kontor:plugin/config": crate::bindings::kontor::plugin::config,
            "kontor:plugin/secrets": crate::bindings::kontor::plugin::secrets,
            "kontor:plugin/kv": crate::bindings::kontor::plugin::kv,
            "kontor:plugin/http": crate::bindings::kontor::plugin::http,
        },
        additional_derives: [serde::Serialize, serde::Deserialize],
    });
}

pub use connector::{CONNECTOR_FUNCTIONS, ConnectorFunction};
pub use grants::{Grants, Origin};
pub use http::HttpLimits;

/// The contract version this host implements.
pub const CONTRACT_VERSION: &str = "0.2.0";
/// The interface a step plugin exports, without its version.
const HANDLER: &str = "kontor:plugin/handler";
/// The interface an ERP connector exports, without its version.
const CONNECTOR: &str = "kontor:plugin/connector";
/// Contract versions this host runs: (major, highest minor). While the major is 0, a
/// minor is a major: only components built against exactly 0.2 are accepted.
const SUPPORTED: &[(u64, u64)] = &[(0, 2)];
/// How often the epoch advances: the granularity of deadlines and of yields to the
/// async runtime.
const EPOCH_TICK: Duration = Duration::from_millis(5);

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

pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// A key-value write of a successful call: commit it with the step's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvWrite {
    pub plugin: String,
    pub key: String,
    /// `None` deletes the key.
    pub value: Option<Vec<u8>>,
}

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

/// Why a component could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path} is not a WebAssembly component: {message}")]
    NotAComponent { path: PathBuf, message: String },
    #[error(
        "{path} does not implement Kontor's `step` world: it exports {exports}, but a step plugin exports `{HANDLER}@{CONTRACT_VERSION}` (build it with kontor-sdk and `export_step!`)"
    )]
    WrongWorld { path: PathBuf, exports: String },
    #[error(
        "{path} was built against kontor:plugin@{found}, which this Kontor does not support (it runs kontor:plugin@{CONTRACT_VERSION}); rebuild the plugin with a kontor-sdk for {CONTRACT_VERSION}"
    )]
    IncompatibleContract { path: PathBuf, found: String },
    #[error("{path} needs imports Kontor does not provide: {message}")]
    Imports { path: PathBuf, message: String },
    #[error("plugin `{name}`: describe() failed: {message}")]
    Describe { name: String, message: String },
    #[error("plugin `{name}`: its {which} schema is not a valid JSON Schema: {message}")]
    Schema {
        name: String,
        which: &'static str,
        message: String,
    },
    #[error("plugin `{name}`: configuration does not fit the plugin's schema: {message}")]
    Config { name: String, message: String },
    #[error(
        "plugin `{name}` asks for capabilities it is not granted: {}; grant them in kontor.toml under [plugin.{name}.grants] ({})",
        .missing.join(", "),
        .suggestion
    )]
    Ungranted {
        name: String,
        missing: Vec<String>,
        /// The complete `grants` table that would let it load.
        suggestion: String,
    },
}

/// Why a call failed. The step fails with its message; only [`CallError::Retryable`] is
/// retried.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    #[error("{0}")]
    Retryable(String),
    #[error("{0}")]
    Fatal(String),
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("the plugin ran longer than its deadline of {}", human_duration(*.0))]
    Timeout(Duration),
    #[error("the plugin used up its fuel of {0} units")]
    OutOfFuel(u64),
    #[error("the plugin exceeded its memory cap of {} MiB", .0 >> 20)]
    OutOfMemory(usize),
    #[error("the plugin crashed: {0}")]
    Trap(String),
    #[error("the input is {size} bytes; the plugin accepts at most {limit}")]
    InputTooLarge { size: usize, limit: usize },
    #[error("the output is {size} bytes; the plugin may return at most {limit}")]
    OutputTooLarge { size: usize, limit: usize },
    #[error("the output does not fit: {0}")]
    BadOutput(String),
    #[error("no free plugin instance: {0}")]
    Busy(String),
    #[error("capability refused: {0}")]
    Denied(String),
    #[error("plugin `{plugin}` is a {world} plugin: {message}")]
    WrongKind {
        plugin: String,
        world: &'static str,
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

/// The run step a call belongs to.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    pub run_id: String,
    pub workflow: String,
    pub step: String,
    pub attempt: u32,
}

/// What a plugin says about itself (its `describe()`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    pub config_schema: Option<Json>,
    pub input_schema: Option<Json>,
    pub output_schema: Option<Json>,
    pub hosts: Vec<String>,
    pub secrets: Vec<String>,
    pub kv: bool,
}

/// What a successful call produced, with its measurements.
#[derive(Debug, Clone)]
pub struct CallReport {
    pub output: Json,
    pub logs: Vec<LogLine>,
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
    pub error: CallError,
    pub logs: Vec<LogLine>,
    pub duration: Duration,
    /// For a retryable failure: the server's `Retry-After` (of a 429 or 503 answer the
    /// plugin received), at most an hour. A retry should not come sooner.
    pub retry_after: Option<Duration>,
}

/// The shape of a component file: what `kontor plugin inspect` prints.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Inspection {
    /// `step` or `erp-connector` when the component implements that world of a
    /// supported contract.
    pub world: Option<String>,
    /// The contract version the component was built against, if it exports the handler.
    pub contract: Option<String>,
    pub exports: Vec<String>,
    pub imports: Vec<String>,
    /// The component's own description, when it is a loadable step plugin.
    pub info: Option<PluginInfo>,
    /// Why it cannot be loaded, if it cannot.
    pub problem: Option<String>,
    pub size: u64,
    /// What the configuration grants it.
    pub granted: Option<GrantsView>,
    /// Requested capabilities that are not granted, as `grants` entries.
    pub missing: Vec<String>,
}

/// Grants as `kontor plugin inspect` shows them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GrantsView {
    pub http: Vec<String>,
    pub private_networks: Vec<String>,
    pub secrets: Vec<String>,
    pub kv: bool,
}

impl From<&Grants> for GrantsView {
    fn from(g: &Grants) -> Self {
        GrantsView {
            http: g.http.iter().map(ToString::to_string).collect(),
            private_networks: g.private_networks.iter().map(ToString::to_string).collect(),
            secrets: g.secrets.clone(),
            kv: g.kv,
        }
    }
}

/// Which world a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum World {
    Step,
    ErpConnector,
}

impl World {
    pub fn name(self) -> &'static str {
        match self {
            World::Step => "step",
            World::ErpConnector => "erp-connector",
        }
    }
}

/// A loaded component's pre-instantiated exports.
enum Exports {
    Step(bindings::StepPre<State>),
    Connector(connector_bindings::ErpConnectorPre<State>),
}

/// The wasmtime engine, linker and epoch ticker shared by all plugins.
pub struct PluginRuntime {
    engine: Engine,
    linker: Linker<State>,
    max_memory: usize,
    ticker: Arc<AtomicBool>,
    /// The threads plugin calls run on.
    executor: Option<tokio::runtime::Runtime>,
    /// Secrets and key-value state for capability calls; none in tools without a store.
    services: std::sync::OnceLock<Arc<dyn HostServices>>,
}

impl Drop for PluginRuntime {
    fn drop(&mut self) {
        self.ticker.store(true, Ordering::Relaxed);
        if let Some(executor) = self.executor.take() {
            executor.shutdown_background();
        }
    }
}

impl PluginRuntime {
    pub fn new(settings: &RuntimeSettings) -> Result<Arc<PluginRuntime>, String> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.consume_fuel(true);
        let memory = settings.max_memory.max(1 << 20) as u64;
        // Linear memories live in fixed pool slots of the cap's size: no guest can ask
        // for more, and instantiation never maps fresh memory.
        config.memory_reservation(memory);
        config.memory_reservation_for_growth(0);
        let mut pool = wasmtime::PoolingAllocationConfig::default();
        let instances = settings.max_instances.max(1);
        pool.total_component_instances(instances)
            .total_core_instances(instances * 4)
            .total_memories(instances * 2)
            .total_tables(instances * 4)
            .total_stacks(instances)
            .max_memory_size(memory as usize)
            // Reset a slot by rewriting the pages a call touched instead of unmapping
            // them: a small step then costs no page faults on the next call.
            .linear_memory_keep_resident(2 << 20)
            .table_keep_resident(256 << 10)
            .async_stack_keep_resident(256 << 10)
            .pagemap_scan(wasmtime::Enabled::Auto);
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        if let Some(dir) = &settings.cache_dir {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create the plugin cache {}: {e}", dir.display()))?;
            let dir = std::path::absolute(dir)
                .map_err(|e| format!("the plugin cache {}: {e}", dir.display()))?;
            let mut cache = wasmtime::CacheConfig::new();
            cache.with_directory(&dir);
            let cache = wasmtime::Cache::new(cache)
                .map_err(|e| format!("cannot use the plugin cache {}: {e}", dir.display()))?;
            config.cache(Some(cache));
        }
        let engine =
            Engine::new(&config).map_err(|e| format!("cannot start the plugin runtime: {e}"))?;
        let mut linker = Linker::<State>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| format!("cannot link WASI: {e}"))?;
        bindings::Step::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| format!("cannot link the host imports: {e}"))?;

        let ticker = Arc::new(AtomicBool::new(false));
        let stop = ticker.clone();
        let ticking = engine.weak();
        std::thread::Builder::new()
            .name("kontor-plugin-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match ticking.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => return,
                    }
                }
            })
            .map_err(|e| format!("cannot start the epoch thread: {e}"))?;
        let executor = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(settings.threads.max(1))
            .thread_name("kontor-plugin")
            .enable_time()
            .enable_io()
            .build()
            .map_err(|e| format!("cannot start the plugin threads: {e}"))?;
        Ok(Arc::new(PluginRuntime {
            engine,
            linker,
            max_memory: memory as usize,
            ticker,
            executor: Some(executor),
            services: std::sync::OnceLock::new(),
        }))
    }

    /// Lends capability calls the host's secrets and key-value state (once).
    pub fn set_services(&self, services: Arc<dyn HostServices>) {
        let _ = self.services.set(services);
    }

    /// Compiles (or takes from the cache) and checks a component, without describing it.
    fn component(&self, path: &Path, bytes: &[u8]) -> Result<Component, LoadError> {
        if !is_component_binary(bytes) {
            return Err(LoadError::NotAComponent {
                path: path.into(),
                message: if bytes.starts_with(b"\0asm") {
                    "it is a core module; build it for wasm32-wasip2 so it becomes a component"
                        .into()
                } else {
                    "it does not start with the WebAssembly header".into()
                },
            });
        }
        Component::from_binary(&self.engine, bytes).map_err(|e| LoadError::NotAComponent {
            path: path.into(),
            message: format!("{e:#}"),
        })
    }

    /// Loads the component at `path` as plugin `name`: checks the contract, links it,
    /// calls `describe()`, checks that everything it asks for is granted and that
    /// `settings.config` fits the plugin's schema.
    pub async fn load(
        self: &Arc<Self>,
        name: &str,
        path: &Path,
        settings: PluginSettings,
    ) -> Result<Plugin, LoadError> {
        let plugin = self.load_described(name, path, settings).await?;
        plugin.check_grants()?;
        plugin.check_config()?;
        Ok(plugin)
    }

    /// Loads and describes a component without judging its grants and configuration.
    async fn load_described(
        self: &Arc<Self>,
        name: &str,
        path: &Path,
        settings: PluginSettings,
    ) -> Result<Plugin, LoadError> {
        let bytes = std::fs::read(path).map_err(|error| LoadError::Read {
            path: path.into(),
            error,
        })?;
        let component = self.component(path, &bytes)?;
        let (exports, _) = self.shape(&component);
        let world = check_contract(path, &exports)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Imports {
                path: path.into(),
                message: format!("{e:#}"),
            })?;
        let wrong_world = |e: wasmtime::Error| LoadError::WrongWorld {
            path: path.into(),
            exports: format!("{} ({e:#})", exports.join(", ")),
        };
        let exports = match world {
            World::Step => Exports::Step(bindings::StepPre::new(pre).map_err(wrong_world)?),
            World::ErpConnector => Exports::Connector(
                connector_bindings::ErpConnectorPre::new(pre).map_err(wrong_world)?,
            ),
        };
        let settings = PluginSettings {
            memory: settings.memory.min(self.max_memory),
            ..settings
        };
        let config = if settings.config.is_null() {
            Json::Object(Default::default())
        } else {
            settings.config.clone()
        };
        let context = Arc::new(CallContext {
            plugin: name.to_string(),
            grants: settings.grants.clone(),
            http: settings.http.clone(),
            config_text: config.to_string(),
            config,
            services: self.services.get().cloned(),
            connections: http::ConnectionPool::default(),
        });
        let mut plugin = Plugin {
            name: name.to_string(),
            path: path.to_path_buf(),
            runtime: self.clone(),
            exports,
            world,
            settings,
            context,
            info: PluginInfo {
                name: name.to_string(),
                version: String::new(),
                description: String::new(),
                config_schema: None,
                input_schema: None,
                output_schema: None,
                hosts: Vec::new(),
                secrets: Vec::new(),
                kv: false,
            },
            config_schema: None,
            input_schema: None,
            output_schema: None,
            size: bytes.len() as u64,
        };
        plugin.info = plugin.describe().await?;
        let schema = |which: &'static str, schema: &Option<Json>| match schema {
            None => Ok(None),
            Some(s) => jsonschema::validator_for(s)
                .map(Some)
                .map_err(|e| LoadError::Schema {
                    name: name.to_string(),
                    which,
                    message: e.to_string(),
                }),
        };
        plugin.config_schema = schema("config", &plugin.info.config_schema)?;
        plugin.input_schema = schema("input", &plugin.info.input_schema)?;
        plugin.output_schema = schema("output", &plugin.info.output_schema)?;
        Ok(plugin)
    }

    fn shape(&self, component: &Component) -> (Vec<String>, Vec<String>) {
        let ty = component.component_type();
        let describe = |item: &ComponentItem| match item {
            ComponentItem::ComponentFunc(_) => "func",
            ComponentItem::CoreFunc(_) => "core func",
            ComponentItem::Module(_) => "module",
            ComponentItem::Component(_) => "component",
            ComponentItem::ComponentInstance(_) => "instance",
            ComponentItem::Type(_) => "type",
            ComponentItem::Resource(_) => "resource",
        };
        let exports = ty
            .exports(&self.engine)
            .map(|(name, item)| {
                if describe(&item.ty) == "instance" {
                    name.to_string()
                } else {
                    format!("{name} ({})", describe(&item.ty))
                }
            })
            .collect();
        let imports = ty
            .imports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        (exports, imports)
    }

    /// Describes the component at `path` without requiring that it loads; `settings`
    /// are the plugin's configured ones, so grants and configuration are judged too.
    pub async fn inspect(
        self: &Arc<Self>,
        path: &Path,
        settings: PluginSettings,
    ) -> Result<Inspection, LoadError> {
        let bytes = std::fs::read(path).map_err(|error| LoadError::Read {
            path: path.into(),
            error,
        })?;
        let component = self.component(path, &bytes)?;
        let (exports, imports) = self.shape(&component);
        let contract = exports.iter().find_map(|e| {
            [HANDLER, CONNECTOR]
                .iter()
                .find_map(|i| e.strip_prefix(&format!("{i}@")).map(str::to_string))
        });
        let mut inspection = Inspection {
            world: None,
            contract,
            exports,
            imports,
            info: None,
            problem: None,
            size: bytes.len() as u64,
            granted: Some(GrantsView::from(&settings.grants)),
            missing: Vec::new(),
        };
        match self.load_described("inspect", path, settings).await {
            Ok(plugin) => {
                inspection.world = Some(plugin.world.name().into());
                inspection.info = Some(plugin.info.clone());
                if let Err(e) = plugin.check_grants() {
                    if let LoadError::Ungranted { missing, .. } = &e {
                        inspection.missing = missing.clone();
                    }
                    inspection.problem = Some(e.to_string());
                } else if let Err(e) = plugin.check_config() {
                    inspection.problem = Some(e.to_string());
                }
            }
            Err(e) => inspection.problem = Some(e.to_string()),
        }
        Ok(inspection)
    }
}

/// True when `bytes` start with the header of a component (not a core module).
fn is_component_binary(bytes: &[u8]) -> bool {
    // Magic, then version 0x0d and layer 0x01 for components (core modules: 1, 0).
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[6..8] == [0x01, 0x00]
}

/// Checks that `exports` contain the handler or the connector of a supported contract
/// version; returns the world.
fn check_contract(path: &Path, exports: &[String]) -> Result<World, LoadError> {
    let found = exports.iter().find_map(|e| {
        [(HANDLER, World::Step), (CONNECTOR, World::ErpConnector)]
            .iter()
            .find_map(|(i, w)| e.strip_prefix(&format!("{i}@")).map(|v| (v, *w)))
    });
    let Some((version, world)) = found else {
        return Err(LoadError::WrongWorld {
            path: path.into(),
            exports: if exports.is_empty() {
                "nothing".into()
            } else {
                exports.join(", ")
            },
        });
    };
    let mut parts = version.split('.').map(|p| p.parse::<u64>().ok());
    let (major, minor) = (parts.next().flatten(), parts.next().flatten());
    let supported = SUPPORTED.iter().any(|(ma, mi)| {
        Some(*ma) == major && minor.is_some_and(|m| m <= *mi && (*ma > 0 || m == *mi))
    });
    if !supported {
        return Err(LoadError::IncompatibleContract {
            path: path.into(),
            found: version.to_string(),
        });
    }
    Ok(world)
}

/// The first problem `value` has against `schema`, with the JSON path where it is.
pub fn first_problem(schema: &jsonschema::Validator, value: &Json) -> Option<String> {
    schema.iter_errors(value).next().map(|e| {
        let at = e.instance_path().to_string();
        if at.is_empty() {
            e.to_string()
        } else {
            format!("{at}: {e}")
        }
    })
}

/// A loaded plugin, ready to be called.
pub struct Plugin {
    name: String,
    path: PathBuf,
    runtime: Arc<PluginRuntime>,
    exports: Exports,
    world: World,
    settings: PluginSettings,
    context: Arc<CallContext>,
    info: PluginInfo,
    config_schema: Option<jsonschema::Validator>,
    input_schema: Option<jsonschema::Validator>,
    output_schema: Option<jsonschema::Validator>,
    size: u64,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("world", &self.world)
            .field("version", &self.info.version)
            .finish()
    }
}

/// What a call returned before the host judged it: the output text or the plugin's
/// error, or a trap.
type Raw = wasmtime::Result<Result<String, bindings::kontor::plugin::types::PluginError>>;

impl Plugin {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    pub fn world(&self) -> World {
        self.world
    }

    pub fn settings(&self) -> &PluginSettings {
        &self.settings
    }

    /// Size of the component file in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Fails when the plugin asks for a capability its grants do not give it.
    fn check_grants(&self) -> Result<(), LoadError> {
        let grants = &self.settings.grants;
        let missing = grants.missing(&self.info.hosts, &self.info.secrets, self.info.kv);
        if missing.is_empty() {
            return Ok(());
        }
        let quote = |items: Vec<String>| {
            items
                .iter()
                .map(|i| format!("\"{i}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut http: Vec<String> = grants.http.iter().map(ToString::to_string).collect();
        for host in &self.info.hosts {
            if let Ok(origin) = Origin::parse(host)
                && !http.contains(&origin.to_string())
            {
                http.push(origin.to_string());
            }
        }
        let mut secrets = grants.secrets.clone();
        for secret in &self.info.secrets {
            if !secrets.contains(secret) {
                secrets.push(secret.clone());
            }
        }
        let mut table = Vec::new();
        if !http.is_empty() {
            table.push(format!("http = [{}]", quote(http)));
        }
        if !secrets.is_empty() {
            table.push(format!("secrets = [{}]", quote(secrets)));
        }
        if self.info.kv || grants.kv {
            table.push("kv = true".into());
        }
        Err(LoadError::Ungranted {
            name: self.name.clone(),
            missing,
            suggestion: table.join(", "),
        })
    }

    fn check_config(&self) -> Result<(), LoadError> {
        if let Some(schema) = &self.config_schema
            && let Some(problem) = first_problem(schema, &self.context.config)
        {
            return Err(LoadError::Config {
                name: self.name.clone(),
                message: problem,
            });
        }
        Ok(())
    }

    /// A store with this plugin's limits, for one call.
    fn store(&self) -> Store<State> {
        let deadline = Instant::now() + self.settings.deadline;
        let mut store = Store::new(
            &self.runtime.engine,
            State::new(self.settings.memory, self.context.clone(), deadline),
        );
        store.limiter(|state| state);
        store
            .set_fuel(self.settings.fuel.unwrap_or(u64::MAX))
            .expect("fuel is enabled");
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Err(Trap::Interrupt.into())
            } else {
                // Let other calls on the plugin threads run, then continue.
                Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(tokio::task::yield_now()),
                ))
            }
        });
        store
    }

    /// Classifies an error out of wasmtime.
    fn classify(&self, error: wasmtime::Error, state: &State) -> CallError {
        if state.memory_exceeded {
            return CallError::OutOfMemory(self.settings.memory);
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => CallError::Timeout(self.settings.deadline),
            Some(Trap::OutOfFuel) => CallError::OutOfFuel(self.settings.fuel.unwrap_or(u64::MAX)),
            Some(trap) => {
                let tail = state.stderr_tail();
                if tail.is_empty() {
                    CallError::Trap(trap.to_string())
                } else {
                    CallError::Trap(format!("{trap}; it wrote: {tail}"))
                }
            }
            None => {
                let message = format!("{error:#}");
                if message.contains("maximum concurrent") || message.contains("pooling") {
                    CallError::Busy(message)
                } else {
                    CallError::Trap(message)
                }
            }
        }
    }

    async fn describe(&self) -> Result<PluginInfo, LoadError> {
        let mut store = self.store();
        let described = async {
            match &self.exports {
                Exports::Step(pre) => {
                    let instance = pre.instantiate_async(&mut store).await?;
                    instance
                        .kontor_plugin_handler()
                        .call_describe(&mut store)
                        .await
                }
                Exports::Connector(pre) => {
                    let instance = pre.instantiate_async(&mut store).await?;
                    instance
                        .kontor_plugin_connector()
                        .call_describe(&mut store)
                        .await
                }
            }
        }
        .await;
        let info = described.map_err(|e| {
            let error = self.classify(e, store.data());
            LoadError::Describe {
                name: self.name.clone(),
                message: error.to_string(),
            }
        })?;
        let schema = |which: &str, text: Option<String>| -> Result<Option<Json>, LoadError> {
            text.map(|t| serde_json::from_str(&t))
                .transpose()
                .map_err(|e| LoadError::Describe {
                    name: self.name.clone(),
                    message: format!("its {which} schema is not JSON: {e}"),
                })
        };
        Ok(PluginInfo {
            config_schema: schema("config", info.config_schema)?,
            input_schema: schema("input", info.input_schema)?,
            output_schema: schema("output", info.output_schema)?,
            name: info.name,
            version: info.version,
            description: info.description,
            hosts: info.hosts,
            secrets: info.secrets,
            kv: info.kv,
        })
    }

    /// Runs the plugin's step once, in a fresh instance with this plugin's limits, on
    /// the runtime's plugin threads.
    pub async fn call(
        self: &Arc<Self>,
        invocation: &Invocation,
        input: &Json,
    ) -> Result<CallReport, CallFailure> {
        self.on_plugin_threads(invocation, None, input).await
    }

    /// Calls connector function `function` (its WIT name, e.g. `customer-by-email`)
    /// with the arguments in `args`, on the runtime's plugin threads.
    pub async fn call_connector(
        self: &Arc<Self>,
        invocation: &Invocation,
        function: &str,
        args: &Json,
    ) -> Result<CallReport, CallFailure> {
        self.on_plugin_threads(invocation, Some(function.to_string()), args)
            .await
    }

    async fn on_plugin_threads(
        self: &Arc<Self>,
        invocation: &Invocation,
        function: Option<String>,
        input: &Json,
    ) -> Result<CallReport, CallFailure> {
        let Some(executor) = self.runtime.executor.as_ref() else {
            return match function {
                None => Box::pin(self.call_in_place(invocation, input)).await,
                Some(f) => Box::pin(self.call_connector_in_place(&f, input)).await,
            };
        };
        let plugin = self.clone();
        let invocation = invocation.clone();
        let input = input.clone();
        let started = Instant::now();
        executor
            .spawn(async move {
                match function {
                    None => plugin.call_in_place(&invocation, &input).await,
                    Some(f) => plugin.call_connector_in_place(&f, &input).await,
                }
            })
            .await
            .unwrap_or_else(|e| {
                Err(CallFailure {
                    error: CallError::Trap(format!("the call was abandoned: {e}")),
                    logs: Vec::new(),
                    duration: started.elapsed(),
                    retry_after: None,
                })
            })
    }

    /// Like [`Plugin::call`], but on the calling task: the sandbox's own cost, without the
    /// hand-off to the plugin threads (used by `kontor bench plugin`).
    pub async fn call_in_place(
        &self,
        invocation: &Invocation,
        input: &Json,
    ) -> Result<CallReport, CallFailure> {
        let started = Instant::now();
        let fail = |error: CallError| CallFailure {
            error,
            logs: Vec::new(),
            duration: started.elapsed(),
            retry_after: None,
        };
        let Exports::Step(pre) = &self.exports else {
            return Err(fail(CallError::WrongKind {
                plugin: self.name.clone(),
                world: self.world.name(),
                message: "call one of its functions with `connector:` and `call:`, not `plugin:`"
                    .into(),
            }));
        };
        let input_text = input.to_string();
        self.check_input_size(input_text.len()).map_err(fail)?;
        if let Some(problem) = self
            .input_schema
            .as_ref()
            .and_then(|s| first_problem(s, input))
        {
            return Err(fail(CallError::InvalidInput(problem)));
        }
        let mut store = self.store();
        let wit_invocation = bindings::kontor::plugin::types::Invocation {
            run_id: invocation.run_id.clone(),
            workflow: invocation.workflow.clone(),
            step: invocation.step.clone(),
            attempt: invocation.attempt,
        };
        let raw = async {
            let instance = pre.instantiate_async(&mut store).await?;
            instance
                .kontor_plugin_handler()
                .call_run(
                    &mut store,
                    &wit_invocation,
                    &self.context.config_text,
                    &input_text,
                )
                .await
        }
        .await;
        self.finish(store, raw, started, true)
    }

    /// Like [`Plugin::call_connector`], on the calling task.
    pub async fn call_connector_in_place(
        &self,
        function: &str,
        args: &Json,
    ) -> Result<CallReport, CallFailure> {
        let started = Instant::now();
        let fail = |error: CallError| CallFailure {
            error,
            logs: Vec::new(),
            duration: started.elapsed(),
            retry_after: None,
        };
        let Exports::Connector(pre) = &self.exports else {
            return Err(fail(CallError::WrongKind {
                plugin: self.name.clone(),
                world: self.world.name(),
                message: format!(
                    "it has no connector functions; call it with `plugin: {}`",
                    self.name
                ),
            }));
        };
        self.check_input_size(args.to_string().len())
            .map_err(fail)?;
        let call = connector::ConnectorCall::parse(function, args)
            .map_err(|m| fail(CallError::InvalidInput(m)))?;
        let mut store = self.store();
        let raw = async {
            let instance = pre.instantiate_async(&mut store).await?;
            call.invoke(instance.kontor_plugin_connector(), &mut store)
                .await
        }
        .await;
        self.finish(store, raw, started, false)
    }

    /// Refuses an input document larger than the plugin's `max_input`.
    fn check_input_size(&self, size: usize) -> Result<(), CallError> {
        if size > self.settings.max_input {
            return Err(CallError::InputTooLarge {
                size,
                limit: self.settings.max_input,
            });
        }
        Ok(())
    }

    /// Judges what a call returned: traps, refusals, the plugin's error, output size,
    /// JSON and schema; collects its log (secrets redacted) and key-value writes.
    fn finish(
        &self,
        mut store: Store<State>,
        raw: Raw,
        started: Instant,
        check_schema: bool,
    ) -> Result<CallReport, CallFailure> {
        let fuel_used = self.settings.fuel.unwrap_or(u64::MAX) - store.get_fuel().unwrap_or(0);
        let raw = raw.map_err(|e| self.classify(e, store.data()));
        let state = store.data_mut();
        let peak_memory = state.peak_memory;
        let logs = state.take_logs();
        for line in &logs {
            tracing::info!(plugin = %self.name, level = %line.level, fields = ?line.fields, "{}", line.message);
        }
        let denials = std::mem::take(&mut state.denials);
        let retry_after = state.retry_after;
        let redact = |m: String| state.redact(&m);
        let fail = |error: CallError, logs: Vec<LogLine>| CallFailure {
            retry_after: retry_after.filter(|_| error.is_retryable()),
            error,
            logs,
            duration: started.elapsed(),
        };
        if !denials.is_empty() {
            return Err(fail(CallError::Denied(redact(denials.join("; "))), logs));
        }
        use bindings::kontor::plugin::types::PluginError;
        let text = match raw {
            Err(CallError::Trap(m)) => return Err(fail(CallError::Trap(redact(m)), logs)),
            Err(error) => return Err(fail(error, logs)),
            Ok(Err(PluginError::Retryable(m))) => {
                return Err(fail(CallError::Retryable(redact(m)), logs));
            }
            Ok(Err(PluginError::Fatal(m))) => return Err(fail(CallError::Fatal(redact(m)), logs)),
            Ok(Err(PluginError::InvalidInput(m))) => {
                return Err(fail(CallError::InvalidInput(redact(m)), logs));
            }
            Ok(Ok(text)) => text,
        };
        if text.len() > self.settings.max_output {
            return Err(fail(
                CallError::OutputTooLarge {
                    size: text.len(),
                    limit: self.settings.max_output,
                },
                logs,
            ));
        }
        let output: Json = match serde_json::from_str(&text) {
            Ok(o) => o,
            Err(e) => {
                return Err(fail(
                    CallError::BadOutput(format!("it is not JSON: {e}")),
                    logs,
                ));
            }
        };
        if check_schema
            && let Some(problem) = self
                .output_schema
                .as_ref()
                .and_then(|s| first_problem(s, &output))
        {
            return Err(fail(
                CallError::BadOutput(format!(
                    "it does not fit the plugin's output schema: {problem}"
                )),
                logs,
            ));
        }
        let kv_writes = state.take_kv_writes();
        Ok(CallReport {
            output,
            logs,
            duration: started.elapsed(),
            fuel_used,
            peak_memory,
            kv_writes,
        })
    }
}
