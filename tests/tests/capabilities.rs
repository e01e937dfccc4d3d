//! Plugin capabilities with real compiled hostile plugins: grants at load, outbound
//! HTTP behind the SSRF guard (against real listeners on loopback that count every
//! connection, so "nothing left the machine" is observed, not assumed), secrets from a
//! real encrypted store, configuration and key-value writes.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kontor_plugins::{
    CallError, Grants, Invocation, LoadError, Origin, Plugin, PluginRuntime, PluginSettings,
    RuntimeSettings,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn component(dir: PathBuf, name: &str) -> PathBuf {
    dir.join(format!("{name}.wasm"))
}

fn runtime() -> Arc<PluginRuntime> {
    PluginRuntime::new(&RuntimeSettings {
        max_memory: 128 << 20,
        max_instances: 16,
        ..RuntimeSettings::default()
    })
    .unwrap()
}

fn grants(http: &[&str], private: &[&str]) -> Grants {
    Grants {
        http: http.iter().map(|o| Origin::parse(o).unwrap()).collect(),
        private_networks: private.iter().map(|n| n.parse().unwrap()).collect(),
        ..Grants::default()
    }
}

async fn hostile_with(runtime: &Arc<PluginRuntime>, settings: PluginSettings) -> Arc<Plugin> {
    Arc::new(
        runtime
            .load(
                "hostile",
                &component(kontor_tests::test_plugins(), "hostile"),
                settings,
            )
            .await
            .unwrap(),
    )
}

async fn hostile(grants: Grants) -> Arc<Plugin> {
    hostile_with(
        &runtime(),
        PluginSettings {
            grants,
            ..PluginSettings::default()
        },
    )
    .await
}

fn invocation() -> Invocation {
    Invocation {
        run_id: "run-1".into(),
        workflow: "wf".into(),
        step: "fetch".into(),
        attempt: 1,
    }
}

async fn call(plugin: &Arc<Plugin>, input: Value) -> Result<Value, CallError> {
    plugin
        .call(&invocation(), &input)
        .await
        .map(|r| r.output)
        .map_err(|f| f.error)
}

/// A listener on loopback that answers every request with `respond(path)` and counts
/// the connections it accepted.
struct Listener {
    port: u16,
    connections: Arc<AtomicUsize>,
}

impl Listener {
    /// A listener that closes each connection after its answer.
    async fn start(respond: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static) -> Listener {
        Listener::serve(respond, false).await
    }

    /// A listener that keeps connections alive: it answers every request on a
    /// connection until the client closes it.
    async fn keep_alive(respond: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static) -> Listener {
        Listener::serve(respond, true).await
    }

    async fn serve(
        respond: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static,
        keep_alive: bool,
    ) -> Listener {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        let respond = Arc::new(respond);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let respond = respond.clone();
                tokio::spawn(async move {
                    let mut pending = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        let end = loop {
                            if let Some(at) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                                break at + 4;
                            }
                            match stream.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => pending.extend_from_slice(&buf[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&pending[..end]).to_string();
                        pending.drain(..end);
                        let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                        if stream.write_all(&respond(&path)).await.is_err() || !keep_alive {
                            let _ = stream.shutdown().await;
                            return;
                        }
                    }
                });
            }
        });
        Listener { port, connections }
    }

    /// A listener that never answers.
    async fn silent() -> Listener {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                held.push(stream);
            }
        });
        Listener { port, connections }
    }

    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn redirect(to: &str) -> Vec<u8> {
    format!("HTTP/1.1 302 Found\r\nlocation: {to}\r\ncontent-length: 0\r\n\r\n").into_bytes()
}

