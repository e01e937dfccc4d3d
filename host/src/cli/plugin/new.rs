//! `kontor plugin new NAME [--connector]`: a plugin crate in the plugins folder, ready
//! to build and test, added to the plugins workspace, and the next commands to run. The
//! files themselves are in [`super::scaffold`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use kontor::config::Config;

use super::scaffold;

/// A plugin crate in the plugins folder: a step, or an ERP connector that calls a REST
/// API with a token.
pub fn run(config: &Config, name: &str, connector: bool) -> anyhow::Result<ExitCode> {
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !valid {
        bail!(
            "`{name}` is not a plugin name: use lower-case letters, digits and dashes, starting with a letter (e.g. `next-best-offer`)"
        );
    }
    let dir = &config.plugins_dir;
    let crate_dir = dir.join(name);
    if crate_dir.exists() {
        bail!("{} exists already", crate_dir.display());
    }
    let sdk = sdk_path(dir)?;
    std::fs::create_dir_all(crate_dir.join("src"))
        .with_context(|| format!("creating {}", crate_dir.display()))?;
    std::fs::write(
        crate_dir.join("Cargo.toml"),
        scaffold::manifest(name, &sdk, connector),
    )?;
    std::fs::write(
        crate_dir.join("src/lib.rs"),
        scaffold::source(name, connector),
    )?;
    add_workspace_member(dir, name)?;
    println!("created {}", crate_dir.display());
    println!();
    println!("next:");
    println!(
        "  cargo test --manifest-path {}/Cargo.toml",
        crate_dir.display()
    );
    println!("  kontor plugin build {name}");
    if connector {
        println!("  grant it in kontor.toml (it asks for the origin of base_url and a token):");
        println!("    [plugin.{name}.config]");
        println!("    base_url = \"https://erp.example.com/api\"");
        println!("    [plugin.{name}.grants]");
        println!("    http = [\"https://erp.example.com\"]");
        println!("    secrets = [\"{name}-token\"]");
        println!("  kontor secret set {name}-token   (reads the value from stdin)");
        println!(
            "  kontor plugin test {name} --call customer-by-id --input '{{\"id\": \"K-10001\"}}'"
        );
        println!("  use it in a workflow step:  connector: {name}  call: customer-by-id");
    } else {
        println!(
            "  kontor plugin test {name} --input input.json   (e.g. {{\"name\": \"Jürgen\"}})"
        );
        println!("  use it in a workflow step:  plugin: {name}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The SDK as a path relative to a crate in `plugins_dir`.
fn sdk_path(plugins_dir: &Path) -> anyhow::Result<PathBuf> {
    let candidate = plugins_dir.join("../sdk");
    if candidate.join("Cargo.toml").is_file() {
        return Ok(PathBuf::from("../../sdk"));
    }
    bail!(
        "kontor-sdk was not found at {} (the plugins folder is expected next to the repository's sdk/ folder)",
        candidate.display()
    )
}

/// Adds `name` to the `members` of the plugins workspace, creating it if needed.
fn add_workspace_member(dir: &Path, name: &str) -> anyhow::Result<()> {
    let manifest = dir.join("Cargo.toml");
    if !manifest.exists() {
        std::fs::write(
            &manifest,
            format!(
                "[workspace]\nresolver = \"3\"\nmembers = [\"{name}\"]\n\n[profile.release]\nopt-level = \"s\"\nstrip = true\n"
            ),
        )?;
        return Ok(());
    }
    let text = std::fs::read_to_string(&manifest)?;
    let parsed: toml::Table = toml::from_str(&text)
        .with_context(|| format!("{} is not valid TOML", manifest.display()))?;
    let mut members: Vec<String> = parsed
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(|m| m.as_array())
        .map(|m| {
            m.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if members.iter().any(|m| m == name) {
        return Ok(());
    }
    members.push(name.to_string());
    let start = text
        .find("members")
        .context("the plugins workspace has no `members` list")?;
    let end = start + text[start..].find(']').context("unclosed `members` list")? + 1;
    let list = members
        .iter()
        .map(|m| format!("\"{m}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let updated = format!("{}members = [{list}]{}", &text[..start], &text[end..]);
    std::fs::write(&manifest, updated)?;
    Ok(())
}
