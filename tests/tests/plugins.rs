//! The plugin sandbox with real compiled components (built by `tests/build.rs`): the
//! contract, limits that contain hostile guests, logs, reload and the code cache.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kontor_plugins::{
    CallError, Invocation, LoadError, Plugin, PluginRegistry, PluginRuntime, PluginSettings,
    RegistryError, RuntimeSettings,
};
use serde_json::{Value, json};

fn component(name: &str) -> PathBuf {
    let file = format!("{name}.wasm");
    let loads = PathBuf::from(env!("KONTOR_TEST_PLUGINS")).join(&file);
    if loads.exists() {
        loads
    } else {
        PathBuf::from(env!("KONTOR_TEST_REFUSED_PLUGINS")).join(file)
    }
}

fn runtime() -> Arc<PluginRuntime> {
    PluginRuntime::new(&RuntimeSettings {
        max_memory: 512 << 20,
        max_instances: 32,
        ..RuntimeSettings::default()
    })
    .unwrap()
}

async fn hostile(settings: PluginSettings) -> Arc<Plugin> {
    Arc::new(
        runtime()
            .load("hostile", &component("hostile"), settings)
            .await
            .unwrap(),
    )
}

fn invocation() -> Invocation {
    Invocation {
        run_id: "run-1".into(),
        workflow: "wf".into(),
        step: "score".into(),
        attempt: 2,
    }
}

async fn call(plugin: &Arc<Plugin>, input: Value) -> Result<Value, CallError> {
    plugin
        .call(&invocation(), &input)
        .await
        .map(|r| r.output)
        .map_err(|f| f.error)
}

#[tokio::test]
async fn a_step_gets_its_invocation_config_and_input_and_returns_json() {
    let plugin = hostile(PluginSettings {
        config: json!({"region": "Süd"}),
        ..PluginSettings::default()
    })
    .await;
    assert_eq!(plugin.info().name, "hostile");
    assert_eq!(
        plugin.info().input_schema.as_ref().unwrap()["required"],
        json!(["do"])
    );
    let report = plugin
        .call(
            &invocation(),
            &json!({"do": "echo", "kunde": "Müller & Söhne"}),
        )
        .await
        .unwrap();
    assert_eq!(report.output["input"]["kunde"], "Müller & Söhne");
    assert_eq!(report.output["config"]["region"], "Süd");
    assert_eq!(report.output["attempt"], 2);
    assert_eq!(report.output["run_id"], "run-1");
    assert!(report.fuel_used > 0);
    assert!(report.peak_memory > 0);
}

#[tokio::test]
async fn plugin_errors_keep_their_kind() {
    let plugin = hostile(PluginSettings::default()).await;
    let retry = call(&plugin, json!({"do": "retryable"})).await.unwrap_err();
    assert_eq!(
        retry,
        CallError::Retryable("ERP unavailable (attempt 2)".into())
    );
    assert!(retry.is_retryable());
    let fatal = call(&plugin, json!({"do": "fatal"})).await.unwrap_err();
    assert_eq!(fatal.kind(), "fatal");
    assert!(!fatal.is_retryable());
    let invalid = call(&plugin, json!({"do": "invalid"})).await.unwrap_err();
    assert_eq!(
        invalid,
        CallError::InvalidInput("`email` is not an address".into())
    );
    let bad = call(&plugin, json!({"do": "bad-json"})).await.unwrap();
    assert_eq!(bad, json!("x"));
}

#[tokio::test]
async fn input_is_checked_against_the_plugins_schema_before_the_call() {
    let plugin = hostile(PluginSettings::default()).await;
    let err = call(&plugin, json!({"what": 1})).await.unwrap_err();
    assert_eq!(err.kind(), "invalid-input");
    assert!(
        err.to_string().contains("\"do\" is a required property"),
        "{err}"
    );
    let err = call(&plugin, json!({"do": 5})).await.unwrap_err();
    assert!(err.to_string().contains("/do"), "{err}");
    let small = hostile(PluginSettings {
        max_input: 100,
        ..PluginSettings::default()
    })
    .await;
    let err = call(&small, json!({"do": "echo", "pad": "x".repeat(200)}))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "input-too-large");
}