fn denied(result: Result<Value, CallError>) -> String {
    match result {
        Err(CallError::Denied(message)) => message,
        other => panic!("expected a capability refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_plugin_asking_for_ungranted_capabilities_does_not_load_and_is_told_what_to_grant() {
    let runtime = runtime();
    let path = component(kontor_tests::granted_plugins(), "greedy");
    let error = runtime
        .load("greedy", &path, PluginSettings::default())
        .await
        .unwrap_err();
    let LoadError::Ungranted { missing, .. } = &error else {
        panic!("expected Ungranted, got {error}");
    };
    assert_eq!(
        missing,
        &[
            "http: \"https://erp.example.com:443\"",
            "secrets: \"erp-token\"",
            "kv = true"
        ]
    );
    let message = error.to_string();
    assert!(
        message.contains(
            "[plugin.greedy.grants] (http = [\"https://erp.example.com:443\"], secrets = [\"erp-token\"], kv = true)"
        ),
        "{message}"
    );

    // Partly granted: only what is still missing is listed.
    let partly = Grants {
        http: vec![Origin::parse("https://erp.example.com").unwrap()],
        ..Grants::default()
    };
    let error = runtime
        .load(
            "greedy",
            &path,
            PluginSettings {
                grants: partly.clone(),
                ..PluginSettings::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, LoadError::Ungranted { missing, .. }
        if missing == &["secrets: \"erp-token\"", "kv = true"]),
        "{error}"
    );

    let all = Grants {
        secrets: vec!["erp-token".into()],
        kv: true,
        ..partly
    };
    let plugin = runtime
        .load(
            "greedy",
            &path,
            PluginSettings {
                grants: all,
                ..PluginSettings::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(plugin.info().secrets, ["erp-token"]);
}

#[tokio::test]
async fn a_granted_origin_on_a_granted_private_network_answers_and_is_logged() {
    let server = Listener::start(|path| ok(&format!("Grüße von {path}"))).await;
    let plugin = hostile(grants(&[&server.origin()], &["127.0.0.1/32"])).await;
    let report = plugin
        .call(
            &invocation(),
            &json!({"do": "http", "url": format!("{}/kunden?name=M%C3%BCller", server.origin())}),
        )
        .await
        .unwrap();
    assert_eq!(report.output["status"], 200);
    assert_eq!(report.output["body"], "Grüße von /kunden?name=M%C3%BCller");
    let http: Vec<&str> = report
        .logs
        .iter()
        .filter(|l| l.level == "http")
        .map(|l| l.message.as_str())
        .collect();
    assert_eq!(
        http,
        [format!(
            "http GET {}/kunden?name=M%C3%BCller → 200 (36 bytes)",
            server.origin()
        )]
    );
}

#[tokio::test]
async fn http_to_loopback_is_refused_before_connecting_even_for_a_granted_origin() {
    let server = Listener::start(|_| ok("secret internal data")).await;
    // The origin is granted, but 127.0.0.1 is not named by a private_networks grant.
    let plugin = hostile(grants(&[&server.origin()], &[])).await;
    let message = denied(call(&plugin, json!({"do": "http", "url": server.origin()})).await);
    assert!(
        message.contains("http forbidden-address: 127.0.0.1 is a loopback address"),
        "{message}"
    );
    // The guest cannot swallow the refusal: the step fails anyway.
    let message = denied(
        call(
            &plugin,
            json!({"do": "http-swallow", "url": server.origin()}),
        )
        .await,
    );
    assert!(message.contains("loopback"), "{message}");
    assert_eq!(server.connections(), 0, "nothing may reach the listener");
}

#[tokio::test]
async fn the_cloud_metadata_address_is_refused() {
    let plugin = hostile(grants(&["http://169.254.169.254"], &[])).await;
    let message = denied(
        call(
            &plugin,
            json!({"do": "http", "url": "http://169.254.169.254/latest/meta-data/iam"}),
        )
        .await,
    );
    assert!(
        message.contains("169.254.169.254 is a cloud metadata address"),
        "{message}"
    );
    // IPv4-mapped IPv6 and unique-local literals are refused the same way.
    let plugin = hostile(grants(
        &["http://[::ffff:127.0.0.1]", "http://[fd00::1]"],
        &[],
    ))
    .await;
    let message = denied(
        call(
            &plugin,
            json!({"do": "http", "url": "http://[::ffff:127.0.0.1]/"}),
        )
        .await,
    );
    assert!(message.contains("IPv4-mapped"), "{message}");
    let message = denied(call(&plugin, json!({"do": "http", "url": "http://[fd00::1]/"})).await);
    assert!(message.contains("unique-local"), "{message}");
}

#[tokio::test]
async fn a_name_that_resolves_to_loopback_is_refused() {
    let server = Listener::start(|_| ok("internal")).await;
    let origin = format!("http://localhost:{}", server.port);
    let plugin = hostile(grants(&[&origin], &[])).await;
    let message = denied(call(&plugin, json!({"do": "http", "url": origin})).await);
    assert!(
        message.contains("localhost resolves to 127.0.0.1, a loopback address")
            || message.contains("localhost resolves to ::1, a loopback address"),
        "{message}"
    );
    assert_eq!(server.connections(), 0);
}

#[tokio::test]
async fn a_redirect_to_a_forbidden_target_is_refused() {
    let inside = Listener::start(|_| ok("inside")).await;
    let inside_url = format!("{}/admin", inside.origin());
    let to_inside = Listener::start(move |_| redirect(&inside_url)).await;
    let to_metadata =
        Listener::start(|_| redirect("http://169.254.169.254/latest/meta-data")).await;
    // Both redirecting servers are granted, with loopback allowed; their targets are not.
    let plugin = hostile(grants(
        &[
            &to_inside.origin(),
            &to_metadata.origin(),
            "http://169.254.169.254",
        ],
        &["127.0.0.1/32"],
    ))
    .await;
    let message = denied(call(&plugin, json!({"do": "http", "url": to_inside.origin()})).await);
    assert!(
        message.contains(&format!(
            "http not-granted: {}:{} is not granted",
            "http://127.0.0.1", inside.port
        )),
        "{message}"
    );
    assert_eq!(
        inside.connections(),
        0,
        "the redirect target was never contacted"
    );
    assert_eq!(to_inside.connections(), 1);

    let message = denied(call(&plugin, json!({"do": "http", "url": to_metadata.origin()})).await);
    assert!(message.contains("cloud metadata"), "{message}");
}

#[tokio::test]
async fn a_host_not_on_the_list_is_refused() {
    let server = Listener::start(|_| ok("hello")).await;
    let plugin = hostile(grants(&["https://erp.example.com"], &["127.0.0.1/32"])).await;
    let message = denied(call(&plugin, json!({"do": "http", "url": server.origin()})).await);
    assert!(
        message.contains(&format!(
            "http not-granted: http://127.0.0.1:{} is not granted to this plugin",
            server.port
        )),
        "{message}"
    );
    // Same host, other port or scheme: not the granted origin either.
    let message = denied(
        call(
            &plugin,
            json!({"do": "http", "url": "http://erp.example.com/"}),
        )
        .await,
    );
    assert!(
        message.contains("http://erp.example.com:80 is not granted"),
        "{message}"
    );
    assert_eq!(server.connections(), 0);
}

#[tokio::test]
async fn a_response_larger_than_the_cap_fails_the_step() {
    let big = "x".repeat(2 << 20);
    let declared = Listener::start(move |_| ok(&big)).await;
    let chunk = "y".repeat(64 << 10);
    let chunked = Listener::start(move |_| {
        let mut body = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..32 {
            body.extend_from_slice(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes());
        }
        body.extend_from_slice(b"0\r\n\r\n");
        body
    })
    .await;
    let mut settings = PluginSettings {
        grants: grants(&[&declared.origin(), &chunked.origin()], &["127.0.0.1/32"]),
        ..PluginSettings::default()
    };
    settings.http.max_response_bytes = 1 << 20;
    let plugin = hostile_with(&runtime(), settings).await;
    for server in [&declared, &chunked] {
        let error = call(&plugin, json!({"do": "http", "url": server.origin()}))
            .await
            .unwrap_err();
        let CallError::Fatal(message) = &error else {
            panic!("expected a fatal error, got {error:?}");
        };
        assert!(
            message.starts_with("http too-large: the response body of")
                && message.contains("is larger than 1048576 bytes"),
            "{message}"
        );
    }
}

#[tokio::test]
async fn a_silent_server_times_out_as_a_retryable_error() {
    let server = Listener::silent().await;
    let mut settings = PluginSettings {
        grants: grants(&[&server.origin()], &["127.0.0.1/32"]),
        ..PluginSettings::default()
    };
    settings.http.timeout = Duration::from_millis(300);
    let plugin = hostile_with(&runtime(), settings).await;
    let error = call(&plugin, json!({"do": "http", "url": server.origin()}))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, CallError::Retryable(m) if m.starts_with("http timeout:") && m.contains("within 300 ms")),
        "{error:?}"
    );
}

#[tokio::test]
async fn tls_is_verified() {
    // A real TLS server (openssl s_server) with a self-signed certificate.
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
        ])
        .arg("/CN=127.0.0.1")
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is installed");
    assert!(made.status.success(), "{made:?}");
    let port = kontor_tests::free_port();
    let mut server = std::process::Command::new("openssl")
        .args(["s_server", "-quiet", "-www", "-accept"])
        .arg(port.to_string())
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let origin = format!("https://127.0.0.1:{port}");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let plugin = hostile(grants(&[&origin], &["127.0.0.1/32"])).await;
    let result = call(&plugin, json!({"do": "http", "url": origin})).await;
    let _ = server.kill();
    let _ = server.wait();
    let error = result.unwrap_err();
    assert!(
        matches!(&error, CallError::Retryable(m)
            if m.starts_with("http connection: TLS with") && m.contains("certificate")),
        "{error:?}"
    );
}

