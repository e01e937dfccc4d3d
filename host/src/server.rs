//! `kontor serve`: config → store → catalog → engine (workers + cron) → HTTP API, and a
//! graceful stop on SIGINT/SIGTERM.

use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::api::{self, AppState};
use crate::clock::{ManualClock, SharedClock, SystemClock};
use crate::config::Config;
use crate::engine::{Engine, EngineSettings, Limits};
use crate::store::Store;
use crate::workflow::Catalog;
use kontor_plugins::{PluginRegistry, PluginRuntime};

pub fn engine_settings(config: &Config) -> EngineSettings {
    EngineSettings {
        workers: config.engine.workers,
        batch_size: config.engine.batch_size.max(1),
        lease: chrono::Duration::seconds(config.engine.lease_seconds as i64),
        poll_interval: std::time::Duration::from_millis(config.engine.poll_interval_ms.max(10)),
        limits: Limits {
            max_steps_per_run: config.engine.max_steps_per_run,
            expression_budget: config.engine.expression_budget,
            max_children_per_step: config.engine.max_children_per_step,
            max_run_depth: config.engine.max_run_depth,
        },
        // Checked when the configuration was loaded.
        max_workflow_file: config
            .engine
            .max_workflow_file()
            .unwrap_or(crate::workflow::DEFAULT_MAX_FILE_SIZE),
    }
}

/// The clock `config` asks for; the manual one is returned separately for the API.
pub fn clock_for(config: &Config) -> anyhow::Result<(SharedClock, Option<Arc<ManualClock>>)> {
    if !config.testing.manual_clock {
        return Ok((Arc::new(SystemClock), None));
    }
    let start = match &config.testing.clock_start {
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .with_context(|| format!("testing.clock_start `{t}` is not an RFC 3339 time"))?
            .to_utc(),
        None => chrono::Utc::now(),
    };
    let manual = Arc::new(ManualClock::new(start));
    Ok((manual.clone(), Some(manual)))
}

/// Locks the database file itself for the life of the server: the embedded store keeps
/// its job claims in memory, so two servers on one SQLite file would run jobs twice. The
/// lock is on the file (`flock`, which SQLite's own `fcntl` locks do not touch), not on
/// its name, so a symlink, a hard link or another spelling of the path finds it taken.
/// The OS releases it when the process dies, even by SIGKILL.
fn lock_embedded_database(database_url: &str) -> anyhow::Result<Option<std::fs::File>> {
    let Some(path) = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))
        .map(|p| p.split('?').next().unwrap_or(p))
        .filter(|p| !p.is_empty() && !p.starts_with(':'))
    else {
        return Ok(None);
    };
    let db_path = std::path::Path::new(path);
    if let Some(dir) = db_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // An empty file is a valid new SQLite database.
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(db_path)
        .with_context(|| format!("opening {}", db_path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another `kontor serve` is already using {path}; the embedded SQLite store serves one process"
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", db_path.display()))
        }
    }
}