/// A runaway guest is stopped at its deadline, and while it runs the async runtime
/// (here a single thread) keeps serving other tasks.
#[tokio::test(flavor = "current_thread")]
async fn an_infinite_loop_hits_the_deadline_without_stalling_the_runtime() {
    let plugin = hostile(PluginSettings {
        deadline: Duration::from_millis(400),
        ..PluginSettings::default()
    })
    .await;
    let ticks = Arc::new(AtomicU64::new(0));
    let counter = ticks.clone();
    let ticking = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(5)).await;
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    let failure = plugin
        .call(&invocation(), &json!({"do": "loop"}))
        .await
        .unwrap_err();
    ticking.abort();
    assert_eq!(
        failure.error,
        CallError::Timeout(Duration::from_millis(400))
    );
    assert_eq!(
        failure.error.to_string(),
        "the plugin ran longer than its deadline of 400 ms"
    );
    assert!(failure.duration >= Duration::from_millis(400));
    assert!(
        ticks.load(Ordering::Relaxed) > 0,
        "other tasks must run while the plugin loops"
    );
    // The plugin itself is fine: the next call gets a fresh instance.
    assert_eq!(
        call(&plugin, json!({"do": "nothing"})).await.unwrap(),
        json!({})
    );
}

#[tokio::test]
async fn fuel_stops_a_loop_when_configured() {
    let plugin = hostile(PluginSettings {
        fuel: Some(5_000_000),
        ..PluginSettings::default()
    })
    .await;
    let err = call(&plugin, json!({"do": "loop"})).await.unwrap_err();
    assert_eq!(err, CallError::OutOfFuel(5_000_000));
}

#[tokio::test]
async fn a_memory_bomb_hits_the_memory_cap() {
    let plugin = hostile(PluginSettings {
        memory: 32 << 20,
        ..PluginSettings::default()
    })
    .await;
    let err = call(&plugin, json!({"do": "allocate"})).await.unwrap_err();
    assert_eq!(err, CallError::OutOfMemory(32 << 20));
    assert_eq!(
        err.to_string(),
        "the plugin exceeded its memory cap of 32 MiB"
    );
    assert_eq!(
        call(&plugin, json!({"do": "nothing"})).await.unwrap(),
        json!({})
    );
}

#[tokio::test]
async fn a_panic_is_a_readable_trap() {
    let plugin = hostile(PluginSettings::default()).await;
    let failure = plugin
        .call(
            &invocation(),
            &json!({"do": "panic", "why": "Kundennummer fehlt"}),
        )
        .await
        .unwrap_err();
    assert_eq!(failure.error.kind(), "trap");
    let message = failure.error.to_string();
    assert!(message.starts_with("the plugin crashed: "), "{message}");
    assert!(
        message.contains("the plugin gave up: \"Kundennummer fehlt\""),
        "{message}"
    );
}

#[tokio::test]
async fn a_100_mb_output_is_refused() {
    // With the default 64 MiB memory the guest cannot even build it ...
    let plugin = hostile(PluginSettings::default()).await;
    let err = call(&plugin, json!({"do": "big-output", "megabytes": 100}))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "out-of-memory");
    // ... and with room to build it, the output cap refuses it.
    let roomy = hostile(PluginSettings {
        memory: 512 << 20,
        ..PluginSettings::default()
    })
    .await;
    let err = call(&roomy, json!({"do": "big-output", "megabytes": 100}))
        .await
        .unwrap_err();
    assert!(
        matches!(err, CallError::OutputTooLarge { size, limit } if size > 100 << 20 && limit == 4 << 20),
        "{err:?}"
    );
}

#[tokio::test]
async fn stdout_stderr_and_log_lines_are_captured_and_bounded() {
    let plugin = hostile(PluginSettings {
        // Generous: the machine may be busy with other tests.
        deadline: Duration::from_secs(10),
        ..PluginSettings::default()
    })
    .await;
    let report = plugin
        .call(
            &invocation(),
            &json!({"do": "log", "text": "Grüße aus Köln"}),
        )
        .await
        .unwrap();
    let lines: Vec<(String, String)> = report
        .logs
        .iter()
        .map(|l| (l.level.clone(), l.message.clone()))
        .collect();
    assert!(
        lines.contains(&("info".into(), "structured".into())),
        "{lines:?}"
    );
    assert!(
        lines.contains(&("stdout".into(), "to stdout: Grüße".into())),
        "{lines:?}"
    );
    assert!(
        lines.contains(&("stderr".into(), "to stderr: \"Grüße aus Köln\"".into())),
        "{lines:?}"
    );
    let structured = report
        .logs
        .iter()
        .find(|l| l.message == "structured")
        .unwrap();
    assert_eq!(
        structured.fields,
        [("kunde".to_string(), "Müller GmbH".to_string())]
    );

    let flood = plugin
        .call(&invocation(), &json!({"do": "flood"}))
        .await
        .unwrap();
    assert_eq!(flood.output["flooded"], true);
    let kept: usize = flood.logs.iter().map(|l| l.message.len()).sum();
    assert!(kept <= 80 * 1024, "kept {kept} bytes of log");
    assert!(
        flood.logs.iter().any(|l| l.message.contains("not kept")),
        "truncation is said"
    );
}

