//! The plugins of one directory, by name: `NAME.wasm` is plugin `NAME`.
//!
//! [`PluginRegistry::refresh`] loads new and changed files and forgets removed ones; a
//! call that holds an `Arc<Plugin>` finishes on the code it started with.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use crate::{Plugin, PluginRuntime, PluginSettings};

/// Why a plugin cannot be called.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RegistryError {
    /// There is no `NAME.wasm` in the plugin directory.
    #[error(
        "there is no plugin `{name}` (no {name}.wasm in the plugins folder; build it with `kontor plugin build {name}`)"
    )]
    NotFound {
        /// The plugin a workflow named.
        name: String,
    },
    /// The name cannot be a plugin's: it is not one path segment of the allowed characters.
    #[error("`{name}` is not a plugin name: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The file exists, but it did not load (or no longer loads after a change).
    #[error("plugin `{name}` cannot be loaded: {message}")]
    Invalid {
        /// The plugin a workflow named.
        name: String,
        /// The load error, as `kontor plugin inspect` would show it.
        message: String,
    },
}

type Fingerprint = (u64, Option<SystemTime>);

/// Longest plugin name.
pub const MAX_NAME_LENGTH: usize = 64;

/// Whether `name` can be a plugin's: one path segment of ASCII letters, digits, `-` and
/// `_`, starting with a letter or digit, at most [`MAX_NAME_LENGTH`] long. Every name that
/// becomes a path (`NAME.wasm` in the plugins folder) is checked first, so no name can
/// reach outside the folder.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".into());
    }
    if name.len() > MAX_NAME_LENGTH {
        return Err(format!("it is longer than {MAX_NAME_LENGTH} characters"));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err("it must start with a letter or a digit".into());
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        Some(c) => Err(format!(
            "{c:?} is not allowed (letters, digits, `-` and `_` are)"
        )),
        None => Ok(()),
    }
}

struct Entry {
    fingerprint: Fingerprint,
    plugin: Result<Arc<Plugin>, String>,
}

/// The plugins of one directory by name, each loaded with its settings and reloaded
/// when its file or its configuration changes. Shared by the engine, the API and the
/// CLI; [`PluginRegistry::get`] hands out an `Arc<Plugin>` a call keeps to its end.
pub struct PluginRegistry {
    runtime: Arc<PluginRuntime>,
    dir: PathBuf,
    settings: HashMap<String, PluginSettings>,
    defaults: PluginSettings,
    /// Configurations set through the API: they replace the configured `config`.
    overrides: RwLock<HashMap<String, serde_json::Value>>,
    /// Stored configurations that did not fit, so they are reported once, not every pass.
    rejected: RwLock<HashMap<String, Option<serde_json::Value>>>,
    entries: RwLock<BTreeMap<String, Entry>>,
}

impl PluginRegistry {
    /// A registry over `dir`; `settings` holds per-plugin limits and configuration,
    /// `defaults` applies to plugins not named there.
    pub fn new(
        runtime: Arc<PluginRuntime>,
        dir: impl Into<PathBuf>,
        settings: HashMap<String, PluginSettings>,
        defaults: PluginSettings,
    ) -> PluginRegistry {
        PluginRegistry {
            runtime,
            dir: dir.into(),
            settings,
            defaults,
            overrides: RwLock::new(HashMap::new()),
            rejected: RwLock::new(HashMap::new()),
            entries: RwLock::new(BTreeMap::new()),
        }
    }

    /// The directory it loads `NAME.wasm` files from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The runtime its plugins are loaded on, to load or inspect other files on it.
    pub fn runtime(&self) -> &Arc<PluginRuntime> {
        &self.runtime
    }

