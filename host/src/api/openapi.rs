//! The OpenAPI document of the API (`GET /api/v1/openapi.json`), generated from the
//! handlers' annotations, and the offline Swagger UI at `/api/v1/docs`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::{ErrorBody, ErrorDetail};
use super::{customers, email, plugins, routes};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Kontor API",
        description = "Workflow and campaign automation for companies that run a CRM next to an ERP. \
                       Every route under /api/v1 needs `Authorization: Bearer TOKEN` (`kontor token create`)."
    ),
    paths(
        routes::healthz,
        routes::readyz,
        routes::metrics,
        routes::list_workflows,
        routes::reload_workflows,
        routes::start_run,
        routes::deliver_event,
        routes::list_runs,
        routes::get_run,
        routes::cancel_run,
        routes::retry_run,
        routes::list_records,
        plugins::list_plugins,
        plugins::get_plugin,
        plugins::put_plugin_config,
        plugins::delete_plugin_config,
        customers::customer_overview,
        routes::list_secrets,
        routes::put_secret,
        routes::delete_secret,
        email::list_messages,
        email::get_message,
        email::report_bounces,
        email::list_suppressions,
        email::test_send,
        email::unsubscribe_page,
        email::unsubscribe,
        routes::get_clock,
        routes::move_clock,
    ),
    components(schemas(
        ErrorBody,
        ErrorDetail,
        routes::StartRunBody,
        routes::StartedRun,
        routes::EventBody,
        routes::MoveClockBody,
        routes::WorkflowList,
        routes::RunPage,
        crate::store::RunView,
        crate::run::RunStatus,
        crate::run::StepRecord,
        crate::store::Delivered,
        crate::store::ChildCounts,
        crate::store::SecretInfo,
        plugins::PluginView,
        plugins::PluginList,
        plugins::PluginConfigBody,
        customers::CustomerOverview,
        routes::SecretBody,
        crate::workflow::catalog::WorkflowSummary,
        email::MessagePage,
        email::BounceReport,
        email::BounceBody,
        email::TestSendBody,
        crate::store::MessageView,
        crate::store::Suppression,
    )),
    modifiers(&BearerToken),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
