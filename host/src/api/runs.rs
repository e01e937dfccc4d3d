//! Runs: starting one (idempotently with an `Idempotency-Key`), listing and reading them
//! with their step history, cancelling and retrying.

use axum::body::Bytes;
use axum::extract::State;
use axum::{Extension, Json};

use super::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::auth::Principal;
use super::body::parse_body;
use super::error::ErrorBody;
use super::{ApiError, AppState};
use crate::run::RunStatus;
use crate::store::RunView;
use crate::store::{IdempotentStart, RunFilter, StoredAnswer};

/// Body of `POST /api/v1/workflows/{name}/runs`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRunBody {
    /// The run's input, checked against the workflow's input schema.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    input: Option<Value>,
}

/// A started run.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct StartedRun {
    id: String,
    workflow: String,
    /// Always true: a repeated `Idempotency-Key` replays the first answer.
    created: bool,
}

/// Starts a run. With an `Idempotency-Key` header, a repeated request (a client retrying
/// after a timeout or a crash) returns the run the first one started instead of a second.
/// The answer comes once the run is durably committed; concurrent starts share one
/// transaction and one flush, each answering after its own commit.
#[utoipa::path(post, path = "/api/v1/workflows/{name}/runs", tag = "runs",
    params(("name" = String, Path, description = "Workflow name"),
           ("Idempotency-Key" = Option<String>, Header, description = "Repeats with the same key return the first run")),
    request_body = StartRunBody,
    responses((status = 201, description = "Run started; with an `Idempotency-Key` seen before (same body), the first answer byte for byte", body = StartedRun),
              (status = 404, body = ErrorBody), (status = 409, description = "The workflow file is invalid", body = ErrorBody),
              (status = 422, description = "The input does not match the workflow's input schema, or the `Idempotency-Key` was used with another body", body = ErrorBody)))]
pub async fn start_run(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    headers: HeaderMap,
    raw: Bytes,
) -> Result<Response, ApiError> {
    // A workflow of a domain the caller does not own is one they do not know of.
    if let Some(workflow) = state.engine.catalog().get(&name)
        && !principal.sees(workflow.domain.map(|d| d.as_str()))
    {
        return Err(crate::engine::EngineError::UnknownWorkflow(name).into());
    }
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= 200)
                .ok_or_else(|| {
                    ApiError::invalid(
                        "Idempotency-Key",
                        "must be 1 to 200 visible ASCII characters",
                    )
                })?
                .to_string(),
        ),
    };
    let body: StartRunBody = if raw.is_empty() {
        StartRunBody { input: None }
    } else {
        parse_body(&raw)?
    };
    let input = body.input.unwrap_or_else(|| json!({}));
    let answer = |run_id: &str| StoredAnswer {
        status: StatusCode::CREATED.as_u16(),
        body: json!({"id": run_id, "workflow": name, "created": true}).to_string(),
    };
    let Some(key) = idempotency_key else {
        let started = state.engine.start_run(&name, input).await?;
        return Ok(stored_response(&answer(&started.run_id)));
    };
    let request_hash = hex::encode(Sha256::digest(&raw));
    let (once, stored) = state
        .engine
        .start_run_once(&name, input, &key, &request_hash, answer)
        .await?;
    match once {
        IdempotentStart::Started => Ok(stored_response(&stored)),
        IdempotentStart::Replay {
            request_hash: first,
            answer,
        } if first == request_hash => Ok(stored_response(&answer)),
        IdempotentStart::Replay { .. } => Err(ApiError::invalid(
            "Idempotency-Key",
            "this key was used with a different request body; use a new key for a new request",
        )),
    }
}

/// An answer exactly as stored, bytes and status.
fn stored_response(answer: &StoredAnswer) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        answer.body.clone(),
    )
        .into_response()
}

/// One page of runs.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct RunPage {
    runs: Vec<RunView>,
    next_cursor: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListRunsQuery {
    /// Only runs of this workflow.
    workflow: Option<String>,
    /// running, waiting, completed, failed or cancelled.
    status: Option<String>,
    /// Only child runs of this run.
    parent: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// 1 to 1000, default 50.
    limit: Option<u32>,
    /// Only runs created at or after this time (RFC 3339).
    created_after: Option<String>,
    /// Only runs created before this time (RFC 3339).
    created_before: Option<String>,
}

pub(super) fn time_param(
    field: &str,
    value: &Option<String>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
    value
        .as_deref()
        .map(|v| {
            chrono::DateTime::parse_from_rfc3339(v)
                .map(|t| t.to_utc())
                .map_err(|e| {
                    ApiError::invalid(field, format!("`{v}` is not an RFC 3339 time: {e}"))
                })
        })
        .transpose()
}

