//! Tooling for plugin authors: `kontor plugin new|build|test|inspect`.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;

use anyhow::{Context, bail};
use kontor_plugins::{Invocation, PluginRuntime, PluginSettings};
use serde_json::Value as Json;

use crate::config::Config;

/// `kontor plugin new NAME [--connector]`: a plugin crate in the plugins folder, ready
/// to build: a step, or an ERP connector that calls a REST API with a token.
pub fn new(config: &Config, name: &str, connector: bool) -> anyhow::Result<ExitCode> {
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
        format!(
            r#"[package]
name = "{name}"
description = "{description}"
edition = "2024"
version = "0.1.0"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
kontor-sdk = {{ path = "{sdk}" }}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"
"#,
            sdk = sdk.display(),
            description = if connector {
                "A Kontor ERP connector"
            } else {
                "A Kontor step plugin"
            },
        ),
    )?;
    let type_name: String = name
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    std::fs::write(
        crate_dir.join("src/lib.rs"),
        if connector {
            CONNECTOR_SCAFFOLD
        } else {
            SCAFFOLD
        }
        .replace("{{name}}", name)
        .replace("{{Type}}", &type_name),
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

const SCAFFOLD: &str = r#"//! {{name}}: a Kontor step plugin.
//!
//! `kontor plugin build {{name}}` compiles it to `{{name}}.wasm` in the plugins folder;
//! a workflow calls it with a step `plugin: {{name}}`. `cargo test` runs the tests below
//! natively, through the same JSON path the host uses.

use kontor_sdk::{Error, Info, Invocation, Step, export_step, json, log};
use serde::{Deserialize, Serialize};

/// Configuration from `[plugin.{{name}}.config]` in kontor.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub greeting: Option<String>,
}

/// What the workflow step passes in (its `input:` mapping, or the run's input).
#[derive(Debug, Deserialize)]
pub struct Input {
    pub name: String,
}

/// What joins the run's context as `steps.<step id>`.
#[derive(Debug, Serialize)]
pub struct Output {
    pub message: String,
}

pub struct {{Type}};

impl Step for {{Type}} {
    type Config = Config;
    type Input = Input;
    type Output = Output;

    fn info() -> Info {
        Info::new("{{name}}", env!("CARGO_PKG_VERSION"))
            .description(env!("CARGO_PKG_DESCRIPTION"))
            .input_schema(json!({
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string", "minLength": 1}}
            }))
    }

    fn run(invocation: &Invocation, config: Config, input: Input) -> Result<Output, Error> {
        log::info_with("greeting", &[("run", &invocation.run_id)]);
        let greeting = config.greeting.unwrap_or_else(|| "Hallo".into());
        Ok(Output {
            message: format!("{greeting}, {}!", input.name),
        })
    }
}

export_step!({{Type}});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greets() {
        let out = kontor_sdk::testing::run::<{{Type}}>(json!({}), json!({"name": "Jürgen"}));
        assert_eq!(out, Ok(json!({"message": "Hallo, Jürgen!"})));
    }
}
"#;

const CONNECTOR_SCAFFOLD: &str = r##"//! {{name}}: a Kontor ERP connector for a REST API with a bearer token.
//!
//! It implements two functions of the `erp-connector` world; the others answer "not
//! supported" until you write them (see `plugins/erp-fixture` for all of them, with
//! paging by cursor). It asks for the origin of `base_url` and the secret
//! `{{name}}-token`: grant both in kontor.toml. `cargo test` runs the mapping natively.

use kontor_sdk::erp::Customer;
use kontor_sdk::{Connector, Error, Info, config, export_connector, http, secrets};
use serde::Deserialize;

/// Configuration from `[plugin.{{name}}.config]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// e.g. `https://erp.example.com/api`
    pub base_url: String,
}

/// A customer as this ERP answers it.
#[derive(Debug, Deserialize)]
pub struct ErpCustomer {
    pub number: String,
    pub name: String,
    pub vat: Option<String>,
    pub email: Option<String>,
    pub street: String,
    pub zip: String,
    pub city: String,
    pub country: String,
    pub language: Option<String>,
}

impl From<ErpCustomer> for Customer {
    fn from(c: ErpCustomer) -> Customer {
        Customer {
            id: c.number,
            name: c.name,
            vat_id: c.vat,
            email: c.email,
            phone: None,
            street: c.street,
            postal_code: c.zip,
            city: c.city,
            locale: match c.language.as_deref() {
                Some("EN") => "en-GB".into(),
                _ => format!("de-{}", c.country),
            },
            country: c.country,
            industry: None,
        }
    }
}

/// The scheme, host and port of a URL: what must be granted.
fn origin(url: &str) -> String {
    let rest = url.split_once("://").map_or("", |(_, r)| r);
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    let scheme = url.split("://").next().unwrap_or("https");
    format!("{scheme}://{host}")
}

