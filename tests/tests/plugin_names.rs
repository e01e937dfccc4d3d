//! End-to-end: a plugin name in a URL never becomes a path outside the plugins folder,
//! and answers never reveal what exists on disk.

use kontor_tests::{Server, shipped_workflows, test_plugins};
use serde_json::{Value, json};

#[tokio::test]
async fn plugin_names_that_leave_the_plugins_folder_are_refused_without_touching_it() {
    let root = tempfile::tempdir().unwrap();
    let plugins = root.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let component = test_plugins().join("lead-scoring.wasm");
    std::fs::copy(&component, plugins.join("lead-scoring.wasm")).unwrap();
    // A working component one folder up: what `..%2Foutside` would load.
    std::fs::copy(&component, root.path().join("outside.wasm")).unwrap();
    let plugins_dir = plugins.display().to_string();
    let server = Server::start(
        &shipped_workflows(),
        &[("KONTOR_PLUGINS_DIR", plugins_dir.as_str())],
    )
    .unwrap();
    let config = json!({"config": {}}).to_string();

    let mut answers = Vec::new();
    for name in [
        "..%2Foutside",
        "..%2Fnot-there",
        "%2E%2E%2Foutside",
        "..%5Coutside",
        "outside%00",
        ".hidden",
        "%2Ftmp%2Foutside",
    ] {
        let path = format!("/api/v1/plugins/{name}/config");
        let (status, text) = server.api.send_raw("PUT", &path, &config).await.unwrap();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert!(status == 422 || status == 404, "{name}: {status} {text}");
        assert!(
            !text.contains(&root.path().display().to_string()) && !text.contains(".wasm"),
            "{name}: the answer names no filesystem path: {text}"
        );
        if status == 422 {
            assert_eq!(body["error"]["field"], "name", "{name}: {text}");
        }
        answers.push((name, status, body["error"]["code"].clone()));
        let (status, _) = server.api.send_raw("DELETE", &path, "").await.unwrap();
        assert!(status == 422 || status == 404, "DELETE {name}: {status}");
    }
    // Whether `outside.wasm` exists makes no difference to the answer.
    assert_eq!(answers[0].1, answers[1].1);
    assert_eq!(answers[0].2, answers[1].2);

    let (status, list) = server.api.get("/api/v1/plugins").await.unwrap();
    assert_eq!(status, 200, "{list}");
    let names: Vec<&str> = list["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["lead-scoring"], "nothing from outside was loaded");
    let (status, _) = server
        .api
        .send_raw("PUT", "/api/v1/plugins/lead-scoring/config", &config)
        .await
        .unwrap();
    assert_ne!(status, 404, "a real plugin is still configurable");
}
