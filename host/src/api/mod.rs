//! The HTTP API: the only module that speaks HTTP.
//!
//! Every route under `/api/v1` needs a bearer token (`kontor token create`), except the
//! OpenAPI document (`/api/v1/openapi.json`) and its browsable page (`/api/v1/docs`,
//! Swagger UI served from the binary, no CDN). Handlers parse and validate, call the
//! engine or the store, and answer JSON; errors go through [`ApiError`].

mod audit;
mod auth;
mod body;
mod customers;
mod email;
mod error;
mod events;
mod extract;
mod hooks;
mod lead_links;
mod leads;
pub mod listener;
pub mod openapi;
mod operations;
mod plugins;
pub mod rate_limit;
mod records;
mod runs;
mod secrets;
mod teams;
mod testing;
mod tickets;
pub mod token_cache;
mod users;
mod workflows;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::middleware;
use axum::routing::{MethodRouter, delete, get, patch, post, put};
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

pub use auth::{Principal, hash_token, new_token};
pub use error::ApiError;

use crate::access::Permission;
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
    /// Principals of tokens used in the last second (no store read per request).
    pub tokens: Arc<token_cache::TokenCache>,
    /// Requests per token and per client address (`[http.rate_limits]`).
    pub rate_limits: Arc<rate_limit::RateLimits>,
    /// The reasons sales may give for rejecting a lead (`[leads] rejection_reasons`).
    pub lead_rejection_reasons: Arc<Vec<String>>,
    /// The signed webhook sources (`[webhooks.SOURCE]`).
    pub webhooks: Arc<std::collections::BTreeMap<String, crate::webhooks::WebhookSource>>,
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, unlimited: liveness and readiness probes.
    Probe,
    /// Anyone, so often per client address (`http.rate_limits.public`): the unsubscribe
    /// pages (their link is the credential).
    Public,
    /// `/metrics`: as `http.metrics` says (by default loopback without a token).
    Metrics,
    /// A webhook: no token, a signature by one of the source's secrets
    /// ([`crate::webhooks`]); so often per client address, as [`Access::Public`].
    Signed,
    /// A valid token whose role has the permission ([`crate::access::allows`]).
    Needs(Permission),
}

/// One route: method, path, who may call it, handler.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub handler: MethodRouter<AppState>,
}

impl Route {
    fn new(
        method: Method,
        path: &'static str,
        access: Access,
        handler: MethodRouter<AppState>,
    ) -> Route {
        Route {
            method,
            path,
            access,
            handler,
        }
    }
}

