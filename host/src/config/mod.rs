//! Configuration: one typed [`Config`], from an optional `kontor.toml` plus `KONTOR_*`
//! environment variables, loaded once at startup and passed down.
//!
//! Unknown keys are an error, not silently ignored. Every default works on one machine:
//! the SQLite file `data/kontor.db`, `workflows/` and `plugins/` in the working directory.

use std::path::PathBuf;

use anyhow::bail;
use serde::Deserialize;

mod http;
mod load;
mod plugins;

pub use http::{HttpConfig, HttpLimits, MetricsAccess, Rate, RateLimitConfig};
pub use load::ENV_OVERRIDES;
pub use plugins::{GrantsConfig, PluginConfig, PluginsConfig, parse_size};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP API listens on.
    pub listen: String,
    /// The externally reachable base URL (scheme, host, optional path prefix) used in
    /// every link Kontor puts into an email; separate from `listen`, which may be an
    /// internal address behind a proxy. Not set, it follows `listen`: `http://` and the
    /// listen address, an unspecified host (`0.0.0.0`, `[::]`) as loopback — right on one
    /// machine; behind a proxy, or with port 0, set it.
    pub public_url: String,
    /// `sqlite://data/kontor.db` (default: embedded, one process) or
    /// `postgres://user:password@host/database` (several processes may share it).
    pub database_url: String,
    pub workflows_dir: PathBuf,
    /// Where plugin components live: plugin `NAME` is `NAME.wasm` here.
    pub plugins_dir: PathBuf,
    /// The plugin runtime (`[plugins]`).
    pub plugins: PluginsConfig,
    /// Limits and configuration per plugin (`[plugin.NAME]`).
    pub plugin: std::collections::BTreeMap<String, PluginConfig>,
    /// The HTTP listener's limits and `/metrics` access (`[http]`).
    pub http: HttpConfig,
    pub engine: EngineConfig,
    pub log: LogConfig,
    pub retention: RetentionConfig,
    pub secrets: SecretsConfig,
    pub testing: TestingConfig,
    /// The outbox dispatcher (`[email]`).
    pub email: crate::email::dispatch::EmailConfig,
    /// Email channels (`[channel.NAME]`); none configured: a `default` channel that
    /// writes `.eml` files to `data/mail/default`.
    pub channel: std::collections::BTreeMap<String, crate::email::channel::ChannelConfig>,
    /// The ERP behind the customer overview (`[erp]`).
    pub erp: crate::customer_overview::ErpConfig,
    /// Leads (`[leads]`).
    pub leads: LeadsConfig,
    /// Signed inbound webhooks (`[webhooks.SOURCE]`, `POST /hooks/SOURCE`).
    pub webhooks: std::collections::BTreeMap<String, crate::webhooks::WebhookSource>,
    /// `KONTOR_MASTER_KEY` (hex): wins over `secrets.master_key_file`. Only from the
    /// environment, never from the file; never printed.
    #[serde(skip)]
    pub master_key: Option<Redacted>,
    /// `public_url` was not set (file or environment), so it moves with `listen`, also
    /// when [`Config::set_listen`] changes it later (`kontor serve --listen`).
    #[serde(skip)]
    public_url_follows_listen: bool,
}

/// A string that prints as `[redacted]`.
#[derive(Clone)]
pub struct Redacted(pub String);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    /// Where the master key lives (created on first use) unless `KONTOR_MASTER_KEY` is set.
    /// Keep it outside the database's backups, or back it up separately.
    pub master_key_file: PathBuf,
}

impl Default for SecretsConfig {
    fn default() -> Self {
        SecretsConfig {
            master_key_file: "data/master.key".into(),
        }
    }
}

impl Config {
    /// Names of the email channels `send_email` steps may use.
    pub fn channel_names(&self) -> std::collections::BTreeSet<String> {
        crate::email::channel::configured(&self.channel)
            .into_keys()
            .collect()
    }

    /// The master key of the secrets store (see [`crate::secrets`]).
    pub fn master_key(&self) -> Result<crate::secrets::MasterKey, crate::secrets::SecretsError> {
        crate::secrets::MasterKey::load(
            self.master_key.as_ref().map(|k| k.0.as_str()),
            &self.secrets.master_key_file,
        )
    }
}

/// How long finished data is kept (durations like `30d`, `24h`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Completed and cancelled runs with their step history; failed runs are kept.
    pub finished_runs: String,
    pub events: String,
    pub idempotency_keys: String,
    /// How often the pruning pass runs.
    pub interval: String,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            finished_runs: "30d".into(),
            events: "30d".into(),
            idempotency_keys: "24h".into(),
            interval: "10m".into(),
        }
    }
}

