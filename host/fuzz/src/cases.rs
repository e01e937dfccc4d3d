//! What each fuzz target feeds Kontor, and what must hold whatever the input: no panic,
//! and for the API no 500. The fuzz targets (`host/fuzz/fuzz_targets/`) and the corpus
//! replay in the normal test suite (`host/tests/fuzz_corpus.rs`) both run these, so every
//! input the fuzzer kept, and every crash it found, is checked on every `cargo test`.

use std::path::Path;
use std::sync::Arc;

use serde_json::json;

/// A workflow file: parsed and checked as `kontor check` does; any text is either a
/// workflow or diagnostics with a position inside the file.
pub fn workflow(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let calendars = kontor::expr::Calendars::new();
    let names = ["lead-routing".to_string(), "fuzz".to_string()]
        .into_iter()
        .collect();
    let environment = kontor::workflow::compile::Environment {
        calendars: &calendars,
        workflow_names: &names,
        plugins: None,
        channels: None,
        templates: None,
        territories: None,
    };
    if let Err(diagnostics) =
        kontor::workflow::compile::compile_workflow(Path::new("fuzz.yaml"), text, &environment)
    {
        let lines = kontor::diagnostics::source_lines(text).len().max(1) as u32 + 1;
        for d in diagnostics {
            assert!(d.line >= 1 && d.line <= lines, "{d} is outside the file");
        }
    }
}

/// A CEL expression: compiled and, if it compiles, evaluated over a lead-like scope within
/// a small budget.
pub fn expression(data: &[u8]) {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(expression) = kontor::expr::Expression::compile(source) else {
        return;
    };
    let _ = expression.references();
    let calendars = kontor::expr::Calendars::new();
    let now = chrono::DateTime::from_timestamp(1_764_759_600, 0).unwrap();
    let scope = kontor::expr::Scope::new(now, &calendars)
        .with_budget(20_000)
        .with(
            "input",
            json!({"id": "L-1", "company": "Müller Kältetechnik GmbH", "postal_code": "80331",
                   "products": ["cold-room", "chiller"], "employees": 120, "score": 72.5}),
        )
        .with("vars", json!({"page": 2, "cursor": null}))
        .with("steps", json!({"score": {"output": {"grade": "A"}}}));
    let _ = expression.evaluate(&scope);
}

/// An email template: the input's three parts (split at NUL bytes) become the subject,
/// text and HTML of a template, which is loaded (with its limits) and rendered.
pub fn template(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(3, '\0');
    let subject = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let html = parts.next().unwrap_or_default();
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("fuzz");
    std::fs::create_dir_all(&folder).unwrap();
    for (part, source) in [("subject", subject), ("text", body), ("html", html)] {
        std::fs::write(folder.join(format!("de.{part}.hbs")), source).unwrap();
    }
    let set = kontor::templates::TemplateSet::load(dir.path());
    let data = json!({"salutation": "Sehr geehrte Frau Groß", "company": "Kälte <GmbH>",
        "serials": ["WP-300-0001", "WP-300-0002"], "unsubscribe_url": "https://k.example/u/x"});
    let _ = set.render("fuzz", "de", &data);
}

/// The secret the signature target and the API target sign webhook bodies with.
pub const WEBHOOK_SECRET: &[u8] = b"whsec_fuzz";

/// A `Kontor-Signature` header, and the rest of the input as the body it signs.
pub fn signature(data: &[u8]) {
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let Ok(header) = std::str::from_utf8(&data[..split]) else {
        return;
    };
    let body = data.get(split + 1..).unwrap_or_default();
    if let Ok(signature) = kontor::webhooks::parse(header) {
        let window = std::time::Duration::from_secs(300);
        let _ = kontor::webhooks::verify(
            &signature,
            &[WEBHOOK_SECRET],
            body,
            signature.timestamp,
            window,
        );
        let _ = kontor::webhooks::verify(&signature, &[], body, i64::MAX, window);
    }
}