/// Every route with its access rule. The router is built from this table — a route
/// cannot be added without saying who may call it — and tests check it against the
/// OpenAPI document and, for every role, against the permission table.
pub fn route_table(testing: bool) -> Vec<Route> {
    use Permission as P;
    let mut table = vec![
        Route::new(
            Method::GET,
            "/healthz",
            Access::Probe,
            get(operations::healthz),
        ),
        Route::new(
            Method::GET,
            "/readyz",
            Access::Probe,
            get(operations::readyz),
        ),
        Route::new(
            Method::GET,
            "/metrics",
            Access::Metrics,
            get(operations::metrics),
        ),
        Route::new(
            Method::GET,
            "/api/v1/workflows",
            Access::Needs(P::WorkflowsRead),
            get(workflows::list_workflows),
        ),
        Route::new(
            Method::POST,
            "/api/v1/workflows/reload",
            Access::Needs(P::WorkflowsReload),
            post(workflows::reload_workflows),
        ),
        Route::new(
            Method::POST,
            "/api/v1/workflows/{name}/runs",
            Access::Needs(P::RunsStart),
            post(runs::start_run),
        ),
        Route::new(
            Method::POST,
            "/api/v1/events",
            Access::Needs(P::EventsDeliver),
            post(events::deliver_event),
        ),
        Route::new(
            Method::GET,
            "/api/v1/runs",
            Access::Needs(P::RunsRead),
            get(runs::list_runs),
        ),
        Route::new(
            Method::GET,
            "/api/v1/runs/{id}",
            Access::Needs(P::RunsRead),
            get(runs::get_run),
        ),
        Route::new(
            Method::POST,
            "/api/v1/runs/{id}/cancel",
            Access::Needs(P::RunsOperate),
            post(runs::cancel_run),
        ),
        Route::new(
            Method::POST,
            "/api/v1/runs/{id}/retry",
            Access::Needs(P::RunsOperate),
            post(runs::retry_run),
        ),
        Route::new(
            Method::GET,
            "/api/v1/records/{collection}",
            Access::Needs(P::RecordsRead),
            get(records::list_records),
        ),
        Route::new(
            Method::GET,
            "/api/v1/plugins",
            Access::Needs(P::PluginsRead),
            get(plugins::list_plugins),
        ),
        Route::new(
            Method::GET,
            "/api/v1/customers/{id}/overview",
            Access::Needs(P::CustomersRead),
            get(customers::customer_overview),
        ),
        Route::new(
            Method::GET,
            "/api/v1/plugins/{name}",
            Access::Needs(P::PluginsRead),
            get(plugins::get_plugin),
        ),
        Route::new(
            Method::PUT,
            "/api/v1/plugins/{name}/config",
            Access::Needs(P::PluginsConfigure),
            put(plugins::put_plugin_config),
        ),
        Route::new(
            Method::DELETE,
            "/api/v1/plugins/{name}/config",
            Access::Needs(P::PluginsConfigure),
            delete(plugins::delete_plugin_config),
        ),
        Route::new(
            Method::GET,
            "/api/v1/secrets",
            Access::Needs(P::SecretsRead),
            get(secrets::list_secrets),
        ),
        Route::new(
            Method::PUT,
            "/api/v1/secrets/{name}",
            Access::Needs(P::SecretsWrite),
            put(secrets::put_secret),
        ),
        Route::new(
            Method::DELETE,
            "/api/v1/secrets/{name}",
            Access::Needs(P::SecretsWrite),
            delete(secrets::delete_secret),
        ),
        Route::new(
            Method::GET,
            "/api/v1/email/messages",
            Access::Needs(P::EmailRead),
            get(email::list_messages),
        ),
        Route::new(
            Method::GET,
            "/api/v1/email/messages/{id}",
            Access::Needs(P::EmailRead),
            get(email::get_message),
        ),
        Route::new(
            Method::POST,
            "/api/v1/email/bounces",
            Access::Needs(P::EmailReportBounces),
            post(email::report_bounces),
        ),
        Route::new(
            Method::GET,
            "/api/v1/email/suppressions",
            Access::Needs(P::SuppressionsRead),
            get(email::list_suppressions),
        ),
        Route::new(
            Method::POST,
            "/api/v1/email/test-send",
            Access::Needs(P::EmailTestSend),
            post(email::test_send),
        ),
        Route::new(
            Method::GET,
            "/api/v1/users",
            Access::Needs(P::UsersRead),
            get(users::list_users),
        ),
        Route::new(
            Method::POST,
            "/api/v1/users",
            Access::Needs(P::UsersWrite),
            post(users::create_user),
        ),
        Route::new(
            Method::GET,
            "/api/v1/users/{id}",
            Access::Needs(P::UsersRead),
            get(users::get_user),
        ),
        Route::new(
            Method::PATCH,
            "/api/v1/users/{id}",
            Access::Needs(P::UsersWrite),
            patch(users::change_user),
        ),
        Route::new(
            Method::POST,
            "/api/v1/leads",
            Access::Needs(P::LeadsWrite),
            post(leads::create_lead),
        ),
        Route::new(
            Method::GET,
            "/api/v1/leads",
            Access::Needs(P::LeadsRead),
            get(leads::list_leads),
        ),
        Route::new(
            Method::GET,
            "/api/v1/leads/rejections",
            Access::Needs(P::LeadsRead),
            get(leads::rejections),
        ),
        Route::new(
            Method::GET,
            "/api/v1/leads/{id}",
            Access::Needs(P::LeadsRead),
            get(leads::get_lead),
        ),
        Route::new(
            Method::POST,
            "/api/v1/leads/{id}/accept",
            Access::Needs(P::LeadsDecide),
            post(leads::accept_lead),
        ),
        Route::new(
            Method::POST,
            "/api/v1/leads/{id}/reject",
            Access::Needs(P::LeadsDecide),
            post(leads::reject_lead),
        ),
        Route::new(
            Method::POST,
            "/api/v1/tickets",
            Access::Needs(P::TicketsWrite),
            post(tickets::create_ticket),
        ),
        Route::new(
            Method::GET,
            "/api/v1/tickets",
            Access::Needs(P::TicketsRead),
            get(tickets::list_tickets),
        ),
        Route::new(
            Method::GET,
            "/api/v1/tickets/{id}",
            Access::Needs(P::TicketsRead),
            get(tickets::get_ticket),
        ),
        Route::new(
            Method::PATCH,
            "/api/v1/tickets/{id}",
            Access::Needs(P::TicketsWrite),
            patch(tickets::change_ticket),
        ),
        Route::new(
            Method::POST,
            "/api/v1/tickets/{id}/messages",
            Access::Needs(P::TicketsWrite),
            post(tickets::add_message),
        ),
        Route::new(
            Method::GET,
            "/api/v1/teams",
            Access::Needs(P::LeadsRead),
            get(teams::list_teams),
        ),
        Route::new(
            Method::PATCH,
            "/api/v1/teams/{team}/members/{member}",
            Access::Needs(P::TeamsWrite),
            patch(teams::change_member),
        ),
        Route::new(
            Method::GET,
            "/api/v1/audit",
            Access::Needs(P::AuditRead),
            get(audit::list_audit),
        ),
        Route::new(
            Method::POST,
            "/hooks/{source}",
            Access::Signed,
            post(hooks::receive_webhook),
        ),
        Route::new(
            Method::GET,
            "/u/{token}",
            Access::Public,
            get(email::unsubscribe_page),
        ),
        Route::new(
            Method::POST,
            "/u/{token}",
            Access::Public,
            post(email::unsubscribe),
        ),
        Route::new(
            Method::GET,
            "/l/{token}/{action}",
            Access::Public,
            get(lead_links::decision_page),
        ),
        Route::new(
            Method::POST,
            "/l/{token}/{action}",
            Access::Public,
            post(lead_links::decide_by_link),
        ),
    ];
    if testing {
        table.push(Route::new(
            Method::GET,
            "/api/v1/testing/clock",
            Access::Needs(P::TestingClock),
            get(testing::get_clock),
        ));
        table.push(Route::new(
            Method::POST,
            "/api/v1/testing/clock",
            Access::Needs(P::TestingClock),
            post(testing::move_clock),
        ));
    }
    table
}

/// Builds the router (tests drive it with `tower::ServiceExt::oneshot`).
pub fn router(state: AppState) -> Router {
    // Install the metrics recorder before anything is counted.
    crate::observability::metrics_handle();
    let mut app = Router::new();
    for route in route_table(state.manual_clock.is_some()) {
        let handler = match route.access {
            Access::Probe | Access::Metrics => route.handler,
            Access::Public | Access::Signed => route.handler.route_layer(
                middleware::from_fn_with_state(state.clone(), rate_limit::per_address),
            ),
            Access::Needs(permission) => route.handler.route_layer(middleware::from_fn_with_state(
                (state.clone(), permission),
                auth::authorize,
            )),
        };
        app = app.route(route.path, handler);
    }
    let docs =
        SwaggerUi::new("/api/v1/docs").url("/api/v1/openapi.json", openapi::ApiDoc::openapi());
    app.merge(docs)
        .layer(middleware::map_response(error::too_large_as_json))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}
