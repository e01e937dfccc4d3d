//! `plugin` steps in a real `kontor serve` with compiled plugins: retries with backoff,
//! typed failures, and a runaway plugin that neither stalls the API nor other runs.

use std::time::{Duration, Instant};

use kontor_tests::Server;
use serde_json::{Value, json};

const WORKFLOW: &str = "name: enrich
input:
  type: object
  required: [do]
steps:
  - id: call
    plugin: hostile
    retry:
      max_attempts: 4
      backoff: 1s
  - id: done
    end:
      output:
        result: ${steps.call}
";

fn server(extra: &[(&str, &str)]) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("enrich.yaml"), WORKFLOW).unwrap();
    std::fs::write(
        dir.path().join("kontor.toml"),
        "[plugin.hostile]\ndeadline = \"1500ms\"\nmemory = \"32MiB\"\n",
    )
    .unwrap();
    let config = dir.path().join("kontor.toml").display().to_string();
    let mut env = vec![("KONTOR_CONFIG", config.as_str())];
    env.extend_from_slice(extra);
    (Server::start(dir.path(), &env).unwrap(), dir)
}

async fn start(server: &Server, input: Value) -> String {
    let (status, body) = server
        .api
        .post("/api/v1/workflows/enrich/runs", &json!({"input": input}))
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

async fn finished(server: &Server, id: &str) -> Value {
    server.api.finished(id, Duration::from_secs(10)).await
}

async fn retryable_plugin_errors_are_retried_with_backoff() {
    let (server, _dir) = server(&[
        ("KONTOR_TESTING_MANUAL_CLOCK", "true"),
        ("KONTOR_TESTING_CLOCK_START", "2026-06-08T08:00:00Z"),
    ]);
    let id = start(&server, json!({"do": "succeed-on", "attempt": 3})).await;
    let advance = |by: &'static str| {
        let api = server.api.clone();
        async move {
            let (status, _) = api
                .post("/api/v1/testing/clock", &json!({"advance": by}))
                .await
                .unwrap();
            assert_eq!(status, 200);
        }
    };
    // Attempt 1 fails at once; attempt 2 is due after 1 s, attempt 3 after 2 s more.
    tokio::time::sleep(Duration::from_millis(300)).await;
    advance("1s").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    advance("2s").await;
    let run = finished(&server, &id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["output"]["result"]["succeeded_on"], 3);
    let steps = run["steps"].as_array().unwrap();
    let retries: Vec<&Value> = steps.iter().filter(|s| s["status"] == "retrying").collect();
    assert_eq!(retries.len(), 2, "{steps:?}");
    assert_eq!(
        retries[0]["error"],
        "plugin `hostile` failed (retryable): not yet (attempt 1)"
    );
}

