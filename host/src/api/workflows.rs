//! The loaded workflows, and reloading them from the workflows folder.

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use serde_json::json;

use super::AppState;
use super::error::ErrorBody;

/// Every workflow file and the problems of shared files (calendars).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct WorkflowList {
    workflows: Vec<crate::workflow::catalog::WorkflowSummary>,
    diagnostics: Vec<String>,
}

#[utoipa::path(get, path = "/api/v1/workflows", tag = "workflows",
    responses((status = 200, description = "Every workflow file, valid or with its diagnostics", body = WorkflowList),
              (status = 401, body = ErrorBody)))]
pub async fn list_workflows(State(state): State<AppState>) -> impl IntoResponse {
    let catalog = state.engine.catalog();
    Json(json!({
        "workflows": catalog.summaries(),
        "diagnostics": catalog.diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>(),
    }))
}

/// Reloads the workflows folder; new runs use the new versions, running ones keep theirs.
#[utoipa::path(post, path = "/api/v1/workflows/reload", tag = "workflows",
    responses((status = 200, description = "The reloaded workflows with their validation state"),
              (status = 401, body = ErrorBody)))]
pub async fn reload_workflows(State(state): State<AppState>) -> impl IntoResponse {
    if let Some(registry) = state.engine.plugins() {
        registry.refresh().await;
    }
    let catalog = state.engine.load_catalog(&state.workflows_dir);
    let summaries = catalog.summaries();
    let diagnostics: Vec<String> = catalog
        .diagnostics
        .iter()
        .map(ToString::to_string)
        .collect();
    state.engine.set_catalog(catalog);
    Json(json!({"workflows": summaries, "diagnostics": diagnostics}))
}
