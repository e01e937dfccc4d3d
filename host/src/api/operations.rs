//! What operators and load balancers ask: liveness, readiness, Prometheus metrics.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;

use super::{ApiError, AppState};
use crate::config::MetricsAccess;

#[utoipa::path(get, path = "/healthz", tag = "operations", security(()),
    responses((status = 200, description = "The process is alive")))]
pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// Ready when the store answers and the workflows folder was loaded.
#[utoipa::path(get, path = "/readyz", tag = "operations", security(()),
    responses((status = 200, description = "Store reachable and workflows loaded"),
               (status = 503, description = "Not ready; the body says what is missing")))]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let store = state.store.ping().await;
    let catalog = state.engine.catalog();
    let workflows = catalog.root.is_dir();
    let body = json!({
        "store": if store { "ok" } else { "unreachable" },
        "workflows": {"valid": catalog.valid().count(), "invalid": catalog.workflows.len() - catalog.valid().count()},
        "ready": store && workflows,
    });
    let status = if store && workflows {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// Prometheus metrics (see the `observability` module for names). Who may read them is
/// `http.metrics`: by default clients on this machine without a token, others with one.
#[utoipa::path(get, path = "/metrics", tag = "operations", security((), ("bearer" = [])),
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain"),
               (status = 401, description = "A token is needed: the client is not on loopback (`http.metrics = \"loopback\"`) or `http.metrics = \"token\"`")))]
pub async fn metrics(
    State(state): State<AppState>,
    request: Request,
) -> Result<impl IntoResponse, ApiError> {
    let from_loopback = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(peer)| peer.ip().to_canonical().is_loopback());
    let needs_token = match state.metrics_access {
        MetricsAccess::Open => false,
        MetricsAccess::Loopback => !from_loopback,
        MetricsAccess::Token => true,
    };
    if needs_token {
        super::auth::principal(&state, request.headers()).await?;
    }
    let now = state.engine.clock().now();
    let (depth, oldest) = state.store.jobs().queue_stats(now).await?;
    metrics::gauge!("kontor_queue_depth").set(depth as f64);
    let age = oldest
        .map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0)
        .unwrap_or(0.0);
    metrics::gauge!("kontor_oldest_due_job_age_seconds").set(age);
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        crate::observability::metrics_handle().render(),
    ))
}
