//! A step plugin for the sandbox tests. `input.do` chooses what it does.

use kontor_sdk::{
    Error, Info, Invocation, Step, Value, config, export_step, http, json, kv, log, secrets,
};

struct Hostile;

impl Step for Hostile {
    type Config = Value;
    type Input = Value;
    type Output = Value;

    fn info() -> Info {
        Info::new("hostile", "0.1.0")
            .description("Misbehaves on request")
            .input_schema(json!({
                "type": "object",
                "required": ["do"],
                "properties": {"do": {"type": "string"}}
            }))
    }

    fn run(invocation: &Invocation, config: Value, input: Value) -> Result<Value, Error> {
        match input["do"].as_str().unwrap_or_default() {
            "echo" => Ok(
                json!({"input": input, "config": config, "attempt": invocation.attempt,
                                "run_id": invocation.run_id, "step": invocation.step}),
            ),
            "nothing" => Ok(json!({})),
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "allocate" => {
                let mut blocks = Vec::new();
                loop {
                    blocks.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&blocks);
                }
            }
            "panic" => panic!("the plugin gave up: {}", input["why"]),
            "big-output" => {
                let megabytes = input["megabytes"].as_u64().unwrap_or(100) as usize;
                Ok(json!({"blob": "x".repeat(megabytes << 20)}))
            }
            "log" => {
                println!("to stdout: Grüße");
                eprintln!("to stderr: {}", input["text"]);
                log::info_with("structured", &[("kunde", "Müller GmbH")]);
                Ok(json!({"logged": true}))
            }
            "flood" => {
                for i in 0..20_000 {
                    println!("line {i} of a flood of output");
                }
                Ok(json!({"flooded": true}))
            }
            "retryable" => Err(Error::retryable(format!(
                "ERP unavailable (attempt {})",
                invocation.attempt
            ))),
            "succeed-on" => {
                let at = input["attempt"].as_u64().unwrap_or(3) as u32;
                if invocation.attempt < at {
                    Err(Error::retryable(format!(
                        "not yet (attempt {})",
                        invocation.attempt
                    )))
                } else {
                    Ok(json!({"succeeded_on": invocation.attempt}))
                }
            }
            "fatal" => Err(Error::fatal("the customer does not exist")),
            "invalid" => Err(Error::invalid_input("`email` is not an address")),
            "bad-json" => Ok(Value::String("x".into())),
            // Capabilities, used as an attacker would.
            "http" => {
                let mut request = http::Request::new(
                    input["method"].as_str().unwrap_or("GET"),
                    input["url"].as_str().unwrap_or_default(),
                );
                if let Some(headers) = input["headers"].as_object() {
                    for (name, value) in headers {
                        request = request.header(name, value.as_str().unwrap_or_default());
                    }
                }
                let response = request.send()?;
                Ok(json!({
                    "status": response.status,
                    "body": response.text(),
                    "url": response.url,
                    "bytes": response.body.len(),
                }))
            }
            // Tries the request and reports the error instead of failing: the host must
            // fail the step anyway when the request was refused.
            "http-swallow" => {
                let result = http::Request::get(input["url"].as_str().unwrap_or_default()).send();
                Ok(json!({"swallowed": result.err().map(|e| e.to_string())}))
            }
            "secret" => {
                let name = input["name"].as_str().unwrap_or_default();
                let value = secrets::get(name)?;
                Ok(json!({"length": value.len()}))
            }
            // Tries to leak a secret through every channel the host records.
            "leak-secret" => {
                let value = secrets::get(input["name"].as_str().unwrap_or_default())?;
                println!("stdout: {value}");
                eprintln!("stderr: {value}");
                log::info_with(&format!("log: {value}"), &[("token", &value)]);
                let url = format!(
                    "{}?token={value}",
                    input["url"].as_str().unwrap_or_default()
                );
                let _ = http::Request::get(url).send();
                Err(Error::fatal(format!("failed with token {value}")))
            }
            "config" => Ok(json!({"all": config::all(), "region": config::get("region")})),
            "kv" => {
                for (key, value) in input["set"].as_object().into_iter().flatten() {
                    kv::set(key, value.as_str().unwrap_or_default().as_bytes())?;
                }
                let mut read = serde_json::Map::new();
                for key in input["get"].as_array().into_iter().flatten() {
                    let key = key.as_str().unwrap_or_default();
                    let value = kv::get(key)?.map(|v| String::from_utf8_lossy(&v).into_owned());
                    read.insert(key.into(), json!(value));
                }
                Ok(Value::Object(read))
            }
            other => Err(Error::invalid_input(format!("unknown `do`: {other}"))),
        }
    }
}

export_step!(Hostile);
