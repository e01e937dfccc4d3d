//! The loaded workflows, and reloading them from the workflows folder.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde::Deserialize;

use super::auth::Principal;
use super::error::ErrorBody;
use super::extract::Query;
use super::{ApiError, AppState};
use crate::store::audit::Change;

/// One page of workflow files, in name order, with the problems of shared files
/// (calendars, templates) and how many files are valid and invalid in all.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct WorkflowList {
    workflows: Vec<crate::workflow::catalog::WorkflowSummary>,
    diagnostics: Vec<String>,
    valid: usize,
    invalid: usize,
    /// Pass as `cursor` for the next page; absent on the last.
    next_cursor: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListWorkflowsQuery {
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// 1 to 1000, default 100.
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/workflows", tag = "workflows", params(ListWorkflowsQuery),
    responses((status = 200, description = "Workflow files by name, valid or with their diagnostics (at most 20 each); pass `next_cursor` as `cursor` for the next page", body = WorkflowList),
              (status = 401, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn list_workflows(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<ListWorkflowsQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let limit = page_limit(query.limit)?;
    Ok(Json(page(
        &state.engine.catalog(),
        query.cursor.as_deref(),
        limit,
        principal.role,
    )))
}

/// Reloads the workflows folder; new runs use the new versions, running ones keep theirs.
#[utoipa::path(post, path = "/api/v1/workflows/reload", tag = "workflows",
    responses((status = 200, description = "The first page of the reloaded workflows with their validation state", body = WorkflowList),
              (status = 401, body = ErrorBody)))]
pub async fn reload_workflows(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<impl IntoResponse, ApiError> {
    if let Some(registry) = state.engine.plugins() {
        registry.refresh().await;
    }
    let catalog = state.engine.load_catalog(&state.workflows_dir);
    let answer = page(&catalog, None, DEFAULT_PAGE, principal.role);
    let actor = principal.actor();
    let change = Change::new(&actor, "workflows.reload", "workflows").with(serde_json::json!({
        "valid": answer.valid, "invalid": answer.invalid,
    }));
    state.engine.set_catalog(catalog);
    state
        .store
        .audit()
        .record(&change, state.engine.clock().now())
        .await?;
    Ok(Json(answer))
}

const DEFAULT_PAGE: usize = 100;

fn page_limit(limit: Option<u32>) -> Result<usize, ApiError> {
    super::extract::page_limit(limit, DEFAULT_PAGE as u32).map(|n| n as usize)
}

/// Up to `limit` workflows named after `cursor`, of those `role` sees (every invalid file:
/// its domain is unknown).
fn page(
    catalog: &crate::workflow::Catalog,
    cursor: Option<&str>,
    limit: usize,
    role: crate::access::Role,
) -> WorkflowList {
    let shown = |domain| crate::access::sees(role, domain);
    let valid = catalog.valid().filter(|w| shown(w.domain)).count();
    let invalid = catalog.workflows.len() - catalog.valid().count();
    let mut workflows = catalog.summaries_after(cursor, limit + 1, shown);
    let next_cursor = if workflows.len() > limit {
        workflows.truncate(limit);
        workflows.last().map(|w| w.name.clone())
    } else {
        None
    };
    WorkflowList {
        workflows,
        diagnostics: catalog
            .diagnostics
            .iter()
            .map(ToString::to_string)
            .collect(),
        valid,
        invalid,
        next_cursor,
    }
}