#[tokio::test]
async fn a_component_of_the_wrong_world_is_refused_at_load() {
    let err = runtime()
        .load(
            "wrong",
            &component("wrong-world"),
            PluginSettings::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, LoadError::WrongWorld { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("does not implement Kontor's `step` world"),
        "{message}"
    );
    assert!(
        message.contains("wasi:cli/run"),
        "names what it exports: {message}"
    );
}

#[tokio::test]
async fn a_component_built_against_an_unknown_contract_version_is_refused() {
    let err = runtime()
        .load(
            "future",
            &component("future-contract"),
            PluginSettings::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{} was built against kontor:plugin@1.0.0, which this Kontor does not support (it runs kontor:plugin@0.3.0); rebuild the plugin with a kontor-sdk for 0.3.0",
            component("future-contract").display()
        )
    );
}

#[tokio::test]
async fn files_that_are_not_components_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("text.wasm");
    std::fs::write(&text, "hello").unwrap();
    let err = runtime()
        .load("text", &text, PluginSettings::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("does not start with the WebAssembly header"),
        "{err}"
    );
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let err = runtime()
        .load("core", &core, PluginSettings::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("it is a core module"), "{err}");
}

#[tokio::test]
async fn configuration_is_checked_against_the_plugins_schema_at_load() {
    let err = runtime()
        .load(
            "lead-scoring",
            &component("lead-scoring"),
            PluginSettings {
                config: json!({"grade_a": "hoch"}),
                ..PluginSettings::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin `lead-scoring`: configuration does not fit the plugin's schema: /grade_a: \"hoch\" is not of type \"integer\""
    );
}

#[tokio::test]
async fn lead_scoring_scores_and_explains() {
    let plugin = Arc::new(
        runtime()
            .load(
                "lead-scoring",
                &component("lead-scoring"),
                PluginSettings::default(),
            )
            .await
            .unwrap(),
    );
    let out = call(
        &plugin,
        json!({"country": "AT", "employees": 80, "industry": "medizintechnik",
               "title": "Leiterin Einkauf", "brochure_downloaded": true}),
    )
    .await
    .unwrap();
    assert_eq!(out["score"], 15 + 15 + 20 + 10 + 10);
    assert_eq!(out["grade"], "A", "70 points reach grade A");
    assert_eq!(out["explanation"][4]["value"], "Leiterin Einkauf (leiter)");
}

#[tokio::test]
async fn the_registry_hot_reloads_and_calls_in_flight_keep_the_old_code() {
    let dir = tempfile::tempdir().unwrap();
    let registry = PluginRegistry::new(
        runtime(),
        dir.path(),
        Default::default(),
        PluginSettings::default(),
    );
    assert!(matches!(
        registry.get("scoring"),
        Err(RegistryError::NotFound { .. })
    ));
    std::fs::copy(component("hostile"), dir.path().join("scoring.wasm")).unwrap();
    let changed = registry.refresh().await;
    assert_eq!(changed, [("scoring".to_string(), None)]);
    let old = registry.get("scoring").unwrap();
    assert_eq!(old.info().name, "hostile");
    assert!(
        registry.refresh().await.is_empty(),
        "unchanged files are not reloaded"
    );

    // Replace the file (a new inode and size, as a build would).
    std::fs::remove_file(dir.path().join("scoring.wasm")).unwrap();
    std::fs::copy(component("lead-scoring"), dir.path().join("scoring.wasm")).unwrap();
    registry.refresh().await;
    assert_eq!(registry.get("scoring").unwrap().info().name, "lead-scoring");
    // The old plugin still answers for whoever holds it.
    assert_eq!(
        call(&old, json!({"do": "nothing"})).await.unwrap(),
        json!({})
    );

    std::fs::remove_file(dir.path().join("scoring.wasm")).unwrap();
    std::fs::copy(
        component("future-contract"),
        dir.path().join("scoring.wasm"),
    )
    .unwrap();
    registry.refresh().await;
    let err = registry.get("scoring").unwrap_err();
    assert!(err.to_string().contains("kontor:plugin@1.0.0"), "{err}");
}

#[tokio::test]
async fn compiled_code_is_cached_on_disk() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = PluginRuntime::new(&RuntimeSettings {
        cache_dir: Some(cache.path().to_path_buf()),
        ..RuntimeSettings::default()
    })
    .unwrap();
    runtime
        .load("hostile", &component("hostile"), PluginSettings::default())
        .await
        .unwrap();
    let files = walk(cache.path());
    assert!(!files.is_empty(), "the cache holds the compiled component");
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
