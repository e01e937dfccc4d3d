//! Asks for more than it is granted in the tests: it must not load, and the error must
//! list exactly what to grant.

use kontor_sdk::{Error, Info, Invocation, Step, Value, export_step, json};

struct Greedy;

impl Step for Greedy {
    type Config = Value;
    type Input = Value;
    type Output = Value;

    fn info() -> Info {
        Info::new("greedy", "0.1.0")
            .host("https://erp.example.com")
            .secret("erp-token")
            .kv()
    }

    fn run(_: &Invocation, _: Value, _: Value) -> Result<Value, Error> {
        Ok(json!({}))
    }
}

export_step!(Greedy);