#[tokio::test]
async fn an_ungranted_secret_is_refused() {
    let plugin = hostile(Grants::default()).await;
    let message = denied(call(&plugin, json!({"do": "secret", "name": "erp-token"})).await);
    assert_eq!(
        message,
        "secret `erp-token` is not granted; grant it with secrets = [\"erp-token\"] in [plugin.NAME.grants]"
    );
    // Nor is the key-value store without its grant.
    let message = denied(call(&plugin, json!({"do": "kv", "get": ["x"]})).await);
    assert!(
        message.starts_with("the key-value store is not granted"),
        "{message}"
    );
}

#[tokio::test]
async fn granted_secrets_come_from_the_encrypted_store_and_never_reach_logs_or_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = kontor::store::Store::open(&format!("sqlite://{}/kontor.db", dir.path().display()))
        .await
        .unwrap();
    let key = Arc::new(kontor::secrets::MasterKey::generate());
    let token = "tok-Ümläut-5f1c9a7e";
    store
        .secrets()
        .put(
            "erp-token",
            &key.seal("erp-token", token.as_bytes()),
            &kontor::store::Actor::cli(),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let server = Listener::start(|_| ok("fine")).await;
    let runtime = runtime();
    runtime.set_services(kontor::plugin_services::StoreServices::new(store, key));
    let mut settings = PluginSettings {
        grants: grants(&[&server.origin()], &["127.0.0.1/32"]),
        ..PluginSettings::default()
    };
    settings.grants.secrets = vec!["erp-token".into()];
    let plugin = hostile_with(&runtime, settings).await;

    let report = plugin
        .call(&invocation(), &json!({"do": "secret", "name": "erp-token"}))
        .await
        .unwrap();
    assert_eq!(report.output["length"], token.len());

    let failure = plugin
        .call(
            &invocation(),
            &json!({"do": "leak-secret", "name": "erp-token", "url": server.origin()}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        failure.error,
        CallError::Fatal("failed with token [redacted]".into())
    );
    let logs = serde_json::to_string(&failure.logs).unwrap();
    assert!(!logs.contains(token), "{logs}");
    for expected in [
        "stdout: [redacted]",
        "stderr: [redacted]",
        "log: [redacted]",
        "?token=[redacted] → 200",
    ] {
        assert!(logs.contains(expected), "{expected} not in {logs}");
    }
}

#[tokio::test]
async fn configuration_reaches_the_plugin_through_the_config_import() {
    let plugin = hostile_with(
        &runtime(),
        PluginSettings {
            config: json!({"region": "Süd", "limit": 3}),
            ..PluginSettings::default()
        },
    )
    .await;
    let output = call(&plugin, json!({"do": "config"})).await.unwrap();
    assert_eq!(output["all"], json!({"region": "Süd", "limit": 3}));
    assert_eq!(output["region"], "Süd");
}

#[tokio::test]
async fn key_value_writes_are_handed_back_only_when_the_call_succeeds() {
    let plugin = hostile(Grants {
        kv: true,
        ..Grants::default()
    })
    .await;
    let report = plugin
        .call(
            &invocation(),
            &json!({"do": "kv", "set": {"cursor": "K-10004"}, "get": ["cursor", "other"]}),
        )
        .await
        .unwrap();
    // A call reads its own writes.
    assert_eq!(report.output, json!({"cursor": "K-10004", "other": null}));
    assert_eq!(report.kv_writes.len(), 1);
    assert_eq!(report.kv_writes[0].plugin, "hostile");
    assert_eq!(report.kv_writes[0].key, "cursor");
    assert_eq!(report.kv_writes[0].value.as_deref(), Some(&b"K-10004"[..]));
    // Without a store behind it, the next call starts from nothing: writes are not
    // kept inside the runtime.
    let output = call(&plugin, json!({"do": "kv", "get": ["cursor"]}))
        .await
        .unwrap();
    assert_eq!(output, json!({"cursor": null}));
    // Over-long keys are refused with the limit named.
    let error = call(&plugin, json!({"do": "kv", "set": {"k".repeat(300): "v"}}))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, CallError::Fatal(m) if m.contains("a key must have 1 to 256 bytes")),
        "{error:?}"
    );
}

#[tokio::test]
async fn connections_are_kept_alive_across_calls_and_renewed_when_the_server_closed_them() {
    let kept = Listener::keep_alive(|path| ok(&format!("seite {path}"))).await;
    let closing = Listener::start(|path| ok(&format!("einmal {path}"))).await;
    let plugin = hostile(grants(
        &[&kept.origin(), &closing.origin()],
        &["127.0.0.1/32"],
    ))
    .await;
    for page in 1..=3 {
        let output = call(
            &plugin,
            json!({"do": "http", "url": format!("{}/kunden?seite={page}", kept.origin())}),
        )
        .await
        .unwrap();
        assert_eq!(output["body"], format!("seite /kunden?seite={page}"));
    }
    assert_eq!(kept.connections(), 1, "three calls, one connection");
    // A server that closes after each answer: the next request notices and reconnects.
    for page in 1..=2 {
        let output = call(
            &plugin,
            json!({"do": "http", "url": format!("{}/p{page}", closing.origin())}),
        )
        .await
        .unwrap();
        assert_eq!(output["body"], format!("einmal /p{page}"));
    }
    assert_eq!(closing.connections(), 2);
}
