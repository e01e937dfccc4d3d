//! `kontor plugin inspect PLUGIN`: what a component is (world, contract version,
//! exports, imports), what it asks for and what kontor.toml grants it — the first look
//! when a plugin does not load.

use std::process::ExitCode;
use std::sync::Arc;

use kontor::config::Config;
use kontor_plugins::PluginRuntime;

use super::component_path;

/// `kontor plugin inspect PLUGIN`: world, exports, imports, what it asks for.
pub fn run(config: &Config, plugin: &str, json: bool) -> anyhow::Result<ExitCode> {
    let (_, path) = component_path(config, plugin)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let runtime: Arc<PluginRuntime> =
        PluginRuntime::new(&config.plugin_runtime()?).map_err(anyhow::Error::msg)?;
    let (named, defaults) = config.plugin_settings()?;
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or(plugin)
        .to_string();
    let settings = named.get(&name).cloned().unwrap_or(defaults);
    let inspection = rt.block_on(runtime.inspect(&path, settings))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&inspection)?);
    } else {
        println!(
            "file:      {} ({} KiB)",
            path.display(),
            inspection.size / 1024
        );
        println!(
            "world:     {}",
            match (&inspection.world, &inspection.contract) {
                (Some(w), Some(c)) => format!("{w} (kontor:plugin@{c})"),
                _ => "not a Kontor plugin".into(),
            }
        );
        if let Some(info) = &inspection.info {
            println!("plugin:    {} {}", info.name, info.version);
            if !info.description.is_empty() {
                println!("           {}", info.description);
            }
            for (which, schema) in [
                ("config", &info.config_schema),
                ("input", &info.input_schema),
                ("output", &info.output_schema),
            ] {
                println!(
                    "{:<10} {}",
                    format!("{which}:"),
                    schema
                        .as_ref()
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "any JSON".into())
                );
            }
            println!(
                "requests:  http {:?}, secrets {:?}, kv {}",
                info.hosts, info.secrets, info.kv
            );
        }
        if let Some(g) = &inspection.granted {
            println!(
                "granted:   http {:?}, private_networks {:?}, secrets {:?}, kv {} ([plugin.{name}.grants])",
                g.http, g.private_networks, g.secrets, g.kv
            );
        }
        if !inspection.missing.is_empty() {
            println!("missing:   {}", inspection.missing.join(", "));
        }
        if inspection.world.as_deref() == Some("erp-connector") {
            println!("functions:");
            for f in kontor_plugins::CONNECTOR_FUNCTIONS {
                println!(
                    "  {:<22} ({}) → {}",
                    f.name,
                    f.arguments.join(", "),
                    f.returns
                );
            }
        }
        println!("exports:");
        for e in &inspection.exports {
            println!("  {e}");
        }
        println!("imports:");
        for i in &inspection.imports {
            println!("  {i}");
        }
        if let Some(problem) = &inspection.problem {
            println!("problem:   {problem}");
        }
    }
    Ok(if inspection.problem.is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