pub async fn serve(config: Config) -> anyhow::Result<()> {
    let _lock = lock_embedded_database(&config.database_url)?;
    // Bound before the store, a first token or the master key is made: a taken port
    // leaves none of them behind.
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let store = Store::open(&config.database_url).await.with_context(|| {
        format!(
            "opening the store at {}",
            crate::store::redact(&config.database_url)
        )
    })?;
    info!(
        backend = store.backend(),
        durability = %store.durability().await?,
        "store opened"
    );
    // A message being sent stays leased to this process; a process that dies mid-send
    // leaves it to the others after the lease (PostgreSQL; SQLite requeues at start).
    store.outbox().set_lease(std::time::Duration::from_secs(
        (2 * config.engine.lease_seconds).max(60),
    ));
    if store.tokens().count().await? == 0 {
        // First start on a fresh database: one admin token, so the quick start needs no
        // second command. Shown once; only its hash is stored.
        let (token, hash) = api::new_token();
        store
            .tokens()
            .insert(
                &uuid::Uuid::now_v7().to_string(),
                &hash,
                "admin",
                Some("first start"),
                chrono::Utc::now(),
            )
            .await?;
        println!("first start: created admin token {token}");
        println!("  (shown once; create more with `kontor token create --role admin`)");
    }
    let master_key = Arc::new(
        config
            .master_key()
            .context("loading the secrets master key")?,
    );
    info!(key = %master_key.id(), "secrets master key loaded");
    let services = crate::plugin_services::StoreServices::new(store.clone(), master_key.clone());
    let overrides = store.plugin_state().configs().await?.into_iter().collect();
    let plugins = plugin_registry(&config, Some(services), overrides).await?;
    let catalog = Catalog::load_within(
        &config.workflows_dir,
        Some(&crate::workflow::PluginIndex::from_registry(&plugins)),
        Some(&config.channel_names()),
        config.engine.max_workflow_file()?,
    );
    for diagnostic in catalog.all_diagnostics() {
        warn!("{diagnostic}");
    }
    info!(
        valid = catalog.valid().count(),
        invalid = catalog.workflows.len() - catalog.valid().count(),
        dir = %config.workflows_dir.display(),
        "workflows loaded"
    );
    let (clock, manual_clock) = clock_for(&config)?;
    if manual_clock.is_some() {
        warn!("the manual test clock is on: time moves only through POST /api/v1/testing/clock");
    }
    crate::observability::metrics_handle();
    let engine_services = crate::engine::EngineServices {
        plugins: Some(plugins),
        channels: Some(config.channel_names()),
    };
    let engine = Engine::new(
        store.clone(),
        clock,
        catalog,
        engine_settings(&config),
        engine_services,
    );
    let (stop, stopped) = watch::channel(false);
    let mut tasks = engine.spawn_workers(stopped.clone());
    tasks.push(engine.spawn_cron(stopped.clone()));

    let address = listener.local_addr()?;
    // Tests and scripts read this line to find a port chosen by the OS (`:0`).
    println!("kontor listening on http://{address}");
    info!(%address, "listening");
    tasks.push(crate::retention::spawn(
        engine.clone(),
        config.retention.settings()?,
        stopped.clone(),
    ));
    tasks.push(spawn_workflow_watcher(
        engine.clone(),
        config.workflows_dir.clone(),
        stopped.clone(),
    ));
    let mailer = start_email(&config, &engine, &master_key).await?;
    let overviews = Arc::new(crate::customer_overview::Overviews::new(&config.erp)?);
    if let (Some(name), Some(registry)) = (overviews.connector(), engine.plugins()) {
        match registry.get(name) {
            Ok(plugin) if plugin.world() == kontor_plugins::World::ErpConnector => {
                info!(
                    connector = name,
                    "customer overviews read through the ERP connector"
                )
            }
            Ok(_) => warn!(
                connector = name,
                "[erp] connector names a plugin that is not an erp-connector; customer overviews will fail"
            ),
            Err(e) => {
                warn!(connector = name, error = %e, "[erp] connector does not load; customer overviews will fail")
            }
        }
    }
    tasks.push(mailer.spawn(stopped.clone()));
    let rate_limits = Arc::new(api::rate_limit::RateLimits::new(
        &config.http.rate_limits,
        engine.clock().clone(),
    )?);
    tasks.push(tokio::spawn(forget_idle_clients(
        rate_limits.clone(),
        stopped.clone(),
    )));
    let app = api::router(AppState {
        engine: engine.clone(),
        store: store.clone(),
        master_key,
        workflows_dir: config.workflows_dir.clone(),
        manual_clock,
        mailer: Some(mailer),
        overviews,
        metrics_access: config.http.metrics,
        tokens: Arc::new(api::token_cache::TokenCache::new()),
        rate_limits,
        lead_rejection_reasons: Arc::new(config.leads.rejection_reasons.clone()),
        webhooks: Arc::new(config.webhooks.clone()),
    });
    let server = tokio::spawn(api::listener::serve(
        listener,
        app,
        config.http.limits()?,
        stopped.clone(),
    ));

    shutdown_signal().await;
    info!("shutting down: finishing the current batches");
    let _ = stop.send(true);
    for task in tasks {
        let _ = task.await;
    }
    let _ = server.await;
    info!("stopped");
    Ok(())
}

/// Every minute, drops the rate-limit entries of clients back at their full allowance.
async fn forget_idle_clients(
    limits: Arc<api::rate_limit::RateLimits>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = every.tick() => limits.forget_idle(),
            _ = stopped.changed() => return,
        }
    }
}

/// Opens the email channels (reading their secrets) and the unsubscribe keyring.
pub async fn start_email(
    config: &Config,
    engine: &Arc<Engine>,
    master_key: &crate::secrets::MasterKey,
) -> anyhow::Result<Arc<crate::email::dispatch::Dispatcher>> {
    let store = engine.store();
    let channels = crate::email::dispatch::open_channels(&config.channel, store, master_key)
        .await
        .context("opening the email channels")?;
    let keyring = crate::email::unsubscribe::Keyring::load(store, master_key)
        .await
        .context("loading the unsubscribe keys")?;
    for channel in channels.values() {
        info!(
            channel = %channel.name,
            transport = channel.transport_name(),
            dkim = channel.dkim_algorithm.as_deref().unwrap_or("off"),
            "email channel ready"
        );
    }
    crate::email::dispatch::Dispatcher::new(
        store.clone(),
        engine.clock().clone(),
        engine.templates().clone(),
        channels,
        keyring,
        &config.public_url,
        crate::email::dispatch::EmailConfig {
            crash_after_send: config.testing.crash_after_send,
            ..config.email.clone()
        },
    )
    .map_err(anyhow::Error::msg)
}

