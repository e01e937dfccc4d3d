//! `kontor plugin build [NAME]`: compiles plugin crates for `wasm32-wasip2` with cargo,
//! puts each component at `plugins/NAME.wasm` (atomically, so a running server never
//! loads half a file) and loads it once to check it keeps the contract.
//!
//! On a terminal a progress bar counts the plugins, first compiled, then checked; cargo
//! is then quiet and its compiler messages are printed above the bar. Anywhere else
//! (scripts, CI logs) there is no bar and cargo prints as it always does.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use kontor::config::Config;
use kontor_plugins::{PluginRuntime, PluginSettings};
use serde_json::Value as Json;

/// Compiles plugin crates for `wasm32-wasip2` and puts each component at
/// `plugins/NAME.wasm`, then loads it to check the contract.
pub fn run(config: &Config, name: Option<&str>) -> anyhow::Result<ExitCode> {
    let dir = &config.plugins_dir;
    let manifest = dir.join("Cargo.toml");
    if !manifest.is_file() {
        bail!(
            "{} does not exist; create a plugin with `kontor plugin new NAME`",
            manifest.display()
        );
    }
    if let Some(installed) = installed_targets()
        && !installed.iter().any(|t| t == "wasm32-wasip2")
    {
        bail!("the wasm32-wasip2 target is not installed; run `rustup target add wasm32-wasip2`");
    }
    eprintln!(
        "building {} for wasm32-wasip2 …",
        name.unwrap_or("all plugins")
    );
    let expected = match name {
        Some(_) => Some(1),
        None => workspace_members(&manifest),
    };
    let built = compile(dir, &manifest, name, progress_bar(expected, "compiling"))?;
    let failed = install_and_check(config, &built, progress_bar(Some(built.len()), "checking"))?;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Runs cargo on the plugins workspace: (package, compiled `.wasm`) of each plugin.
fn compile(
    dir: &Path,
    manifest: &Path,
    name: Option<&str>,
    bar: ProgressBar,
) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    // With a bar, cargo's own progress line would fight it: cargo stays quiet and its
    // compiler messages come through the JSON, to be printed above the bar.
    let with_bar = !bar.is_hidden();
    command
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .arg(if with_bar {
            "--message-format=json-diagnostic-rendered-ansi"
        } else {
            "--message-format=json-render-diagnostics"
        })
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--target-dir")
        .arg(dir.join("target"))
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .stdout(Stdio::piped())
        // Cargo's progress and compiler messages go straight to the terminal.
        .stderr(Stdio::inherit());
    if with_bar {
        command.arg("--quiet");
    }
    if let Some(name) = name {
        command.args(["--package", name]);
    }
    let mut child = command.spawn().context("running cargo")?;
    let stdout = child.stdout.take().expect("piped");
    let mut built: Vec<(String, PathBuf)> = Vec::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line?;
        let Ok(message) = serde_json::from_str::<Json>(&line) else {
            continue;
        };
        if message["reason"] == "compiler-message" {
            if let Some(rendered) = message["message"]["rendered"].as_str() {
                bar.suspend(|| eprint!("{rendered}"));
            }
            continue;
        }
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let target = message["target"]["name"].as_str().unwrap_or_default();
        let is_lib = message["target"]["kind"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == "cdylib"));
        if !is_lib {
            bar.set_message(target.to_string());
            continue;
        }
        let package = target.replace('_', "-");
        if let Some(file) = message["filenames"].as_array().and_then(|f| {
            f.iter()
                .filter_map(Json::as_str)
                .find(|f| f.ends_with(".wasm"))
        }) {
            bar.inc(1);
            bar.set_message(package.clone());
            built.push((package, PathBuf::from(file)));
        }
    }
    let status = child.wait()?;
    bar.finish_and_clear();
    if !status.success() {
        bail!("cargo could not build the plugin(s); see its messages above");
    }
    if built.is_empty() {
        bail!(
            "cargo built nothing that is a plugin (a plugin crate has `crate-type = [\"cdylib\"]`)"
        );
    }
    Ok(built)
}

/// Puts each compiled plugin at `plugins/NAME.wasm` and loads it; true if one fails.
fn install_and_check(
    config: &Config,
    built: &[(String, PathBuf)],
    bar: ProgressBar,
) -> anyhow::Result<bool> {
    let dir = &config.plugins_dir;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let runtime = PluginRuntime::new(&config.plugin_runtime()?).map_err(anyhow::Error::msg)?;
    let mut failed = false;
    for (package, file) in built {
        bar.set_message(package.clone());
        let target = dir.join(format!("{package}.wasm"));
        // Write beside, then rename: a running server never sees half a file.
        let partial = dir.join(format!(".{package}.wasm.partial"));
        std::fs::copy(file, &partial).with_context(|| format!("copying {}", file.display()))?;
        std::fs::rename(&partial, &target)?;
        let size = std::fs::metadata(&target)?.len();
        let loaded = rt.block_on(runtime.load(package, &target, PluginSettings::default()));
        bar.suspend(|| match loaded {
            Ok(plugin) => println!(
                "built {} → {} ({} KiB, {} {})",
                package,
                target.display(),
                size / 1024,
                plugin.info().name,
                plugin.info().version
            ),
            Err(kontor_plugins::LoadError::Config { .. }) => println!(
                "built {} → {} ({} KiB)",
                package,
                target.display(),
                size / 1024
            ),
            Err(e) => {
                eprintln!("built {package}, but it cannot be loaded: {e}");
                failed = true;
            }
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(failed)
}

/// A bar over `len` plugins (a spinner when the count is unknown) on stderr; indicatif
/// draws nothing when stderr is not a terminal.
fn progress_bar(len: Option<usize>, phase: &'static str) -> ProgressBar {
    let bar = match len {
        Some(len) => ProgressBar::new(len as u64),
        None => ProgressBar::no_length(),
    };
    let template = if len.is_some() {
        "{prefix:>9} [{bar:30}] {pos}/{len} plugins {wide_msg}"
    } else {
        "{prefix:>9} {spinner} {pos} plugins {wide_msg}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(phase);
    bar
}

/// How many crates the plugins workspace lists in `members`, if it can be read.
fn workspace_members(manifest: &Path) -> Option<usize> {
    let text = std::fs::read_to_string(manifest).ok()?;
    let parsed: toml::Table = toml::from_str(&text).ok()?;
    Some(parsed.get("workspace")?.get("members")?.as_array()?.len())
}

fn installed_targets() -> Option<Vec<String>> {
    let output = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .ok()?;
    output.status.success().then(|| {
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    })
}
