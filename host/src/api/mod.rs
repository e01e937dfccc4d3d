//! The HTTP API: the only module that speaks HTTP.
//!
//! Every route under `/api/v1` needs a bearer token (`kontor token create`). Handlers
//! parse and validate, call the engine or the store, and answer JSON; errors go through
//! [`ApiError`].

mod auth;
mod error;
mod routes;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};

pub use auth::{hash_token, new_token};
pub use error::ApiError;

use crate::clock::ManualClock;
use crate::engine::Engine;

/// Request bodies larger than this are refused with 413.
pub const BODY_LIMIT: usize = 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    /// Where `POST /api/v1/workflows/reload` reads workflows from.
    pub workflows_dir: std::path::PathBuf,
    /// Present only when `[testing] manual_clock = true`.
    pub manual_clock: Option<Arc<ManualClock>>,
}

/// Builds the router (tests drive it with `tower::ServiceExt::oneshot`).
pub fn router(state: AppState) -> Router {
    // Install the metrics recorder before anything is counted.
    crate::observability::metrics_handle();
    let mut api = Router::new()
        .route("/workflows", get(routes::list_workflows))
        .route("/workflows/reload", post(routes::reload_workflows))
        .route("/workflows/{name}/runs", post(routes::start_run))
        .route("/events", post(routes::deliver_event))
        .route("/runs", get(routes::list_runs))
        .route("/runs/{id}", get(routes::get_run))
        .route("/runs/{id}/cancel", post(routes::cancel_run))
        .route("/runs/{id}/retry", post(routes::retry_run))
        .route("/records/{collection}", get(routes::list_records));
    if state.manual_clock.is_some() {
        api = api.route(
            "/testing/clock",
            get(routes::get_clock).post(routes::move_clock),
        );
    }
    let api = api.route_layer(middleware::from_fn_with_state(
        state.clone(),
        auth::require_token,
    ));
    Router::new()
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/metrics", get(routes::metrics))
        .nest("/api/v1", api)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}