    /// Where plugin `name` is expected. Only for names [`check_name`] accepts.
    pub fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.wasm"))
    }

    /// The settings plugin `name` gets: its own or the defaults, with the configuration
    /// set through the API, if any.
    pub fn settings_of(&self, name: &str) -> PluginSettings {
        let mut settings = self
            .settings
            .get(name)
            .cloned()
            .unwrap_or_else(|| self.defaults.clone());
        if let Some(config) = self
            .overrides
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            settings.config = config.clone();
        }
        settings
    }

    /// Configurations stored through the API, applied from the next load on (call before
    /// the first [`PluginRegistry::refresh`]).
    pub fn set_overrides(&self, overrides: HashMap<String, serde_json::Value>) {
        *self.overrides.write().unwrap_or_else(|e| e.into_inner()) = overrides;
    }

    /// Applies the API configurations `stored` (another process may have changed them):
    /// plugins whose configuration differs are reloaded. Returns the names it changed.
    pub async fn sync_overrides(&self, stored: HashMap<String, serde_json::Value>) -> Vec<String> {
        let current = self
            .overrides
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut changed = Vec::new();
        for name in stored.keys().chain(current.keys()) {
            let wanted = stored.get(name).cloned();
            if changed.contains(name) || wanted.as_ref() == current.get(name) {
                continue;
            }
            let known_bad = self
                .rejected
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(name)
                == Some(&wanted);
            if known_bad {
                continue;
            }
            match self.configure(name, wanted.clone()).await {
                Ok(_) => changed.push(name.clone()),
                Err(e) => {
                    tracing::warn!(plugin = %name, error = %e, "stored plugin configuration not applied");
                    self.rejected
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(name.clone(), wanted);
                }
            }
        }
        changed
    }

    /// Whether plugin `name`'s configuration was set through the API.
    pub fn is_overridden(&self, name: &str) -> bool {
        self.overrides
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(name)
    }

    /// Reloads plugin `name` with `config` (`None`: back to the configured one). The
    /// plugin keeps its old configuration if the new one does not fit its schema.
    pub async fn configure(
        &self,
        name: &str,
        config: Option<serde_json::Value>,
    ) -> Result<Arc<Plugin>, RegistryError> {
        check_name(name).map_err(|reason| RegistryError::InvalidName {
            name: name.to_string(),
            reason,
        })?;
        let path = self.path_of(name);
        let meta = std::fs::metadata(&path).map_err(|_| RegistryError::NotFound {
            name: name.to_string(),
        })?;
        let mut settings = self
            .settings
            .get(name)
            .cloned()
            .unwrap_or_else(|| self.defaults.clone());
        if let Some(config) = &config {
            settings.config = config.clone();
        }
        let plugin = self
            .runtime
            .load(name, &path, settings)
            .await
            .map(Arc::new)
            .map_err(|e| RegistryError::Invalid {
                name: name.to_string(),
                message: e.to_string(),
            })?;
        {
            let mut overrides = self.overrides.write().unwrap_or_else(|e| e.into_inner());
            match config {
                Some(config) => overrides.insert(name.to_string(), config),
                None => overrides.remove(name),
            };
        }
        tracing::info!(plugin = %name, "plugin reconfigured");
        self.entries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                name.to_string(),
                Entry {
                    fingerprint: (meta.len(), meta.modified().ok()),
                    plugin: Ok(plugin.clone()),
                },
            );
        Ok(plugin)
    }

    /// Loads new and changed `*.wasm` files of the directory and forgets removed ones.
    /// Returns the names whose state changed, with the problem if one failed to load.
    pub async fn refresh(&self) -> Vec<(String, Option<String>)> {
        let mut found: BTreeMap<String, Fingerprint> = BTreeMap::new();
        // A folder that cannot be read right now (out of file descriptors, say) is not an
        // empty one: keep every plugin as it is until a scan succeeds.
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "plugin folder scan failed; keeping the plugins loaded before");
                return Vec::new();
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    tracing::warn!(dir = %self.dir.display(), error = %e, "plugin folder scan failed; keeping the plugins loaded before");
                    return Vec::new();
                }
            };
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("wasm") {
                continue;
            }
            let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            if let Err(reason) = check_name(name) {
                tracing::warn!(file = %path.display(), %reason, "ignored: not a plugin name");
                continue;
            }
            match entry.metadata() {
                Ok(meta) => {
                    found.insert(name.to_string(), (meta.len(), meta.modified().ok()));
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "plugin folder scan failed; keeping the plugins loaded before");
                    return Vec::new();
                }
            }
        }
        let stale: Vec<(String, Fingerprint)> = {
            let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
            found
                .iter()
                .filter(|(name, print)| entries.get(*name).map(|e| &e.fingerprint) != Some(print))
                .map(|(n, p)| (n.clone(), *p))
                .collect()
        };
        let mut changed = Vec::new();
        for (name, fingerprint) in stale {
            let plugin = self
                .runtime
                .load(&name, &self.path_of(&name), self.settings_of(&name))
                .await
                .map(Arc::new)
                .map_err(|e| e.to_string());
            match &plugin {
                Ok(p) => {
                    tracing::info!(plugin = %name, version = %p.info().version, "plugin loaded")
                }
                Err(e) => tracing::error!(plugin = %name, error = %e, "plugin cannot be loaded"),
            }
            changed.push((name.clone(), plugin.as_ref().err().cloned()));
            self.entries
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(
                    name,
                    Entry {
                        fingerprint,
                        plugin,
                    },
                );
        }
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<String> = entries
            .keys()
            .filter(|n| !found.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            tracing::info!(plugin = %name, "plugin removed");
            entries.remove(&name);
            changed.push((name, None));
        }
        changed
    }

    /// The loaded plugin `name`.
    pub fn get(&self, name: &str) -> Result<Arc<Plugin>, RegistryError> {
        check_name(name).map_err(|reason| RegistryError::InvalidName {
            name: name.to_string(),
            reason,
        })?;
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        match entries.get(name) {
            None => Err(RegistryError::NotFound {
                name: name.to_string(),
            }),
            Some(Entry {
                plugin: Err(message),
                ..
            }) => Err(RegistryError::Invalid {
                name: name.to_string(),
                message: message.clone(),
            }),
            Some(Entry {
                plugin: Ok(plugin), ..
            }) => Ok(plugin.clone()),
        }
    }

    /// Every plugin file seen, with its plugin or its load problem.
    pub fn all(&self) -> BTreeMap<String, Result<Arc<Plugin>, String>> {
        self.entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(n, e)| (n.clone(), e.plugin.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn plugin_names_are_one_path_segment() {
        for name in [
            "lead-scoring",
            "erp_fixture",
            "odata-erp",
            "p1",
            "conformance-python",
        ] {
            assert_eq!(check_name(name), Ok(()), "{name}");
        }
        for name in [
            "",
            "../outside",
            "..",
            "a/b",
            "a\\b",
            ".hidden",
            "-flag",
            "name.wasm",
            "Müller",
            "a b",
            "x\0",
            &"x".repeat(65),
        ] {
            assert!(check_name(name).is_err(), "{name:?} must be refused");
        }
    }
}
