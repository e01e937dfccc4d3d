//! The conformance step, in Rust. `tests/plugins/python/conformance/app.py` is the same
//! step in Python; `tests/tests/conformance.rs` runs the same cases against both.

use kontor_sdk::{Error, Info, Invocation, Step, Value, config, export_step, json, kv, log};

struct Conformance;

impl Step for Conformance {
    type Config = Value;
    type Input = Value;
    type Output = Value;

    fn info() -> Info {
        Info::new("conformance-rust", "1.0.0")
            .description("Greets in German or English and counts greetings per name")
            .config_schema(json!({
                "type": "object",
                "properties": {"bonus": {"type": "integer"}}
            }))
            .input_schema(json!({
                "type": "object",
                "required": ["name", "locale"],
                "properties": {
                    "name": {"type": "string"},
                    "locale": {"enum": ["de", "en"]},
                    "points": {"type": "integer"}
                }
            }))
            .kv()
    }

    fn run(invocation: &Invocation, config: Value, input: Value) -> Result<Value, Error> {
        let name = input["name"].as_str().unwrap_or_default();
        let locale = input["locale"].as_str().unwrap_or_default();
        let key = format!("greeted/{name}");
        if name.is_empty() {
            return Err(Error::invalid_input("`name` must not be empty"));
        }
        if name == "fatal" {
            return Err(Error::fatal("Kunde gesperrt: Müller & Söhne"));
        }
        if name == "retry" && invocation.attempt < 2 {
            // Written, then discarded with the failed attempt.
            kv::set(&key, b"100")?;
            return Err(Error::retryable("the ERP is busy, try again"));
        }
        let count: i64 = kv::get(&key)?
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
            + 1;
        kv::set(&key, count.to_string().as_bytes())?;
        log::info_with("greeted", &[("locale", locale)]);
        let greeting = if locale == "de" {
            format!("Grüß Gott, {name}!")
        } else {
            format!("Hello, {name}!")
        };
        let bonus = config["bonus"].as_i64().unwrap_or(0);
        Ok(json!({
            "greeting": greeting,
            "total": input["points"].as_i64().unwrap_or(0) + bonus,
            "count": count,
            "attempt": invocation.attempt,
            "step": invocation.step,
            "bonus_from_import": config::get("bonus"),
        }))
    }
}

export_step!(Conformance);