fn get(path: &str) -> Result<Option<http::Response>, Error> {
    let config: Config = config::parse()?;
    let token = secrets::get("{{name}}-token")?;
    let response = http::Request::get(format!("{}{path}", config.base_url.trim_end_matches('/')))
        .header("authorization", format!("Bearer {token}"))
        .header("accept", "application/json")
        .send()?;
    match response.status {
        200 => Ok(Some(response)),
        404 => Ok(None),
        429 | 500..=599 => Err(Error::retryable(format!("the ERP answered {}", response.status))),
        status => Err(Error::fatal(format!("the ERP answered {status}: {}", response.text()))),
    }
}

pub struct {{Type}};

impl Connector for {{Type}} {
    fn info() -> Info {
        let info = Info::new("{{name}}", env!("CARGO_PKG_VERSION"))
            .description(env!("CARGO_PKG_DESCRIPTION"))
            .secret("{{name}}-token");
        // What it asks for follows its configuration.
        match config::get("base_url") {
            Some(url) => info.host(origin(&url)),
            None => info,
        }
    }

    fn customer_by_id(id: String) -> Result<Option<Customer>, Error> {
        let Some(response) = get(&format!("/customers/{id}"))? else {
            return Ok(None);
        };
        Ok(Some(response.json::<ErpCustomer>()?.into()))
    }

    fn customer_by_email(email: String) -> Result<Option<Customer>, Error> {
        let email = email.replace('%', "%25").replace('+', "%2B").replace('&', "%26");
        let Some(response) = get(&format!("/customers?email={email}"))? else {
            return Ok(None);
        };
        let found: Vec<ErpCustomer> = response.json()?;
        Ok(found.into_iter().next().map(Into::into))
    }
}

export_connector!({{Type}});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_erp_customer_becomes_a_kontor_customer() {
        let erp: ErpCustomer = serde_json::from_str(
            r#"{"number": "K-10001", "name": "Müller Kältetechnik GmbH", "vat": "DE811234567",
                "email": null, "street": "Hauptstraße 12", "zip": "80331", "city": "München",
                "country": "DE", "language": "DE"}"#,
        )
        .unwrap();
        let customer: Customer = erp.into();
        assert_eq!(customer.city, "München");
        assert_eq!(customer.locale, "de-DE");
        assert_eq!(origin("https://erp.example.com:8443/api/v1"), "https://erp.example.com:8443");
    }
}
"##;

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

/// `kontor plugin build [NAME]`: compiles plugin crates for `wasm32-wasip2` and puts
/// each component at `plugins/NAME.wasm`, then loads it to check the contract.
pub fn build(config: &Config, name: Option<&str>) -> anyhow::Result<ExitCode> {
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
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--message-format=json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(dir.join("target"))
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .stdout(Stdio::piped())
        // Cargo's progress and compiler messages go straight to the terminal.
        .stderr(Stdio::inherit());
    if let Some(name) = name {
        command.args(["--package", name]);
    }
    eprintln!(
        "building {} for wasm32-wasip2 …",
        name.unwrap_or("all plugins")
    );
    let mut child = command.spawn().context("running cargo")?;
    let stdout = child.stdout.take().expect("piped");
    let mut built: Vec<(String, PathBuf)> = Vec::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line?;
        let Ok(message) = serde_json::from_str::<Json>(&line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let is_lib = message["target"]["kind"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == "cdylib"));
        if !is_lib {
            continue;
        }
        let package = message["target"]["name"]
            .as_str()
            .unwrap_or_default()
            .replace('_', "-");
        if let Some(file) = message["filenames"].as_array().and_then(|f| {
            f.iter()
                .filter_map(Json::as_str)
                .find(|f| f.ends_with(".wasm"))
        }) {
            built.push((package, PathBuf::from(file)));
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("cargo could not build the plugin(s); see its messages above");
    }
    if built.is_empty() {
        bail!(
            "cargo built nothing that is a plugin (a plugin crate has `crate-type = [\"cdylib\"]`)"
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let runtime = PluginRuntime::new(&config.plugin_runtime()?).map_err(anyhow::Error::msg)?;
    let mut failed = false;
    for (package, file) in built {
        let target = dir.join(format!("{package}.wasm"));
        // Write beside, then rename: a running server never sees half a file.
        let partial = dir.join(format!(".{package}.wasm.partial"));
        std::fs::copy(&file, &partial).with_context(|| format!("copying {}", file.display()))?;
        std::fs::rename(&partial, &target)?;
        let size = std::fs::metadata(&target)?.len();
        match rt.block_on(runtime.load(&package, &target, PluginSettings::default())) {
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
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
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

/// `kontor plugin test PLUGIN --input in.json [--config c.json]`: one call in the real
/// sandbox with the configured limits.
pub fn test(
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
            match crate::store::Store::open(&config.database_url).await {
                Ok(store) => {
                    let key = Arc::new(config.master_key()?);
                    runtime.set_services(crate::plugin_services::StoreServices::new(store, key));
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

/// `kontor plugin inspect PLUGIN`: world, exports, imports, what it asks for.
pub fn inspect(config: &Config, plugin: &str, json: bool) -> anyhow::Result<ExitCode> {
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
