//! The OpenAPI document of the API (`GET /api/v1/openapi.json`), generated from the
//! handlers' annotations, and the offline Swagger UI at `/api/v1/docs`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::{ErrorBody, ErrorDetail};
use super::{
    audit, customers, email, events, hooks, lead_links, leads, operations, plugins, records, runs,
    secrets, teams, testing, tickets, users, workflows,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Kontor API",
        description = "Workflow and campaign automation for companies that run a CRM next to an ERP. \
                       Every route under /api/v1 needs `Authorization: Bearer TOKEN` (`kontor token create`)."
    ),
    paths(
        operations::healthz,
        operations::readyz,
        operations::metrics,
        workflows::list_workflows,
        workflows::reload_workflows,
        runs::start_run,
        events::deliver_event,
        hooks::receive_webhook,
        runs::list_runs,
        runs::get_run,
        runs::cancel_run,
        runs::retry_run,
        records::list_records,
        plugins::list_plugins,
        plugins::get_plugin,
        plugins::put_plugin_config,
        plugins::delete_plugin_config,
        customers::customer_overview,
        secrets::list_secrets,
        secrets::put_secret,
        secrets::delete_secret,
        email::list_messages,
        email::get_message,
        email::report_bounces,
        email::list_suppressions,
        email::test_send,
        email::unsubscribe_page,
        email::unsubscribe,
        users::list_users,
        users::create_user,
        users::get_user,
        users::change_user,
        audit::list_audit,
        leads::create_lead,
        leads::list_leads,
        leads::get_lead,
        leads::rejections,
        leads::accept_lead,
        leads::reject_lead,
        teams::list_teams,
        teams::change_member,
        tickets::create_ticket,
        tickets::list_tickets,
        tickets::get_ticket,
        tickets::change_ticket,
        tickets::add_message,
        lead_links::decision_page,
        lead_links::decide_by_link,
        testing::get_clock,
        testing::move_clock,
    ),
    components(schemas(
        ErrorBody,
        ErrorDetail,
        runs::StartRunBody,
        runs::StartedRun,
        events::EventBody,
        testing::MoveClockBody,
        workflows::WorkflowList,
        runs::RunPage,
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
        secrets::SecretBody,
        crate::workflow::catalog::WorkflowSummary,
        email::MessagePage,
        email::BounceReport,
        email::BounceBody,
        email::TestSendBody,
        crate::store::MessageView,
        crate::store::Suppression,
        users::NewUserBody,
        users::UserChangeBody,
        users::UserList,
        crate::store::users::User,
        audit::AuditPage,
        crate::store::audit::AuditEntry,
        crate::crm::lead::NewLead,
        crate::crm::lead::Consent,
        crate::crm::lead::Stage,
        crate::store::leads::LeadView,
        crate::store::timeline::TimelineEntry,
        crate::store::leads::RejectionCount,
        leads::LeadDetail,
        leads::LeadPage,
        leads::Rejections,
        leads::AcceptBody,
        leads::RejectBody,
        teams::TeamList,
        teams::TeamView,
        teams::MemberView,
        teams::MemberChangeBody,
        teams::AbsenceBody,
        crate::store::tickets::TicketView,
        tickets::NewTicketBody,
        tickets::ContactBody,
        tickets::TicketChangeBody,
        tickets::MessageBody,
        tickets::TicketDetail,
        tickets::TicketPage,
    )),
    modifiers(&BearerToken, &Permissions),
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

/// Documents each route's permission: a 403 answer naming it and the roles that have it.
struct Permissions;

impl Modify for Permissions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use axum::http::Method;
        use utoipa::openapi::{RefOr, ResponseBuilder};
        for route in super::route_table(true) {
            let super::Access::Needs(permission) = route.access else {
                continue;
            };
            let Some(item) = openapi.paths.paths.get_mut(route.path) else {
                continue;
            };
            let operation = match route.method {
                Method::GET => item.get.as_mut(),
                Method::POST => item.post.as_mut(),
                Method::PUT => item.put.as_mut(),
                Method::DELETE => item.delete.as_mut(),
                Method::PATCH => item.patch.as_mut(),
                _ => None,
            };
            let Some(operation) = operation else {
                continue;
            };
            let roles: Vec<&str> = crate::access::Role::ALL
                .into_iter()
                .filter(|role| crate::access::allows(*role, permission))
                .map(|role| role.as_str())
                .collect();
            operation.responses.responses.insert(
                "403".into(),
                RefOr::T(
                    ResponseBuilder::new()
                        .description(format!(
                            "The token's role lacks the `{permission}` permission (roles that have it: {})",
                            roles.join(", ")
                        ))
                        .build(),
                ),
            );
        }
    }
}