impl RetentionConfig {
    pub fn settings(&self) -> anyhow::Result<crate::retention::RetentionSettings> {
        let parse = |key: &str, value: &str| {
            kontor_time::parse_duration(value).map_err(|e| anyhow::anyhow!("retention.{key}: {e}"))
        };
        Ok(crate::retention::RetentionSettings {
            finished_runs: parse("finished_runs", &self.finished_runs)?,
            events: parse("events", &self.events)?,
            idempotency_keys: parse("idempotency_keys", &self.idempotency_keys)?,
            interval: parse("interval", &self.interval)?
                .to_std()
                .map_err(|_| anyhow::anyhow!("retention.interval must be positive"))?,
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    pub workers: usize,
    pub batch_size: u32,
    pub lease_seconds: u64,
    pub poll_interval_ms: u64,
    pub max_steps_per_run: i64,
    /// Child runs one `start` step may create.
    pub max_children_per_step: usize,
    /// How many parents a run may have (a child of a child of …).
    pub max_run_depth: i64,
    /// Cost units one expression evaluation may spend (items iterated, characters built).
    pub expression_budget: u64,
    /// The largest workflow or calendar file loaded (`1MiB`); larger ones are invalid.
    pub max_workflow_file: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `pretty` (default) or `json`.
    pub format: String,
    /// A tracing filter such as `info` or `kontor=debug`; `RUST_LOG` wins if set.
    pub level: String,
}

/// Leads (`[leads]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeadsConfig {
    /// The reasons sales may give for rejecting a lead (`POST /api/v1/leads/{id}/reject`).
    pub rejection_reasons: Vec<String>,
}

impl Default for LeadsConfig {
    fn default() -> Self {
        LeadsConfig {
            rejection_reasons: crate::crm::lead::DEFAULT_REJECTION_REASONS
                .iter()
                .map(|r| r.to_string())
                .collect(),
        }
    }
}

/// Controls for tests. Off by default; never enable them in production.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TestingConfig {
    /// Drive time by hand through `POST /api/v1/testing/clock` instead of the wall clock.
    pub manual_clock: bool,
    /// Start of the manual clock (RFC 3339); default: the wall clock at startup.
    pub clock_start: Option<String>,
    /// Fault injection: abort the process right after the first message is accepted by
    /// the transport, before the outcome is committed (the window in which a message can
    /// be sent twice). Tests only.
    pub crash_after_send: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            public_url: "http://127.0.0.1:8080".into(),
            database_url: "sqlite://data/kontor.db".into(),
            workflows_dir: "workflows".into(),
            plugins_dir: "plugins".into(),
            plugins: PluginsConfig::default(),
            plugin: Default::default(),
            http: HttpConfig::default(),
            engine: EngineConfig::default(),
            log: LogConfig::default(),
            retention: RetentionConfig::default(),
            secrets: SecretsConfig::default(),
            master_key: None,
            public_url_follows_listen: true,
            testing: TestingConfig::default(),
            email: Default::default(),
            channel: Default::default(),
            erp: Default::default(),
            leads: Default::default(),
            webhooks: Default::default(),
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workers: 2,
            batch_size: 32,
            lease_seconds: 60,
            poll_interval_ms: 500,
            max_steps_per_run: 10_000,
            max_children_per_step: 100_000,
            max_run_depth: 10,
            expression_budget: crate::expr::DEFAULT_BUDGET,
            max_workflow_file: "1MiB".into(),
        }
    }
}

impl EngineConfig {
    /// `max_workflow_file` in bytes.
    pub fn max_workflow_file(&self) -> anyhow::Result<u64> {
        parse_size(&self.max_workflow_file)
            .map(|bytes| bytes as u64)
            .map_err(|e| anyhow::anyhow!("engine.max_workflow_file: {e}"))
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: "pretty".into(),
            level: "info".into(),
        }
    }
}

impl Config {
    /// Listens on `listen` instead (`kontor serve --listen`); `public_url` follows it
    /// unless it was set.
    pub fn set_listen(&mut self, listen: String) -> anyhow::Result<()> {
        if self.public_url_follows_listen {
            self.public_url = public_url_for(&listen);
        }
        self.listen = listen;
        self.validate()
    }

    fn validate(&self) -> anyhow::Result<()> {
        if !matches!(self.log.format.as_str(), "pretty" | "json") {
            bail!(
                "log.format must be `pretty` or `json`, not `{}`",
                self.log.format
            );
        }
        self.http.limits()?;
        self.engine.max_workflow_file()?;
        if self.engine.workers == 0 {
            bail!("engine.workers must be at least 1");
        }
        let url = self.public_url.trim_end_matches('/');
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "public_url must start with https:// or http://, not `{}`",
                    self.public_url
                )
            })?;
        if rest.is_empty() || rest.contains(['?', '#', ' ']) {
            bail!(
                "public_url `{}` is not a base URL (scheme, host, optional path)",
                self.public_url
            );
        }
        self.retention.settings()?;
        self.email.backoffs().map_err(anyhow::Error::msg)?;
        if self.email.batch_size == 0 || self.email.concurrency == 0 {
            bail!("email.batch_size and email.concurrency must be at least 1");
        }
        for (name, channel) in &self.channel {
            crate::email::channel::validate(name, channel).map_err(anyhow::Error::msg)?;
        }
        for (name, source) in &self.webhooks {
            source.validate(name).map_err(anyhow::Error::msg)?;
        }
        if self.engine.lease_seconds < 5 {
            bail!("engine.lease_seconds must be at least 5");
        }
        let runtime = self.plugin_runtime()?;
        let lease = std::time::Duration::from_secs(self.engine.lease_seconds);
        let (named, defaults) = self.plugin_settings()?;
        let tables = named
            .iter()
            .map(|(name, settings)| (format!("plugin.{name}"), settings))
            .chain([("plugins.defaults".to_string(), &defaults)]);
        for (table, settings) in tables {
            if settings.memory > runtime.max_memory {
                bail!(
                    "{table}.memory is larger than plugins.max_memory ({} MiB); raise plugins.max_memory",
                    runtime.max_memory >> 20
                );
            }
            if settings.deadline >= lease {
                bail!(
                    "{table}.deadline must be shorter than engine.lease_seconds ({}s): a job's lease must outlive its longest step",
                    self.engine.lease_seconds
                );
            }
        }
        Ok(())
    }
}

