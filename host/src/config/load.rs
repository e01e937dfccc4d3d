//! Where a configuration comes from: the file (`--config FILE`, or `kontor.toml` in the
//! working directory), then the `KONTOR_*` variables over it; relative paths of a file
//! are its folder's.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{Config, Redacted, public_url_for};

/// Environment variables that override the file, and the key each one sets.
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("KONTOR_LISTEN", "listen"),
    ("KONTOR_PUBLIC_URL", "public_url"),
    ("KONTOR_DATABASE_URL", "database_url"),
    ("KONTOR_WORKFLOWS_DIR", "workflows_dir"),
    ("KONTOR_PLUGINS_DIR", "plugins_dir"),
    ("KONTOR_PLUGINS_CACHE_DIR", "plugins.cache_dir"),
    ("KONTOR_HTTP_MAX_CONNECTIONS", "http.max_connections"),
    ("KONTOR_HTTP_MAX_REQUESTS", "http.max_requests"),
    ("KONTOR_HTTP_HEADER_TIMEOUT", "http.header_timeout"),
    ("KONTOR_HTTP_REQUEST_TIMEOUT", "http.request_timeout"),
    ("KONTOR_HTTP_WRITE_TIMEOUT", "http.write_timeout"),
    ("KONTOR_HTTP_METRICS", "http.metrics"),
    ("KONTOR_HTTP_RATE_LIMITS_API", "http.rate_limits.api"),
    ("KONTOR_HTTP_RATE_LIMITS_PUBLIC", "http.rate_limits.public"),
    ("KONTOR_ENGINE_WORKERS", "engine.workers"),
    ("KONTOR_ENGINE_BATCH_SIZE", "engine.batch_size"),
    ("KONTOR_ENGINE_LEASE_SECONDS", "engine.lease_seconds"),
    ("KONTOR_ENGINE_POLL_INTERVAL_MS", "engine.poll_interval_ms"),
    (
        "KONTOR_ENGINE_MAX_STEPS_PER_RUN",
        "engine.max_steps_per_run",
    ),
    (
        "KONTOR_ENGINE_EXPRESSION_BUDGET",
        "engine.expression_budget",
    ),
    (
        "KONTOR_ENGINE_MAX_WORKFLOW_FILE",
        "engine.max_workflow_file",
    ),
    ("KONTOR_RETENTION_FINISHED_RUNS", "retention.finished_runs"),
    ("KONTOR_RETENTION_EVENTS", "retention.events"),
    ("KONTOR_SECRETS_MASTER_KEY_FILE", "secrets.master_key_file"),
    ("KONTOR_ERP_CONNECTOR", "erp.connector"),
    ("KONTOR_LOG_FORMAT", "log.format"),
    ("KONTOR_LOG_LEVEL", "log.level"),
    ("KONTOR_TESTING_MANUAL_CLOCK", "testing.manual_clock"),
    ("KONTOR_TESTING_CLOCK_START", "testing.clock_start"),
    (
        "KONTOR_TESTING_CRASH_AFTER_SEND",
        "testing.crash_after_send",
    ),
];

