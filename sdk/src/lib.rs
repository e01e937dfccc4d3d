//! `kontor-sdk`: the guest-side crate for Kontor WebAssembly plugins.
//!
//! Plugin authors will depend on this crate to implement the `kontor:plugin` WIT worlds
//! (`sdk/wit/`) with plain Rust types. The contract and the SDK arrive with the plugin
//! runtime; the crate exists now so the workspace has its final shape.

#![forbid(unsafe_code)]

/// The version of the WIT contract this SDK targets.
pub const CONTRACT_VERSION: &str = "0.1.0";