/// The base URL of a server listening on `listen`, as seen from the same machine.
fn public_url_for(listen: &str) -> String {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    let address = match listen.parse::<SocketAddr>() {
        Ok(address) if address.ip().is_unspecified() => {
            let loopback: IpAddr = if address.is_ipv4() {
                Ipv4Addr::LOCALHOST.into()
            } else {
                Ipv6Addr::LOCALHOST.into()
            };
            SocketAddr::new(loopback, address.port()).to_string()
        }
        _ => listen.to_string(),
    };
    format!("http://{address}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_url_and_retention_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kontor.toml");
        std::fs::write(&path, "public_url = \"kontor.example.de\"\n").unwrap();
        let err = Config::load(Some(&path), |_| None).unwrap_err();
        assert!(format!("{err:#}").contains("public_url"), "{err:#}");
        std::fs::write(
            &path,
            "public_url = \"https://kontor.example.de/crm\"\n[retention]\nevents = \"a month\"\n",
        )
        .unwrap();
        let err = Config::load(Some(&path), |_| None).unwrap_err();
        assert!(format!("{err:#}").contains("retention.events"), "{err:#}");
        std::fs::write(&path, "public_url = \"https://kontor.example.de/crm\"\n").unwrap();
        assert_eq!(
            Config::load(Some(&path), |_| None).unwrap().public_url,
            "https://kontor.example.de/crm"
        );
    }

    #[test]
    fn public_url_follows_listen_unless_set() {
        let env = |listen: &'static str| {
            move |k: &str| (k == "KONTOR_LISTEN").then(|| listen.to_string())
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kontor.toml");
        std::fs::write(&path, "").unwrap();
        let mut config = Config::load(Some(&path), env("0.0.0.0:9000")).unwrap();
        assert_eq!(config.public_url, "http://127.0.0.1:9000");
        config.set_listen("[::]:9001".into()).unwrap();
        assert_eq!(config.public_url, "http://[::1]:9001");
        config.set_listen("kontor.internal:9002".into()).unwrap();
        assert_eq!(config.public_url, "http://kontor.internal:9002");
        assert_eq!(Config::default().public_url, "http://127.0.0.1:8080");

        std::fs::write(&path, "public_url = \"https://kontor.example.de\"\n").unwrap();
        let mut config = Config::load(Some(&path), env("0.0.0.0:9000")).unwrap();
        config.set_listen("127.0.0.1:9003".into()).unwrap();
        assert_eq!(config.listen, "127.0.0.1:9003");
        assert_eq!(config.public_url, "https://kontor.example.de");
    }

    #[test]
    fn plugin_limits_are_parsed_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kontor.toml");
        std::fs::write(
            &path,
            "[plugins.defaults]\ndeadline = \"500ms\"\n[plugin.lead-scoring]\nmemory = \"32MiB\"\n[plugin.lead-scoring.config]\ngrade_a = 60\n",
        )
        .unwrap();
        let config = Config::load(Some(&path), |_| None).unwrap();
        let (named, defaults) = config.plugin_settings().unwrap();
        assert_eq!(defaults.deadline, std::time::Duration::from_millis(500));
        let scoring = &named["lead-scoring"];
        assert_eq!(scoring.memory, 32 << 20);
        assert_eq!(scoring.deadline, std::time::Duration::from_millis(500));
        assert_eq!(scoring.config, serde_json::json!({"grade_a": 60}));

        for (text, expected) in [
            (
                "[plugin.x]\nmemory = \"128MiB\"\n",
                "plugin.x.memory is larger than plugins.max_memory (64 MiB)",
            ),
            (
                "[plugins.defaults]\ndeadline = \"90s\"\n",
                "plugins.defaults.deadline must be shorter than engine.lease_seconds (60s)",
            ),
            (
                "[plugin.x]\nmax_output = \"4 parsecs\"\n",
                "plugin.x.max_output: `parsecs`",
            ),
            (
                "[plugin.x]\ndeadline = \"soon\"\n",
                "plugin.x.deadline: `soon`",
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = format!("{:#}", Config::load(Some(&path), |_| None).unwrap_err());
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
