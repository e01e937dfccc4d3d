//! The step contract as a future major version might look: same shape, version 1.0.0.

wit_bindgen::generate!({ world: "step", path: "wit" });

use exports::kontor::plugin::handler::{Guest, Invocation, PluginError, PluginInfo};

struct Future;

impl Guest for Future {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "future-contract".into(),
            version: "1.0.0".into(),
            description: String::new(),
            config_schema: None,
            input_schema: None,
            output_schema: None,
            hosts: Vec::new(),
            secrets: Vec::new(),
        }
    }

    fn run(_: Invocation, _: String, _: String) -> Result<String, PluginError> {
        Ok("{}".into())
    }
}

export!(Future);