async fn a_runaway_plugin_fails_its_step_and_the_server_keeps_serving() {
    let (server, _dir) = server(&[]);
    // Two runaway calls: one for each engine worker.
    let loops = [
        start(&server, json!({"do": "loop"})).await,
        start(&server, json!({"do": "loop"})).await,
    ];
    // While they spin, the API answers. Figures are printed, not asserted: the machine
    // is shared and noisy.
    let mut latencies = Vec::new();
    let began = Instant::now();
    while began.elapsed() < Duration::from_millis(1200) {
        let t = Instant::now();
        let (status, _) = server.api.get("/api/v1/workflows").await.unwrap();
        latencies.push(t.elapsed());
        assert_eq!(status, 200);
    }
    latencies.sort();
    println!(
        "API latency while two plugins loop: {} requests, p50 {:?}, max {:?}",
        latencies.len(),
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    assert!(latencies.len() >= 10, "the API kept answering");
    // Another run completes although the runaways hold their instances.
    let fine = start(&server, json!({"do": "nothing"})).await;
    for id in &loops {
        let run = finished(&server, id).await;
        assert_eq!(run["status"], "failed");
        assert_eq!(
            run["error"],
            "step `call` failed: plugin `hostile` failed (timeout): the plugin ran longer than its deadline of 1500 ms",
        );
    }
    assert_eq!(finished(&server, &fine).await["status"], "completed");
}

async fn hostile_plugins_fail_their_step_with_a_readable_error() {
    let (server, dir) = server(&[]);
    let cases = [
        (
            json!({"do": "fatal"}),
            "plugin `hostile` failed (fatal): the customer does not exist",
        ),
        (
            json!({"do": "invalid"}),
            "plugin `hostile` failed (invalid-input): invalid input: `email` is not an address",
        ),
        (
            json!({"do": "allocate"}),
            "plugin `hostile` failed (out-of-memory): the plugin exceeded its memory cap of 32 MiB",
        ),
        (
            json!({"do": "panic", "why": "kaputt"}),
            "the plugin gave up: \"kaputt\"",
        ),
        (
            json!({"do": "big-output", "megabytes": 100}),
            "(out-of-memory)",
        ),
        // Capabilities it was not granted: refused, and the step fails at once.
        (
            json!({"do": "http", "url": "http://169.254.169.254/latest/meta-data/"}),
            "plugin `hostile` failed (capability-denied): capability refused: http not-granted: http://169.254.169.254:80 is not granted to this plugin",
        ),
        (
            json!({"do": "secret", "name": "erp-token"}),
            "plugin `hostile` failed (capability-denied): capability refused: secret `erp-token` is not granted",
        ),
    ];
    let mut ids = Vec::new();
    for (input, _) in &cases {
        ids.push(start(&server, input.clone()).await);
    }
    for (id, (input, expected)) in ids.iter().zip(&cases) {
        let run = finished(&server, id).await;
        assert_eq!(run["status"], "failed", "{input}: {run}");
        let error = run["error"].as_str().unwrap();
        assert!(error.contains(expected), "{input}: {error}");
        // Failed at once: no retries for these kinds.
        let attempts = run["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["step"] == "call")
            .count();
        assert_eq!(attempts, 1, "{input}: {run}");
    }
    // A workflow naming a plugin that does not exist is refused when it loads.
    std::fs::write(
        dir.path().join("typo.yaml"),
        "name: typo\nsteps:\n  - id: call\n    plugin: hostle\n",
    )
    .unwrap();
    let (status, _) = server
        .api
        .post("/api/v1/workflows/reload", &json!({}))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let (_, body) = server.api.get("/api/v1/workflows").await.unwrap();
    let typo = body["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "typo")
        .unwrap();
    assert_eq!(typo["valid"], false, "{typo}");
    let diagnostic = typo["diagnostics"][0].as_str().unwrap();
    assert!(
        diagnostic.contains("typo.yaml:4:13: error: there is no plugin `hostle`"),
        "{diagnostic}"
    );
    assert!(
        diagnostic.contains("did you mean `hostile`?"),
        "{diagnostic}"
    );
}

#[tokio::test]
async fn what_a_plugin_logs_is_kept_with_its_step() {
    let (server, _dir) = server(&[]);
    let id = start(&server, json!({"do": "log", "text": "Grüße aus Köln"})).await;
    let run = finished(&server, &id).await;
    assert_eq!(run["status"], "completed", "{run}");
    let step = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "call")
        .unwrap();
    let log = step["log"].as_array().unwrap();
    let has = |level: &str, message: &str| {
        log.iter()
            .any(|l| l["level"] == level && l["message"] == message)
    };
    assert!(has("info", "structured"), "{log:?}");
    assert!(has("stdout", "to stdout: Grüße"), "{log:?}");
    assert!(has("stderr", "to stderr: \"Grüße aus Köln\""), "{log:?}");
    let structured = log.iter().find(|l| l["message"] == "structured").unwrap();
    assert_eq!(structured["fields"], json!([["kunde", "Müller GmbH"]]));
}

/// `/api/v1/plugins`: what each plugin is, asks for and is granted; its configuration
/// replaced through the API (checked against its schema, kept across a restart, removed
/// again), never its grants.
async fn plugin_configuration_is_shown_and_replaced_through_the_api() {
    let (mut server, _dir) = server(&[]);
    let (status, list) = server.api.get("/api/v1/plugins").await.unwrap();
    assert_eq!(status, 200, "{list}");
    let by_name = |list: &Value, name: &str| {
        list["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {list}"))
    };
    let fixture = by_name(&list, "erp-fixture");
    assert_eq!(fixture["world"], "erp-connector");
    assert_eq!(
        fixture["requested"],
        json!({"http": [], "secrets": [], "kv": false})
    );
    assert_eq!(
        fixture["granted"],
        json!({"http": [], "private_networks": [], "secrets": [], "kv": false})
    );
    assert_eq!(
        by_name(&list, "lead-scoring")["config_source"],
        "kontor.toml"
    );

    let path = "/api/v1/plugins/lead-scoring/config";
    let (status, body) = server
        .api
        .send_raw("PUT", path, r#"{"config": {"grade_a": "hoch"}}"#)
        .await
        .unwrap();
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "config", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/grade_a: \"hoch\" is not of type \"integer\""),
        "{body}"
    );
    let (status, body) = server
        .api
        .send_raw("PUT", path, r#"{"config": {"grade_a": 40}}"#)
        .await
        .unwrap();
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["config"], json!({"grade_a": 40}));
    assert_eq!(body["config_source"], "api");

    server.restart().unwrap();
    let (_, plugin) = server
        .api
        .get("/api/v1/plugins/lead-scoring")
        .await
        .unwrap();
    assert_eq!(plugin["config"], json!({"grade_a": 40}), "{plugin}");
    assert_eq!(plugin["config_source"], "api");

    let (status, body) = server.api.send_raw("DELETE", path, "").await.unwrap();
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["config_source"], "kontor.toml");
    let (status, _) = server
        .api
        .get("/api/v1/plugins/no-such-plugin")
        .await
        .unwrap();
    assert_eq!(status, 404);
}

kontor::on_both_backends!(
    retryable_plugin_errors_are_retried_with_backoff,
    a_runaway_plugin_fails_its_step_and_the_server_keeps_serving,
    hostile_plugins_fail_their_step_with_a_readable_error,
    plugin_configuration_is_shown_and_replaced_through_the_api,
);

/// Two processes on one PostgreSQL database: a configuration set through one API reaches
/// the other within its watcher's two-second pass, without a restart.
#[tokio::test(flavor = "multi_thread")]
async fn a_configuration_set_on_one_process_reaches_the_others() {
    let Some(admin) = kontor_tests::postgres_admin_url() else {
        return;
    };
    let url = kontor::store::scratch_postgres_database(&admin, "kontor_test")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("KONTOR_DATABASE_URL", url.as_str()),
        ("KONTOR_ENGINE_LEASE_SECONDS", "5"),
        (
            "KONTOR_MASTER_KEY",
            "6b6f6e746f722d706c7567696e2d636f6e6669672d746573742d6b6579212121",
        ),
    ];
    let one = Server::start(dir.path(), &env).unwrap();
    let two = Server::start(dir.path(), &env).unwrap();
    let (status, body) = one
        .api
        .send_raw(
            "PUT",
            "/api/v1/plugins/lead-scoring/config",
            r#"{"config": {"grade_a": 55}}"#,
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let mut seen = Value::Null;
    for _ in 0..100 {
        seen = two.api.get("/api/v1/plugins/lead-scoring").await.unwrap().1;
        if seen["config_source"] == "api" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen["config"], json!({"grade_a": 55}), "{seen}");
    assert_eq!(seen["config_source"], "api");
}