/// The routes that take a JSON body, as (method, path).
pub const BODY_ROUTES: [(&str, &str); 9] = [
    ("POST", "/api/v1/events"),
    ("POST", "/api/v1/workflows/lead-routing/runs"),
    ("POST", "/api/v1/users"),
    ("PATCH", "/api/v1/users/fuzz@example.de"),
    ("PUT", "/api/v1/secrets/fuzz"),
    ("PUT", "/api/v1/plugins/lead-scoring/config"),
    ("POST", "/api/v1/email/bounces"),
    ("POST", "/api/v1/email/test-send"),
    ("POST", "/hooks/fuzz"),
];

const TOKEN: &str = "kt_fuzz_admin";

/// The API over a real SQLite store and the shipped workflows, made once per process.
pub struct Api {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    _dir: tempfile::TempDir,
}

impl Api {
    /// The router of `kontor serve` (admin token, one webhook source `fuzz`) over a temp
    /// SQLite file and the workflows in `workflows`.
    pub fn new(workflows: &Path) -> Api {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let router = runtime.block_on(async {
            let url = format!("sqlite://{}/kontor.db", dir.path().display());
            let store = kontor::store::Store::open(&url).await.unwrap();
            store
                .tokens()
                .insert(
                    "fuzz",
                    &kontor::api::hash_token(TOKEN),
                    "admin",
                    None,
                    chrono::Utc::now(),
                )
                .await
                .unwrap();
            let master_key = Arc::new(kontor::secrets::MasterKey::generate());
            let actor = kontor::store::Actor::cli();
            store
                .secrets()
                .put(
                    "fuzz-hook",
                    &master_key.seal("fuzz-hook", WEBHOOK_SECRET),
                    &actor,
                    chrono::Utc::now(),
                )
                .await
                .unwrap();
            let clock: kontor::clock::SharedClock = Arc::new(kontor::clock::SystemClock);
            let catalog = kontor::workflow::Catalog::load(workflows, None);
            let engine = kontor::engine::Engine::new(
                store.clone(),
                clock,
                catalog,
                kontor::engine::EngineSettings::default(),
                Default::default(),
            );
            let source = kontor::webhooks::WebhookSource {
                secrets: vec!["fuzz-hook".into()],
                events: vec!["lead.created".into(), "order.shipped".into()],
                window: "5m".into(),
            };
            kontor::api::router(kontor::api::AppState {
                engine,
                store,
                workflows_dir: workflows.to_path_buf(),
                master_key,
                manual_clock: None,
                mailer: None,
                overviews: Arc::new(
                    kontor::customer_overview::Overviews::new(&Default::default()).unwrap(),
                ),
                metrics_access: kontor::config::MetricsAccess::Token,
                tokens: Arc::new(kontor::api::token_cache::TokenCache::new()),
                rate_limits: Arc::new(kontor::api::rate_limit::RateLimits::off()),
                lead_rejection_reasons: Arc::new(Vec::new()),
                webhooks: Arc::new([("fuzz".to_string(), source)].into_iter().collect()),
            })
        });
        Api {
            runtime,
            router,
            _dir: dir,
        }
    }

    /// The first byte picks a route of [`BODY_ROUTES`], the rest is its body (a webhook's
    /// is signed); the answer is never a 500.
    pub fn call(&self, data: &[u8]) {
        use tower::ServiceExt;
        let Some((pick, body)) = data.split_first() else {
            return;
        };
        let (method, path) = BODY_ROUTES[usize::from(*pick) % BODY_ROUTES.len()];
        let mut request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {TOKEN}"));
        if path.starts_with("/hooks/") {
            let t = chrono::Utc::now().timestamp();
            let v1 = kontor::webhooks::sign(WEBHOOK_SECRET, t, body);
            request = request.header("kontor-signature", format!("t={t},v1={v1}"));
        }
        let request = request.body(axum::body::Body::from(body.to_vec())).unwrap();
        let status = self
            .runtime
            .block_on(self.router.clone().oneshot(request))
            .unwrap()
            .status();
        assert!(
            !status.is_server_error() || status == axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "{method} {path} answered {status} for {:?}",
            String::from_utf8_lossy(body)
        );
    }
}
