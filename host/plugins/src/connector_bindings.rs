//! Host-side bindings of the `erp-connector` world, as wasmtime generates them. Its
//! imports are the `step` world's (module `bindings`, reused); its exports are the typed
//! connector functions and the ERP record types they exchange (customers, purchases,
//! orders), which is why this module is public.

// Generated code: its items are documented by the WIT file, not here.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    world: "erp-connector",
    path: "../../sdk/wit",
    exports: { default: async },
    with: {
        "kontor:plugin/types": crate::bindings::kontor::plugin::types,
        "kontor:plugin/log": crate::bindings::kontor::plugin::log,
        "kontor:plugin/config": crate::bindings::kontor::plugin::config,
        "kontor:plugin/secrets": crate::bindings::kontor::plugin::secrets,
        "kontor:plugin/kv": crate::bindings::kontor::plugin::kv,
        "kontor:plugin/http": crate::bindings::kontor::plugin::http,
    },
    additional_derives: [serde::Serialize, serde::Deserialize],
});
