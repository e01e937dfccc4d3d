//! `kontor plugin test PLUGIN --input …`: one call of a plugin in the real sandbox with
//! its configured limits and grants, so an author sees the output, the plugin's log,
//! fuel, memory and time exactly as the engine would get them.

use std::process::ExitCode;
use std::sync::Arc;

use kontor::config::Config;
use kontor_plugins::{Invocation, PluginRuntime};

use super::{component_path, read_json};

/// `kontor plugin test PLUGIN --input in.json [--config c.json]`: one call in the real
/// sandbox with the configured limits.
pub fn run(
    config: &Config,
    plugin: &str,
    input: &str,
    plugin_config: Option<&str>,
    call: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let (name, path) = component_path(config, plugin)?;
    let input = read_json("input", input)?;
    let (named, defaults) = config.plugin_settings()?;
    let mut settings = named.get(&name).cloned().unwrap_or(defaults);
    if let Some(c) = plugin_config {
        settings.config = read_json("config", c)?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let runtime = PluginRuntime::new(&config.plugin_runtime()?).map_err(anyhow::Error::msg)?;
        // Secrets and committed key-value state, when the store can be opened.
        if !settings.grants.secrets.is_empty() || settings.grants.kv {
            match kontor::store::Store::open(&config.database_url).await {
                Ok(store) => {
                    let key = Arc::new(config.master_key()?);
                    runtime.set_services(kontor::plugin_services::StoreServices::new(store, key));
                }
                Err(e) => eprintln!(
                    "note: the store cannot be opened ({e}); secrets are unavailable and the key-value store starts empty"
                ),
            }
        }
        let loaded = std::time::Instant::now();
        let plugin = Arc::new(runtime.load(&name, &path, settings).await?);
        let load_time = loaded.elapsed();
        let invocation = Invocation {
            run_id: "plugin-test".into(),
            workflow: "plugin-test".into(),
            step: "test".into(),
            attempt: 1,
        };
        let result = match call {
            Some(function) => plugin.call_connector(&invocation, function, &input).await,
            None => plugin.call(&invocation, &input).await,
        };
        match result {
            Ok(report) => {
                println!("{}", serde_json::to_string_pretty(&report.output)?);
                print_logs(&report.logs);
                for write in &report.kv_writes {
                    eprintln!(
                        "kv {:>6}: {} (not kept by a test run)",
                        if write.value.is_some() { "set" } else { "delete" },
                        write.key
                    );
                }
                eprintln!(
                    "ok: {} {} in {:.3} ms, fuel used {}, peak memory {:.1} MiB (loaded in {:.1} ms)",
                    plugin.info().name,
                    plugin.info().version,
                    report.duration.as_secs_f64() * 1000.0,
                    report.fuel_used,
                    report.peak_memory as f64 / (1 << 20) as f64,
                    load_time.as_secs_f64() * 1000.0
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(failure) => {
                print_logs(&failure.logs);
                eprintln!(
                    "failed ({}) after {:.3} ms: {}",
                    failure.error.kind(),
                    failure.duration.as_secs_f64() * 1000.0,
                    failure.error
                );
                Ok(ExitCode::FAILURE)
            }
        }
    })
}

fn print_logs(logs: &[kontor_plugins::LogLine]) {
    for line in logs {
        let fields: Vec<String> = line
            .fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        eprintln!(
            "log {:>6}: {} {}",
            line.level,
            line.message,
            fields.join(" ")
        );
    }
}
