//! Host-side bindings of the `step` world of the contract (`sdk/wit/plugin.wit`), as
//! wasmtime generates them. Every plugin imports these interfaces, so the
//! `erp-connector` bindings ([`crate::connector_bindings`]) reuse them instead of
//! generating a second, incompatible copy.

// Generated code: its items are documented by the WIT file, not here.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    world: "step",
    path: "../../sdk/wit",
    exports: { default: async },
    imports: {
        "kontor:plugin/http.send": async,
        "kontor:plugin/kv.get": async,
        "kontor:plugin/secrets.get": async,
    },
});
