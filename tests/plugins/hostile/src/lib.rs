//! A step plugin for the sandbox tests. `input.do` chooses what it does.

use kontor_sdk::{Error, Info, Invocation, Step, Value, export_step, json, log};

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
            other => Err(Error::invalid_input(format!("unknown `do`: {other}"))),
        }
    }
}

export_step!(Hostile);
