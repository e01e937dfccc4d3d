//! Which components this host runs: the contract version it implements, the two worlds
//! a plugin can implement, and the check of a component's exports against them (done
//! before anything of the component runs).

use std::path::Path;

use crate::LoadError;

/// The contract version this host implements.
pub const CONTRACT_VERSION: &str = "0.3.0";
/// The interface a step plugin exports, without its version.
pub(crate) const HANDLER: &str = "kontor:plugin/handler";
/// The interface an ERP connector exports, without its version.
pub(crate) const CONNECTOR: &str = "kontor:plugin/connector";
/// Contract versions this host runs: (major, highest minor). While the major is 0, a
/// minor is a major: only components built against exactly 0.3 are accepted.
const SUPPORTED: &[(u64, u64)] = &[(0, 3)];

/// Which world a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum World {
    /// A workflow step: one `run` from JSON input to JSON output (`plugin:` in a workflow).
    Step,
    /// An ERP connector: the typed functions of [`crate::CONNECTOR_FUNCTIONS`]
    /// (`connector:` and `call:` in a workflow).
    ErpConnector,
}

impl World {
    /// The world's name in the WIT file, as messages and `kontor plugin inspect` show it.
    pub fn name(self) -> &'static str {
        match self {
            World::Step => "step",
            World::ErpConnector => "erp-connector",
        }
    }
}

/// True when `bytes` start with the header of a component (not a core module).
pub(crate) fn is_component_binary(bytes: &[u8]) -> bool {
    // Magic, then version 0x0d and layer 0x01 for components (core modules: 1, 0).
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[6..8] == [0x01, 0x00]
}

/// Checks that `exports` contain the handler or the connector of a supported contract
/// version; returns the world.
pub(crate) fn check_contract(path: &Path, exports: &[String]) -> Result<World, LoadError> {
    let found = exports.iter().find_map(|e| {
        [(HANDLER, World::Step), (CONNECTOR, World::ErpConnector)]
            .iter()
            .find_map(|(i, w)| e.strip_prefix(&format!("{i}@")).map(|v| (v, *w)))
    });
    let Some((version, world)) = found else {
        return Err(LoadError::WrongWorld {
            path: path.into(),
            exports: if exports.is_empty() {
                "nothing".into()
            } else {
                exports.join(", ")
            },
        });
    };
    let mut parts = version.split('.').map(|p| p.parse::<u64>().ok());
    let (major, minor) = (parts.next().flatten(), parts.next().flatten());
    let supported = SUPPORTED.iter().any(|(ma, mi)| {
        Some(*ma) == major && minor.is_some_and(|m| m <= *mi && (*ma > 0 || m == *mi))
    });
    if !supported {
        return Err(LoadError::IncompatibleContract {
            path: path.into(),
            found: version.to_string(),
        });
    }
    Ok(world)
}
