//! `kontor plugin new|build|test|inspect`: the tools of a plugin author, one file per
//! subcommand, and how they name a component (a `.wasm` file or a plugin of the
//! plugins folder) and read JSON arguments — which `kontor bench plugin` shares.

mod build;
mod inspect;
mod new;
mod scaffold;
mod test;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use kontor::config::Config;
use serde_json::Value as Json;

#[derive(Subcommand)]
pub enum PluginCommand {
    /// Scaffold a plugin crate in the plugins folder (and add it to its workspace).
    New {
        /// Lower-case name with dashes, e.g. `next-best-offer`.
        name: String,
        /// An ERP connector (a REST API with a token) instead of a step.
        #[arg(long)]
        connector: bool,
    },
    /// Compile plugin crates for wasm32-wasip2 into `plugins/NAME.wasm` and check them.
    Build {
        /// One plugin; default: every plugin of the plugins workspace.
        name: Option<String>,
    },
    /// Run a plugin once in the real sandbox with its configured grants; prints the
    /// output, its log, the duration, fuel used and peak memory. Secrets come from the
    /// store; key-value writes are shown, not kept.
    Test {
        /// A `.wasm` file, or the name of a plugin in the plugins folder.
        plugin: String,
        /// The step input: a JSON file, `-` for stdin, or inline JSON.
        #[arg(long)]
        input: String,
        /// The plugin configuration (default: `[plugin.NAME.config]` from kontor.toml).
        #[arg(long)]
        config: Option<String>,
        /// For an ERP connector: the function to call (e.g. `customer-by-email`);
        /// `--input` holds its arguments (`{"email": "..."}`).
        #[arg(long)]
        call: Option<String>,
    },
    /// Show a component's world, exports, imports and the grants it asks for.
    Inspect {
        /// A `.wasm` file, or the name of a plugin in the plugins folder.
        plugin: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(config: &Config, command: PluginCommand) -> anyhow::Result<ExitCode> {
    match command {
        PluginCommand::New { name, connector } => new::run(config, &name, connector),
        PluginCommand::Build { name } => build::run(config, name.as_deref()),
        PluginCommand::Test {
            plugin,
            input,
            config: plugin_config,
            call,
        } => test::run(
            config,
            &plugin,
            &input,
            plugin_config.as_deref(),
            call.as_deref(),
        ),
        PluginCommand::Inspect { plugin, json } => inspect::run(config, &plugin, json),
    }
}

/// A component path: a file, or the name of a plugin in the plugins folder.
pub fn component_path(config: &Config, plugin: &str) -> anyhow::Result<(String, PathBuf)> {
    let path = PathBuf::from(plugin);
    if path.extension().is_some_and(|e| e == "wasm") || path.is_file() {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("plugin")
            .to_string();
        return Ok((name, path));
    }
    let path = config.plugins_dir.join(format!("{plugin}.wasm"));
    if !path.is_file() {
        bail!(
            "there is no {} (build it with `kontor plugin build {plugin}`)",
            path.display()
        );
    }
    Ok((plugin.to_string(), path))
}

/// The JSON of option `--{what}`: a file, `-` for stdin, or inline JSON.
pub fn read_json(what: &str, source: &str) -> anyhow::Result<Json> {
    let text = if source == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else if Path::new(source).is_file() {
        std::fs::read_to_string(source).with_context(|| format!("reading {source}"))?
    } else if source.trim_start().starts_with(['{', '[']) {
        source.to_string()
    } else {
        bail!("--{what}: {source} is neither a file nor inline JSON");
    };
    serde_json::from_str(&text).with_context(|| format!("--{what} {source} is not valid JSON"))
}