/// The plugin runtime and the plugins of `plugins_dir`, loaded.
/// The plugin registry over `plugins_dir`, loaded; `services` lend capability calls
/// the store's secrets and key-value state (none: `kontor check`); `overrides` are the
/// plugin configurations set through the API.
pub async fn plugin_registry(
    config: &Config,
    services: Option<Arc<dyn kontor_plugins::HostServices>>,
    overrides: std::collections::HashMap<String, serde_json::Value>,
) -> anyhow::Result<Arc<PluginRegistry>> {
    let runtime = PluginRuntime::new(&config.plugin_runtime()?).map_err(anyhow::Error::msg)?;
    if let Some(services) = services {
        runtime.set_services(services);
    }
    let (named, defaults) = config.plugin_settings()?;
    let registry = Arc::new(PluginRegistry::new(
        runtime,
        &config.plugins_dir,
        named,
        defaults,
    ));
    registry.set_overrides(overrides);
    let loaded = registry.refresh().await;
    info!(
        plugins = loaded.iter().filter(|(_, problem)| problem.is_none()).count(),
        failed = loaded.iter().filter(|(_, problem)| problem.is_some()).count(),
        dir = %config.plugins_dir.display(),
        "plugins loaded"
    );
    Ok(registry)
}

/// Reloads the catalog when a file under the workflows folder changes (checked every
/// two seconds by modification time and size: no platform watcher needed), and reloads
/// plugins whose `.wasm` file changed or whose configuration another process changed
/// through the API. New runs use the new versions; running ones keep
/// their workflow version, and calls in flight finish on the plugin they started on.
fn spawn_workflow_watcher(
    engine: Arc<Engine>,
    dir: std::path::PathBuf,
    mut stopped: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = fingerprint(&dir).unwrap_or_default();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
                _ = stopped.changed() => return,
            }
            let plugins_changed = match engine.plugins() {
                Some(registry) => {
                    // Configurations another process set through the API.
                    let stored = engine.store().plugin_state().configs().await;
                    let reconfigured = match stored {
                        Ok(stored) => registry.sync_overrides(stored.into_iter().collect()).await,
                        Err(e) => {
                            warn!(error = %e, "cannot read the stored plugin configurations");
                            Vec::new()
                        }
                    };
                    !registry.refresh().await.is_empty() || !reconfigured.is_empty()
                }
                None => false,
            };
            let Some(now) = fingerprint(&dir) else {
                warn!(dir = %dir.display(), "the workflows folder cannot be read; keeping the workflows loaded before");
                metrics::counter!("kontor_folder_scan_failures_total", "folder" => "workflows")
                    .increment(1);
                continue;
            };
            if now != last || plugins_changed {
                let catalog = engine.load_catalog(&dir);
                if !catalog.unreadable.is_empty() {
                    // Half a catalog would unload every workflow it could not read.
                    warn!(unreadable = %catalog.unreadable.join("; "), "workflow files cannot be read; keeping the workflows loaded before");
                    metrics::counter!("kontor_folder_scan_failures_total", "folder" => "workflows")
                        .increment(1);
                    continue;
                }
                last = now;
                for diagnostic in catalog.all_diagnostics() {
                    warn!("{diagnostic}");
                }
                info!(
                    valid = catalog.valid().count(),
                    "workflows changed on disk; reloaded"
                );
                engine.set_catalog(catalog);
            }
        }
    })
}

/// What the watcher compares between scans.
type Fingerprint = Vec<(std::path::PathBuf, Option<std::time::SystemTime>, u64)>;

/// (path, modified, size) of every file under `dir`, one level of subfolders deep;
/// `None` if a folder that exists could not be read (no scan is better than a wrong one).
fn fingerprint(dir: &std::path::Path) -> Option<Fingerprint> {
    let mut files = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    let readable = |result: std::io::Result<std::fs::ReadDir>| match result {
        Ok(entries) => Some(Some(entries)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(None),
        Err(_) => None,
    };
    if let Some(entries) = readable(std::fs::read_dir(dir))? {
        for entry in entries {
            let path = entry.ok()?.path();
            if path.is_dir() {
                folders.push(path);
            }
        }
    }
    for folder in folders {
        if let Some(entries) = readable(std::fs::read_dir(&folder))? {
            for entry in entries {
                let entry = entry.ok()?;
                let meta = entry.metadata().ok()?;
                if meta.is_file() {
                    files.push((entry.path(), meta.modified().ok(), meta.len()));
                }
            }
        }
    }
    files.sort();
    Some(files)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