#[utoipa::path(get, path = "/api/v1/runs", tag = "runs", params(ListRunsQuery),
    responses((status = 200, description = "Runs, newest first; pass `next_cursor` as `cursor` for the next page", body = RunPage),
              (status = 422, body = ErrorBody)))]
pub async fn list_runs(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<ListRunsQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let status = match &query.status {
        None => None,
        Some(s) => Some(RunStatus::parse(s).ok_or_else(|| {
            ApiError::invalid(
                "status",
                format!(
                    "unknown status `{s}`; use running, waiting, completed, failed or cancelled"
                ),
            )
        })?),
    };
    let limit = super::extract::page_limit(query.limit, 50)?;
    let runs = state
        .engine
        .store()
        .runs()
        .list(&RunFilter {
            workflow: query.workflow,
            status,
            parent_id: query.parent,
            before: query.cursor,
            created_after: time_param("created_after", &query.created_after)?,
            created_before: time_param("created_before", &query.created_before)?,
            domains: crate::access::visible_domains(principal.role)
                .map(|seen| seen.iter().map(|d| d.as_str()).collect()),
            limit,
        })
        .await?;
    let next_cursor = (runs.len() == limit as usize)
        .then(|| runs.last().map(|r| r.id.clone()))
        .flatten();
    Ok(Json(json!({"runs": runs, "next_cursor": next_cursor})))
}

#[utoipa::path(get, path = "/api/v1/runs/{id}", tag = "runs",
    params(("id" = String, Path, description = "Run id")),
    responses((status = 200, description = "The run, its step history (`steps`) and child counts (`children`)", body = RunView),
              (status = 404, body = ErrorBody)))]
pub async fn get_run(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let run = visible_run(&state, &principal, &id).await?;
    let store = state.store;
    let steps = store.runs().steps(&id).await?;
    let children = store.runs().child_counts(&id).await?;
    let mut body = serde_json::to_value(run).map_err(|e| ApiError::Internal(e.to_string()))?;
    body["steps"] = serde_json::to_value(steps).map_err(|e| ApiError::Internal(e.to_string()))?;
    if children.total > 0 {
        body["children"] =
            serde_json::to_value(children).map_err(|e| ApiError::Internal(e.to_string()))?;
    }
    Ok(Json(body))
}

#[utoipa::path(post, path = "/api/v1/runs/{id}/cancel", tag = "runs",
    params(("id" = String, Path, description = "Run id")),
    responses((status = 200, description = "Cancelled, with the child runs cancelled with it"),
              (status = 404, body = ErrorBody), (status = 409, description = "Already finished", body = ErrorBody)))]
pub async fn cancel_run(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    visible_run(&state, &principal, &id).await?;
    match state.engine.cancel_run(&id).await? {
        None => Err(ApiError::NotFound(format!("there is no run `{id}`"))),
        Some(cancelled) if cancelled.is_empty() => Err(ApiError::Conflict(format!(
            "run `{id}` has already finished"
        ))),
        Some(cancelled) => Ok(Json(
            json!({"id": id, "status": "cancelled", "cancelled_runs": cancelled}),
        )),
    }
}

#[utoipa::path(post, path = "/api/v1/runs/{id}/retry", tag = "runs",
    params(("id" = String, Path, description = "Run id")),
    responses((status = 200, description = "The failed step is scheduled again"),
              (status = 404, body = ErrorBody), (status = 409, description = "The run has not failed", body = ErrorBody)))]
pub async fn retry_run(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    visible_run(&state, &principal, &id).await?;
    match state.engine.retry_run(&id).await? {
        Ok(step) => Ok(Json(
            json!({"id": id, "status": "running", "retrying_step": step}),
        )),
        Err(crate::store::RetryRefused::NotFound) => {
            Err(ApiError::NotFound(format!("there is no run `{id}`")))
        }
        Err(crate::store::RetryRefused::NotFailed(status)) => Err(ApiError::Conflict(format!(
            "run `{id}` is {status}; only failed runs can be retried"
        ))),
    }
}

/// Run `id` if it exists and `principal` sees its domain; 404 alike otherwise.
async fn visible_run(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<RunView, ApiError> {
    state
        .store
        .runs()
        .get(id)
        .await?
        .filter(|run| principal.sees(run.domain.as_deref()))
        .ok_or_else(|| ApiError::NotFound(format!("there is no run `{id}`")))
}
