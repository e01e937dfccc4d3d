//! The subcommands of the `kontor` binary, one file each, and what several of them
//! share: the tokio runtime, opening the store (with the master key for commands that
//! touch secrets) and the log setup of `kontor serve`.
//!
//! This is a module of the binary, not of the library: nothing but `main.rs` calls a
//! subcommand, and the integration tests run the real binary instead. What a subcommand
//! needs from Kontor itself (the store, the engine, the plugin runtime) comes from the
//! `kontor` library; the files here only turn arguments into calls and results into
//! terminal output.

pub mod bench;
pub mod check;
pub mod completions;
pub mod email;
pub mod leads;
pub mod plugin;
pub mod secret;
pub mod serve;
pub mod simulate;
pub mod team;
pub mod token;
pub mod user;

use anyhow::Context;
use kontor::config::Config;
use kontor::secrets::MasterKey;
use kontor::store::Store;

/// The multi-threaded runtime a subcommand's async work runs on.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// The store the configuration names, with the (redacted) URL in the error.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    Store::open(&config.database_url).await.with_context(|| {
        format!(
            "opening the store at {}",
            kontor::store::redact(&config.database_url)
        )
    })
}

/// The store and the secrets master key, for commands that read or write secrets.
pub async fn store_and_key(config: &Config) -> anyhow::Result<(Store, MasterKey)> {
    let store = open_store(config).await?;
    let key = config
        .master_key()
        .context("loading the secrets master key")?;
    Ok((store, key))
}

/// Logs to stderr at `log.level` (or `RUST_LOG`), as text or JSON (`log.format`).
pub fn init_tracing(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| config.log.level.clone());
    let mut filter = EnvFilter::new(&spec);
    // The plugin compiler logs every instruction at debug/trace: quiet unless asked for.
    for noisy in [
        "cranelift_codegen",
        "cranelift_frontend",
        "wasmtime_internal_cranelift",
        "regalloc2",
    ] {
        if !spec.contains(noisy)
            && let Ok(directive) = format!("{noisy}=warn").parse()
        {
            filter = filter.add_directive(directive);
        }
    }
    // Colours only on a terminal; a log file or journal gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if config.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
