//! What `kontor plugin inspect` shows about a component file: its world, contract
//! version, exports and imports, its own description, and whether its grants and
//! configuration would let it load. Unlike [`PluginRuntime::load`], inspecting never
//! fails because the plugin is misconfigured: that is what it reports.

use std::path::Path;
use std::sync::Arc;

use crate::contract::{CONNECTOR, HANDLER};
use crate::{Grants, LoadError, PluginInfo, PluginRuntime, PluginSettings};

/// The shape of a component file: what `kontor plugin inspect` prints.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Inspection {
    /// `step` or `erp-connector` when the component implements that world of a
    /// supported contract.
    pub world: Option<String>,
    /// The contract version the component was built against, if it exports the step
    /// handler or the connector interface.
    pub contract: Option<String>,
    /// What the component exports: interfaces by name, other items with their kind.
    pub exports: Vec<String>,
    /// What the component imports, by name; Kontor links only the contract and WASI.
    pub imports: Vec<String>,
    /// The component's own description, when it got far enough to answer `describe()`.
    pub info: Option<PluginInfo>,
    /// Why it cannot be loaded, if it cannot.
    pub problem: Option<String>,
    /// Size of the component file in bytes.
    pub size: u64,
    /// What the configuration grants it.
    pub granted: Option<GrantsView>,
    /// Requested capabilities that are not granted, as `grants` entries.
    pub missing: Vec<String>,
}

/// Grants as `kontor plugin inspect` shows them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GrantsView {
    /// Granted origins, as `scheme://host:port`.
    pub http: Vec<String>,
    /// Internal address ranges it may reach anyway, in CIDR notation.
    pub private_networks: Vec<String>,
    /// Secret names it may read.
    pub secrets: Vec<String>,
    /// Whether it has its key-value store.
    pub kv: bool,
}

impl From<&Grants> for GrantsView {
    fn from(g: &Grants) -> Self {
        GrantsView {
            http: g.http.iter().map(ToString::to_string).collect(),
            private_networks: g.private_networks.iter().map(ToString::to_string).collect(),
            secrets: g.secrets.clone(),
            kv: g.kv,
        }
    }
}

impl PluginRuntime {
    /// Describes the component at `path` without requiring that it loads; `settings`
    /// are the plugin's configured ones, so grants and configuration are judged too.
    pub async fn inspect(
        self: &Arc<Self>,
        path: &Path,
        settings: PluginSettings,
    ) -> Result<Inspection, LoadError> {
        let bytes = std::fs::read(path).map_err(|error| LoadError::Read {
            path: path.into(),
            error,
        })?;
        let component = self.component(path, &bytes)?;
        let (exports, imports) = self.shape(&component);
        let contract = exports.iter().find_map(|e| {
            [HANDLER, CONNECTOR]
                .iter()
                .find_map(|i| e.strip_prefix(&format!("{i}@")).map(str::to_string))
        });
        let mut inspection = Inspection {
            world: None,
            contract,
            exports,
            imports,
            info: None,
            problem: None,
            size: bytes.len() as u64,
            granted: Some(GrantsView::from(&settings.grants)),
            missing: Vec::new(),
        };
        match self.load_described("inspect", path, settings).await {
            Ok(plugin) => {
                inspection.world = Some(plugin.world.name().into());
                inspection.info = Some(plugin.info.clone());
                if let Err(e) = plugin.check_grants() {
                    if let LoadError::Ungranted { missing, .. } = &e {
                        inspection.missing = missing.clone();
                    }
                    inspection.problem = Some(e.to_string());
                } else if let Err(e) = plugin.check_config() {
                    inspection.problem = Some(e.to_string());
                }
            }
            Err(e) => inspection.problem = Some(e.to_string()),
        }
        Ok(inspection)
    }
}
