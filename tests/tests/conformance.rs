//! One conformance suite, two languages: the same step written in Rust
//! (`tests/plugins/conformance`) and in Python with componentize-py
//! (`tests/plugins/python/conformance`) must behave the same in the real sandbox —
//! description, schemas, output, every error kind, logs, configuration, and key-value
//! writes that commit with the step and vanish with a failed attempt.

use std::sync::Arc;
use std::time::Duration;

use kontor_plugins::{CallError, Grants, Invocation, Plugin, PluginRuntime, PluginSettings};
use kontor_tests::Server;
use serde_json::{Value, json};

/// (file, the name its describe() gives)
const PLUGINS: &[(&str, &str)] = &[
    ("conformance", "conformance-rust"),
    ("conformance-python", "conformance-python"),
];

fn settings() -> PluginSettings {
    PluginSettings {
        config: json!({"bonus": 5}),
        grants: Grants {
            kv: true,
            ..Grants::default()
        },
        // Python's interpreter needs more room and time than a Rust step.
        memory: 128 << 20,
        deadline: Duration::from_secs(10),
        ..PluginSettings::default()
    }
}

async fn load(runtime: &Arc<PluginRuntime>, file: &str) -> Arc<Plugin> {
    let path = kontor_tests::granted_plugins().join(format!("{file}.wasm"));
    Arc::new(
        runtime
            .load(file, &path, settings())
            .await
            .unwrap_or_else(|e| panic!("{file}: {e}")),
    )
}

/// Compiled code shared by these tests: the Python interpreter compiles once.
fn cache_dir() -> std::path::PathBuf {
    kontor_tests::granted_plugins().with_file_name("conformance-cache")
}

fn invocation(attempt: u32) -> Invocation {
    Invocation {
        run_id: "run-1".into(),
        workflow: "greet".into(),
        step: "greet".into(),
        attempt,
    }
}

#[tokio::test]
async fn rust_and_python_plugins_pass_the_same_conformance_cases() {
    let runtime = PluginRuntime::new(&kontor_plugins::RuntimeSettings {
        cache_dir: Some(cache_dir()),
        max_memory: 128 << 20,
        max_instances: 8,
        ..Default::default()
    })
    .unwrap();
    for (file, name) in PLUGINS {
        let plugin = load(&runtime, file).await;
        let info = plugin.info();
        assert_eq!(info.name, *name);
        assert_eq!(info.version, "1.0.0");
        assert!(info.kv, "{name} asks for its key-value store");
        assert_eq!(
            info.input_schema.as_ref().unwrap()["required"],
            json!(["name", "locale"])
        );

        let report = plugin
            .call(
                &invocation(1),
                &json!({"name": "Jürgen", "locale": "de", "points": 10}),
            )
            .await
            .unwrap_or_else(|f| panic!("{name}: {:?}", f.error));
        assert_eq!(
            report.output,
            json!({"greeting": "Grüß Gott, Jürgen!", "total": 15, "count": 1, "attempt": 1,
                   "step": "greet", "bonus_from_import": "5"}),
            "{name}"
        );
        assert_eq!(report.logs.len(), 1, "{name}: {:?}", report.logs);
        assert_eq!(report.logs[0].level, "info");
        assert_eq!(report.logs[0].message, "greeted");
        assert_eq!(report.logs[0].fields, [("locale".into(), "de".into())]);
        assert_eq!(report.kv_writes.len(), 1, "{name}");
        assert_eq!(report.kv_writes[0].key, "greeted/Jürgen");
        assert_eq!(report.kv_writes[0].value.as_deref(), Some(&b"1"[..]));

        let english = plugin
            .call(&invocation(1), &json!({"name": "Ada", "locale": "en"}))
            .await
            .unwrap();
        assert_eq!(english.output["greeting"], "Hello, Ada!", "{name}");
        assert_eq!(english.output["total"], 5, "{name}");

        let error = |input: Value, attempt: u32| {
            let plugin = plugin.clone();
            async move {
                plugin
                    .call(&invocation(attempt), &input)
                    .await
                    .map(|r| r.output)
                    .unwrap_err()
                    .error
            }
        };
        let schema = error(json!({"name": "Ada"}), 1).await;
        assert!(
            matches!(&schema, CallError::InvalidInput(m) if m.contains("locale")),
            "{name}: {schema:?}"
        );
        assert_eq!(
            error(json!({"name": "", "locale": "de"}), 1).await,
            CallError::InvalidInput("`name` must not be empty".into()),
            "{name}"
        );
        assert_eq!(
            error(json!({"name": "fatal", "locale": "de"}), 1).await,
            CallError::Fatal("Kunde gesperrt: Müller & Söhne".into()),
            "{name}"
        );
        assert_eq!(
            error(json!({"name": "retry", "locale": "de"}), 1).await,
            CallError::Retryable("the ERP is busy, try again".into()),
            "{name}"
        );
        let second = plugin
            .call(&invocation(2), &json!({"name": "retry", "locale": "de"}))
            .await
            .unwrap();
        assert_eq!(second.output["attempt"], 2, "{name}");
    }
}

/// Both plugins as `plugin` steps of a real server: the first attempt of `retry` writes
/// 100 to the key-value store and fails; the retry must not see it (count 1), and the
/// next run must see the committed 1 (count 2).
async fn key_value_writes_commit_with_the_step_and_vanish_with_a_failed_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = String::new();
    for (file, _) in PLUGINS {
        config.push_str(&format!(
            "[plugin.{file}]\nmemory = \"128MiB\"\ndeadline = \"4s\"\n[plugin.{file}.config]\nbonus = 1\n[plugin.{file}.grants]\nkv = true\n"
        ));
        std::fs::write(
            dir.path().join(format!("greet-{file}.yaml")),
            format!(
                "name: greet-{file}
steps:
  - id: greet
    plugin: {file}
    input:
      name: ${{input.name}}
      locale: de
    retry:
      max_attempts: 3
      backoff: 100ms
  - id: done
    end:
      output:
        result: ${{steps.greet}}
"
            ),
        )
        .unwrap();
    }
    let granted = kontor_tests::granted_plugins().display().to_string();
    let cache = cache_dir().display().to_string();
    let mut server = Server::prepare(
        dir.path(),
        Some(&format!("[plugins]\nmax_memory = \"128MiB\"\n{config}")),
        &[
            ("KONTOR_PLUGINS_DIR", granted.as_str()),
            ("KONTOR_PLUGINS_CACHE_DIR", cache.as_str()),
        ],
    )
    .unwrap();
    server.launch().unwrap();
    for (file, name) in PLUGINS {
        for expected in [1, 2] {
            let id = server
                .api
                .start_run(&format!("greet-{file}"), &json!({"name": "retry"}))
                .await;
            let run = server.api.finished(&id, Duration::from_secs(30)).await;
            assert_eq!(run["status"], "completed", "{name}: {run}");
            assert_eq!(run["output"]["result"]["count"], expected, "{name}: {run}");
            assert_eq!(run["output"]["result"]["attempt"], 2, "{name}: {run}");
        }
    }
}

kontor::on_both_backends!(key_value_writes_commit_with_the_step_and_vanish_with_a_failed_attempt);
