//! `[plugins]` and `[plugin.NAME]`: the plugin runtime's limits and each plugin's memory,
//! deadline, configuration and grants, resolved into the runtime's own settings with
//! errors that name the key.

use std::path::PathBuf;

use serde::Deserialize;

use super::Config;

/// The plugin runtime as a whole.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// Compiled plugin code is cached here, so a restart does not recompile.
    pub cache_dir: PathBuf,
    /// The largest memory cap any plugin may have (`64MiB`); sizes the instance pool.
    pub max_memory: String,
    /// How many plugin instances may run at once.
    pub max_instances: u32,
    /// Threads that run plugin code, apart from the API's and the engine's; default:
    /// one per core.
    pub threads: Option<usize>,
    /// Defaults for every plugin without its own `[plugin.NAME]` values.
    pub defaults: PluginConfig,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            cache_dir: "data/plugin-cache".into(),
            max_memory: "64MiB".into(),
            max_instances: 256,
            threads: None,
            defaults: PluginConfig::default(),
        }
    }
}

/// Limits and configuration of one plugin; unset values come from `[plugins.defaults]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginConfig {
    /// Wall-clock time one call may take (`2s`, `500ms`).
    pub deadline: Option<String>,
    /// CPU budget per call in fuel units; unset: only the deadline.
    pub fuel: Option<u64>,
    /// Linear memory cap (`64MiB`).
    pub memory: Option<String>,
    /// Largest input and output documents (`1MiB`, `4MiB`).
    pub max_input: Option<String>,
    pub max_output: Option<String>,
    /// The plugin's own configuration, checked against its config schema at load.
    pub config: Option<toml::Table>,
    /// What the plugin may use (`[plugin.NAME.grants]`); nothing when unset.
    pub grants: Option<GrantsConfig>,
    /// Largest HTTP response body the plugin may receive (`8MiB`).
    pub max_response: Option<String>,
    /// Longest HTTP exchange, redirects included (`10s`).
    pub http_timeout: Option<String>,
}

/// Capabilities granted to one plugin; deny by default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrantsConfig {
    /// Origins it may call: `https://erp.example.com`, `http://10.1.2.3:8080`.
    pub http: Vec<String>,
    /// Address ranges it may reach although they are loopback, private, link-local or
    /// unique-local: `10.1.0.0/16`, `127.0.0.1/32`.
    pub private_networks: Vec<String>,
    /// Names of secrets it may read.
    pub secrets: Vec<String>,
    /// Whether it has a key-value store.
    pub kv: bool,
}

/// Parses a size such as `64MiB`, `512KiB`, `1GiB` or a number of bytes.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: usize = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size; write e.g. `64MiB`, `512KiB` or bytes"))?;
    let factor = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "kB" | "KB" => 1 << 10,
        "MiB" | "MB" => 1 << 20,
        "GiB" | "GB" => 1 << 30,
        other => {
            return Err(format!(
                "`{other}` in `{text}` is not a size unit; use B, KiB, MiB or GiB"
            ));
        }
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("`{text}` is too large"))
}

impl Config {
    /// Runtime settings of the plugin runtime.
    pub fn plugin_runtime(&self) -> anyhow::Result<kontor_plugins::RuntimeSettings> {
        Ok(kontor_plugins::RuntimeSettings {
            cache_dir: Some(self.plugins.cache_dir.clone()),
            max_memory: parse_size(&self.plugins.max_memory)
                .map_err(|e| anyhow::anyhow!("plugins.max_memory: {e}"))?,
            max_instances: self.plugins.max_instances,
            threads: self
                .plugins
                .threads
                .unwrap_or_else(|| kontor_plugins::RuntimeSettings::default().threads),
        })
    }

    /// The settings of every configured plugin, and the defaults for the others.
    pub fn plugin_settings(
        &self,
    ) -> anyhow::Result<(
        std::collections::HashMap<String, kontor_plugins::PluginSettings>,
        kontor_plugins::PluginSettings,
    )> {
        let defaults = resolve_plugin(
            "plugins.defaults",
            &self.plugins.defaults,
            &kontor_plugins::PluginSettings::default(),
        )?;
        let mut named = std::collections::HashMap::new();
        for (name, config) in &self.plugin {
            named.insert(
                name.clone(),
                resolve_plugin(&format!("plugin.{name}"), config, &defaults)?,
            );
        }
        Ok((named, defaults))
    }
}

fn resolve_plugin(
    key: &str,
    config: &PluginConfig,
    base: &kontor_plugins::PluginSettings,
) -> anyhow::Result<kontor_plugins::PluginSettings> {
    let size = |field: &str, value: &Option<String>, default: usize| match value {
        None => Ok(default),
        Some(v) => parse_size(v).map_err(|e| anyhow::anyhow!("{key}.{field}: {e}")),
    };
    let deadline = match &config.deadline {
        None => base.deadline,
        Some(d) => kontor_time::parse_positive_duration(d)
            .map_err(|e| anyhow::anyhow!("{key}.deadline: {e}"))?,
    };
    let grants = match &config.grants {
        None => base.grants.clone(),
        Some(g) => kontor_plugins::Grants {
            http: g
                .http
                .iter()
                .map(|o| kontor_plugins::Origin::parse(o))
                .collect::<Result<_, _>>()
                .map_err(|e| anyhow::anyhow!("{key}.grants.http: {e}"))?,
            private_networks: g
                .private_networks
                .iter()
                .map(|n| {
                    n.parse::<ipnet::IpNet>()
                        .or_else(|_| n.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                        .map_err(|_| {
                            anyhow::anyhow!(
                                "{key}.grants.private_networks: `{n}` is not an address or a network like 10.1.0.0/16"
                            )
                        })
                })
                .collect::<Result<_, _>>()?,
            secrets: {
                for name in &g.secrets {
                    crate::secrets::check_name(name)
                        .map_err(|e| anyhow::anyhow!("{key}.grants.secrets: {e}"))?;
                }
                g.secrets.clone()
            },
            kv: g.kv,
        },
    };
    let mut http = base.http.clone();
    http.max_response_bytes = size(
        "max_response",
        &config.max_response,
        http.max_response_bytes,
    )?;
    if let Some(t) = &config.http_timeout {
        http.timeout = kontor_time::parse_positive_duration(t)
            .map_err(|e| anyhow::anyhow!("{key}.http_timeout: {e}"))?;
    }
    Ok(kontor_plugins::PluginSettings {
        grants,
        http,
        deadline,
        fuel: config.fuel.or(base.fuel),
        memory: size("memory", &config.memory, base.memory)?,
        max_input: size("max_input", &config.max_input, base.max_input)?,
        max_output: size("max_output", &config.max_output, base.max_output)?,
        config: match &config.config {
            Some(table) => serde_json::to_value(table)?,
            None => base.config.clone(),
        },
    })
}
