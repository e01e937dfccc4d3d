//! The HTTP API: the only module that speaks HTTP.
//!
//! Every route under `/api/v1` needs a bearer token (`kontor token create`), except the
//! OpenAPI document (`/api/v1/openapi.json`) and its browsable page (`/api/v1/docs`,
//! Swagger UI served from the binary, no CDN). Handlers parse and validate, call the
//! engine or the store, and answer JSON; errors go through [`ApiError`].

mod auth;
mod body;
mod customers;
mod email;
mod error;
mod events;
mod extract;
pub mod listener;
pub mod openapi;
mod operations;
mod plugins;
mod records;
mod runs;
mod secrets;
mod testing;
mod workflows;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::middleware;
use axum::routing::{MethodRouter, delete, get, post, put};
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

pub use auth::{hash_token, new_token};
pub use error::ApiError;

use crate::clock::ManualClock;
use crate::engine::Engine;

/// Request bodies larger than this are refused with 413.
pub const BODY_LIMIT: usize = 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    /// Starts, cancels and retries runs; reloads workflows.
    pub engine: Arc<Engine>,
    /// What handlers read and write directly: runs, records, secrets, the outbox.
    pub store: crate::store::Store,
    /// Where `POST /api/v1/workflows/reload` reads workflows from.
    pub workflows_dir: std::path::PathBuf,
    /// Seals secrets written through the API.
    pub master_key: Arc<crate::secrets::MasterKey>,
    /// Present only when `[testing] manual_clock = true`.
    pub manual_clock: Option<Arc<ManualClock>>,
    /// The outbox dispatcher; `None` where email does not run (unit tests).
    pub mailer: Option<Arc<crate::email::dispatch::Dispatcher>>,
    /// The customer overview from the ERP (`[erp]`), with its cache.
    pub overviews: Arc<crate::customer_overview::Overviews>,
    /// Who may read `GET /metrics` (`http.metrics`).
    pub metrics_access: crate::config::MetricsAccess,
}

/// Every route: method, path, handler. The router is built from this table, and a test
/// checks it against the OpenAPI document, so an undocumented route cannot slip in.
pub fn route_table(testing: bool) -> Vec<(Method, &'static str, MethodRouter<AppState>)> {
    let mut table = vec![
        (Method::GET, "/healthz", get(operations::healthz)),
        (Method::GET, "/readyz", get(operations::readyz)),
        (Method::GET, "/metrics", get(operations::metrics)),
        (
            Method::GET,
            "/api/v1/workflows",
            get(workflows::list_workflows),
        ),
        (
            Method::POST,
            "/api/v1/workflows/reload",
            post(workflows::reload_workflows),
        ),
        (
            Method::POST,
            "/api/v1/workflows/{name}/runs",
            post(runs::start_run),
        ),
        (Method::POST, "/api/v1/events", post(events::deliver_event)),
        (Method::GET, "/api/v1/runs", get(runs::list_runs)),
        (Method::GET, "/api/v1/runs/{id}", get(runs::get_run)),
        (
            Method::POST,
            "/api/v1/runs/{id}/cancel",
            post(runs::cancel_run),
        ),
        (
            Method::POST,
            "/api/v1/runs/{id}/retry",
            post(runs::retry_run),
        ),
        (
            Method::GET,
            "/api/v1/records/{collection}",
            get(records::list_records),
        ),
        (Method::GET, "/api/v1/plugins", get(plugins::list_plugins)),
        (
            Method::GET,
            "/api/v1/customers/{id}/overview",
            get(customers::customer_overview),
        ),
        (
            Method::GET,
            "/api/v1/plugins/{name}",
            get(plugins::get_plugin),
        ),
        (
            Method::PUT,
            "/api/v1/plugins/{name}/config",
            put(plugins::put_plugin_config),
        ),
        (
            Method::DELETE,
            "/api/v1/plugins/{name}/config",
            delete(plugins::delete_plugin_config),
        ),
        (Method::GET, "/api/v1/secrets", get(secrets::list_secrets)),
        (
            Method::PUT,
            "/api/v1/secrets/{name}",
            put(secrets::put_secret),
        ),
        (
            Method::DELETE,
            "/api/v1/secrets/{name}",
            delete(secrets::delete_secret),
        ),
        (
            Method::GET,
            "/api/v1/email/messages",
            get(email::list_messages),
        ),
        (
            Method::GET,
            "/api/v1/email/messages/{id}",
            get(email::get_message),
        ),
        (
            Method::POST,
            "/api/v1/email/bounces",
            post(email::report_bounces),
        ),
        (
            Method::GET,
            "/api/v1/email/suppressions",
            get(email::list_suppressions),
        ),
        (
            Method::POST,
            "/api/v1/email/test-send",
            post(email::test_send),
        ),
        (Method::GET, "/u/{token}", get(email::unsubscribe_page)),
        (Method::POST, "/u/{token}", post(email::unsubscribe)),
    ];
    if testing {
        table.push((
            Method::GET,
            "/api/v1/testing/clock",
            get(testing::get_clock),
        ));
        table.push((
            Method::POST,
            "/api/v1/testing/clock",
            post(testing::move_clock),
        ));
    }
    table
}

/// Builds the router (tests drive it with `tower::ServiceExt::oneshot`).
pub fn router(state: AppState) -> Router {
    // Install the metrics recorder before anything is counted.
    crate::observability::metrics_handle();
    let mut open = Router::new();
    let mut protected = Router::new();
    for (_, path, handler) in route_table(state.manual_clock.is_some()) {
        if path.starts_with("/api/v1/") {
            protected = protected.route(path, handler);
        } else {
            open = open.route(path, handler);
        }
    }
    let protected = protected.route_layer(middleware::from_fn_with_state(
        state.clone(),
        auth::require_token,
    ));
    let docs =
        SwaggerUi::new("/api/v1/docs").url("/api/v1/openapi.json", openapi::ApiDoc::openapi());
    open.merge(protected)
        .merge(docs)
        .layer(middleware::map_response(error::too_large_as_json))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}