impl Config {
    /// Loads `path` (if given, it must exist; otherwise `kontor.toml` if present) and
    /// applies `KONTOR_*` overrides from `env`.
    pub fn load(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Config> {
        let (text, origin, file) = match path {
            Some(p) => (
                std::fs::read_to_string(p)
                    .with_context(|| format!("reading config file {}", p.display()))?,
                p.display().to_string(),
                Some(p),
            ),
            None if Path::new("kontor.toml").is_file() => (
                std::fs::read_to_string("kontor.toml").context("reading kontor.toml")?,
                "kontor.toml".to_string(),
                Some(Path::new("kontor.toml")),
            ),
            None => (String::new(), "defaults".to_string(), None),
        };
        let mut table: toml::Table =
            toml::from_str(&text).with_context(|| format!("parsing {origin}"))?;
        let mut from_env = Vec::new();
        for (var, key) in ENV_OVERRIDES {
            if let Some(value) = env(var) {
                set_key(&mut table, key, &value);
                from_env.push(*key);
            }
        }
        let public_url_set = table.contains_key("public_url");
        let mut config: Config = toml::Value::Table(table)
            .try_into()
            .with_context(|| format!("invalid configuration ({origin} and KONTOR_* variables)"))?;
        if let Some(folder) = file.and_then(Path::parent) {
            config.resolve_paths_against(folder, &from_env);
        }
        config.master_key = env("KONTOR_MASTER_KEY").map(Redacted);
        config.public_url_follows_listen = !public_url_set;
        if config.public_url_follows_listen {
            config.public_url = public_url_for(&config.listen);
        }
        config.validate()?;
        Ok(config)
    }

    /// Makes the relative paths of a configuration file — written in it, or defaults it
    /// leaves — relative to the file's folder, so `kontor --config /srv/kontor/kontor.toml
    /// <command>` works from any folder. A path from a `KONTOR_*` variable (`skip`) stays
    /// relative to the working directory, as the shell that set it sees it.
    fn resolve_paths_against(&mut self, folder: &Path, skip: &[&str]) {
        if folder.as_os_str().is_empty() {
            return;
        }
        let resolve = |key: &str, path: &mut PathBuf| {
            if !skip.contains(&key) && path.is_relative() {
                *path = folder.join(&*path);
            }
        };
        resolve("workflows_dir", &mut self.workflows_dir);
        resolve("plugins_dir", &mut self.plugins_dir);
        resolve("plugins.cache_dir", &mut self.plugins.cache_dir);
        resolve("secrets.master_key_file", &mut self.secrets.master_key_file);
        if !skip.contains(&"database_url")
            && let Some(rest) = self.database_url.strip_prefix("sqlite://")
        {
            let file = rest.split('?').next().unwrap_or_default();
            if !file.is_empty() && file != ":memory:" && Path::new(file).is_relative() {
                self.database_url = format!("sqlite://{}", folder.join(rest).display());
            }
        }
    }
}

/// Sets a dotted key from an environment string, typed as TOML would read it (numbers and
/// booleans), falling back to a string.
fn set_key(table: &mut toml::Table, key: &str, raw: &str) {
    let value: toml::Value = raw
        .parse::<i64>()
        .map(toml::Value::Integer)
        .or_else(|_| raw.parse::<bool>().map(toml::Value::Boolean))
        .unwrap_or_else(|_| toml::Value::String(raw.to_string()));
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().unwrap_or(key);
    let mut current = table;
    for part in parts {
        let entry = current
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        current = entry.as_table_mut().expect("just made a table");
    }
    // A string key (like a path or URL) stays a string even if it looks like a number.
    let value = match (last, &value) {
        (
            "listen" | "database_url" | "workflows_dir" | "plugins_dir" | "format" | "level"
            | "clock_start" | "cache_dir",
            v,
        ) if !v.is_str() => toml::Value::String(raw.to_string()),
        _ => value,
    };
    current.insert(last.to_string(), value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn unknown_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kontor.toml");
        std::fs::write(&path, "listen = \"0.0.0.0:9000\"\n[engine]\nworkerz = 3\n").unwrap();
        let err = Config::load(Some(&path), |_| None).unwrap_err();
        assert!(format!("{err:#}").contains("workerz"), "{err:#}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kontor.toml");
        std::fs::write(&path, "listen = \"0.0.0.0:9000\"\n[engine]\nworkers = 3\n").unwrap();
        let env: HashMap<&str, &str> = [
            ("KONTOR_ENGINE_WORKERS", "5"),
            ("KONTOR_TESTING_MANUAL_CLOCK", "true"),
            ("KONTOR_ERP_CONNECTOR", "erp-fixture"),
        ]
        .into_iter()
        .collect();
        let config = Config::load(Some(&path), |k| env.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(config.listen, "0.0.0.0:9000");
        assert_eq!(config.engine.workers, 5);
        assert!(config.testing.manual_clock);
        assert_eq!(config.erp.connector.as_deref(), Some("erp-fixture"));
        assert_eq!(config.erp.overview_cache, "60s");
        // A path the file leaves at its default is the file's folder's.
        assert_eq!(
            config.database_url,
            format!("sqlite://{}/data/kontor.db", dir.path().display())
        );
    }

    #[test]
    fn relative_paths_of_a_file_are_its_folders() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kontor.toml");
        std::fs::write(
            &path,
            "database_url = \"sqlite://db/k.db?mode=rwc\"\nworkflows_dir = \"flows\"\n\
             plugins_dir = \"/opt/kontor/plugins\"\n[secrets]\nmaster_key_file = \"keys/master.key\"\n",
        )
        .unwrap();
        let env: HashMap<&str, &str> = [("KONTOR_PLUGINS_CACHE_DIR", "cache")].into();
        let config = Config::load(Some(&path), |k| env.get(k).map(|v| v.to_string())).unwrap();
        let folder = dir.path();
        assert_eq!(config.workflows_dir, folder.join("flows"));
        assert_eq!(config.plugins_dir, PathBuf::from("/opt/kontor/plugins"));
        assert_eq!(
            config.secrets.master_key_file,
            folder.join("keys/master.key")
        );
        assert_eq!(
            config.database_url,
            format!("sqlite://{}/db/k.db?mode=rwc", folder.display())
        );
        // From a variable: as the shell that set it sees it.
        assert_eq!(config.plugins.cache_dir, PathBuf::from("cache"));
        // Without a file, everything stays relative to the working directory.
        let config = Config::load(None, |_| None).unwrap();
        assert_eq!(config.workflows_dir, PathBuf::from("workflows"));
    }
}
