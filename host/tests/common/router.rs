//! The API router over a fixture's engine, as `kontor serve` builds it, driven with
//! `tower::ServiceExt::oneshot`: an admin token, a master key, and one signed webhook
//! source (`shop`) whose first secret is stored.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use kontor::api::rate_limit::RateLimits;
use kontor::api::{AppState, hash_token, router};
use kontor::clock::Clock;
use kontor::webhooks::WebhookSource;
use serde_json::Value;
use tower::ServiceExt;

use super::Fixture;

/// The admin token every router of these tests knows.
pub const TOKEN: &str = "kt_test_token";
/// The value of `shop-hook`, the first secret of the `shop` webhook source.
pub const SHOP_SECRET: &str = "whsec_shop_Grüße_1";

/// The router over the shipped workflows, with the test token registered.
pub async fn app() -> (Router, Fixture) {
    let f = super::shipped_workflows("2026-06-08T07:00:00Z").await;
    serve(f, std::path::PathBuf::from("../workflows")).await
}

/// The router over a fixture's engine, with the test token registered and no rate limits.
pub async fn serve(f: Fixture, workflows_dir: std::path::PathBuf) -> (Router, Fixture) {
    serve_with(f, workflows_dir, RateLimits::off()).await
}

/// The router over the shipped workflows with these rate limits, counted on the
/// fixture's manual clock.
pub async fn app_limited(limits: &kontor::config::RateLimitConfig) -> (Router, Fixture) {
    let f = super::shipped_workflows("2026-06-08T07:00:00Z").await;
    let limits = RateLimits::new(limits, f.clock.clone()).unwrap();
    serve_with(f, std::path::PathBuf::from("../workflows"), limits).await
}

async fn serve_with(
    f: Fixture,
    workflows_dir: std::path::PathBuf,
    rate_limits: RateLimits,
) -> (Router, Fixture) {
    let store = f.engine.store().clone();
    store
        .tokens()
        .insert("t1", &hash_token(TOKEN), "admin", None, chrono::Utc::now())
        .await
        .unwrap();
    let master_key = Arc::new(kontor::secrets::MasterKey::generate());
    store
        .secrets()
        .put(
            "shop-hook",
            &master_key.seal("shop-hook", SHOP_SECRET.as_bytes()),
            &kontor::store::Actor::cli(),
            f.clock.now(),
        )
        .await
        .unwrap();
    let shop = WebhookSource {
        secrets: vec!["shop-hook".into(), "shop-hook-next".into()],
        events: vec!["order.shipped".into(), "lead.created".into()],
        window: "5m".into(),
    };
    let app = router(AppState {
        engine: f.engine.clone(),
        store,
        workflows_dir,
        master_key,
        manual_clock: Some(f.clock.clone()),
        mailer: None,
        overviews: Arc::new(
            kontor::customer_overview::Overviews::new(
                &kontor::customer_overview::ErpConfig::default(),
            )
            .unwrap(),
        ),
        metrics_access: kontor::config::MetricsAccess::Loopback,
        tokens: Arc::new(kontor::api::token_cache::TokenCache::new()),
        rate_limits: Arc::new(rate_limits),
        lead_rejection_reasons: Arc::new(kontor::config::LeadsConfig::default().rejection_reasons),
        webhooks: Arc::new([("shop".to_string(), shop)].into_iter().collect()),
    });
    (app, f)
}

/// A GET without a token; status and body text.
pub async fn get_open(app: &Router, uri: &str) -> (StatusCode, String) {
    let response = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// A request with the admin token; status and JSON body (`null` if not JSON).
pub async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (StatusCode, Value) {
    call_as(app, TOKEN, method, uri, body, headers).await
}

/// A request with `token` (none if empty); status and JSON body (`null` if not JSON).
pub async fn call_as(
    app: &Router,
    token: &str,
    method: &str,
    uri: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    if !token.is_empty() {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = app
        .clone()
        .oneshot(
            request
                .body(
                    body.map(|b| Body::from(b.to_string()))
                        .unwrap_or_else(Body::empty),
                )
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}
