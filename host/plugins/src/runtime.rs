//! The wasmtime side shared by every plugin: one `Engine` (pooling allocator, on-disk
//! code cache, fuel, epoch interruption ticked by a dedicated thread), one `Linker` with
//! WASI granting nothing plus the contract's imports, and the threads plugin code runs
//! on. Loading a component — compile, check the contract, pre-instantiate, describe,
//! judge grants and configuration — starts here and yields a [`Plugin`].

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value as Json;
use wasmtime::component::{Component, Linker, types::ComponentItem};
use wasmtime::{Config, Engine};

use crate::contract::{World, check_contract, is_component_binary};
use crate::plugin::Exports;
use crate::sandbox::State;
use crate::services::CallContext;
use crate::{
    HostServices, LoadError, Plugin, PluginInfo, PluginSettings, RuntimeSettings, bindings,
    connector_bindings, http,
};

/// How often the epoch advances: the granularity of deadlines and of yields to the
/// async runtime.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The wasmtime engine, linker and epoch ticker shared by all plugins.
pub struct PluginRuntime {
    pub(crate) engine: Engine,
    linker: Linker<State>,
    max_memory: usize,
    ticker: Arc<AtomicBool>,
    /// The threads plugin calls run on.
    pub(crate) executor: Option<tokio::runtime::Runtime>,
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
    /// Starts the runtime: configures and creates the engine, links WASI and the host
    /// imports, and starts the epoch thread and the plugin threads. Fails with a message
    /// for the operator (e.g. the cache directory cannot be created).
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
    pub(crate) fn component(&self, path: &Path, bytes: &[u8]) -> Result<Component, LoadError> {
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
    pub(crate) async fn load_described(
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

    pub(crate) fn shape(&self, component: &Component) -> (Vec<String>, Vec<String>) {
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
}
