//! A loaded plugin ([`Plugin`]): its pre-instantiated exports, its settings, what it
//! said about itself in `describe()`, and the checks made once at load — grants against
//! what it asks for, configuration against its schema. Calling it is in `call`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value as Json;

use crate::contract::World;
use crate::instantiate::instantiate;
use crate::sandbox::State;
use crate::services::CallContext;
use crate::{
    LoadError, Origin, PluginInfo, PluginRuntime, PluginSettings, bindings, connector_bindings,
};

/// A loaded component's pre-instantiated exports.
pub(crate) enum Exports {
    Step(bindings::StepPre<State>),
    Connector(connector_bindings::ErpConnectorPre<State>),
}

/// A loaded plugin, ready to be called.
pub struct Plugin {
    pub(crate) name: String,
    pub(crate) path: PathBuf,
    pub(crate) runtime: Arc<PluginRuntime>,
    pub(crate) exports: Exports,
    pub(crate) world: World,
    pub(crate) settings: PluginSettings,
    pub(crate) context: Arc<CallContext>,
    pub(crate) info: PluginInfo,
    pub(crate) config_schema: Option<jsonschema::Validator>,
    pub(crate) input_schema: Option<jsonschema::Validator>,
    pub(crate) output_schema: Option<jsonschema::Validator>,
    pub(crate) size: u64,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("world", &self.world)
            .field("version", &self.info.version)
            .finish()
    }
}

impl Plugin {
    /// The name workflows call it by (its file name without `.wasm`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The component file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What it said about itself in `describe()` at load.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// Whether it is a step plugin or an ERP connector.
    pub fn world(&self) -> World {
        self.world
    }

    /// The limits and configuration it was loaded with (memory capped to the runtime's).
    pub fn settings(&self) -> &PluginSettings {
        &self.settings
    }

    /// Size of the component file in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Fails when the plugin asks for a capability its grants do not give it.
    pub(crate) fn check_grants(&self) -> Result<(), LoadError> {
        let grants = &self.settings.grants;
        let missing = grants.missing(&self.info.hosts, &self.info.secrets, self.info.kv);
        if missing.is_empty() {
            return Ok(());
        }
        let quote = |items: Vec<String>| {
            items
                .iter()
                .map(|i| format!("\"{i}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut http: Vec<String> = grants.http.iter().map(ToString::to_string).collect();
        for host in &self.info.hosts {
            if let Ok(origin) = Origin::parse(host)
                && !http.contains(&origin.to_string())
            {
                http.push(origin.to_string());
            }
        }
        let mut secrets = grants.secrets.clone();
        for secret in &self.info.secrets {
            if !secrets.contains(secret) {
                secrets.push(secret.clone());
            }
        }
        let mut table = Vec::new();
        if !http.is_empty() {
            table.push(format!("http = [{}]", quote(http)));
        }
        if !secrets.is_empty() {
            table.push(format!("secrets = [{}]", quote(secrets)));
        }
        if self.info.kv || grants.kv {
            table.push("kv = true".into());
        }
        Err(LoadError::Ungranted {
            name: self.name.clone(),
            missing,
            suggestion: table.join(", "),
        })
    }

    pub(crate) fn check_config(&self) -> Result<(), LoadError> {
        if let Some(schema) = &self.config_schema
            && let Some(problem) = first_problem(schema, &self.context.config)
        {
            return Err(LoadError::Config {
                name: self.name.clone(),
                message: problem,
            });
        }
        Ok(())
    }

    pub(crate) async fn describe(&self) -> Result<PluginInfo, LoadError> {
        let mut store = self.store();
        let described = async {
            match &self.exports {
                Exports::Step(pre) => {
                    let instance = instantiate(pre, &mut store).await?;
                    instance
                        .kontor_plugin_handler()
                        .call_describe(&mut store)
                        .await
                }
                Exports::Connector(pre) => {
                    let instance = instantiate(pre, &mut store).await?;
                    instance
                        .kontor_plugin_connector()
                        .call_describe(&mut store)
                        .await
                }
            }
        }
        .await;
        let info = described.map_err(|e| {
            let error = self.classify(e, store.data());
            LoadError::Describe {
                name: self.name.clone(),
                message: error.to_string(),
            }
        })?;
        let schema = |which: &str, text: Option<String>| -> Result<Option<Json>, LoadError> {
            text.map(|t| serde_json::from_str(&t))
                .transpose()
                .map_err(|e| LoadError::Describe {
                    name: self.name.clone(),
                    message: format!("its {which} schema is not JSON: {e}"),
                })
        };
        Ok(PluginInfo {
            config_schema: schema("config", info.config_schema)?,
            input_schema: schema("input", info.input_schema)?,
            output_schema: schema("output", info.output_schema)?,
            name: info.name,
            version: info.version,
            description: info.description,
            hosts: info.hosts,
            secrets: info.secrets,
            kv: info.kv,
        })
    }
}

/// The first problem `value` has against `schema`, with the JSON path where it is.
pub fn first_problem(schema: &jsonschema::Validator, value: &Json) -> Option<String> {
    schema.iter_errors(value).next().map(|e| {
        let at = e.instance_path().to_string();
        if at.is_empty() {
            e.to_string()
        } else {
            format!("{at}: {e}")
        }
    })
}
