//! Route handlers.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value as Json_, json};
use sha2::{Digest, Sha256};

use super::error::ErrorBody;
use super::{ApiError, AppState};
use crate::run::{NewEvent, RunStatus};
use crate::store::{Delivered, RunView};
use crate::store::{IdempotentStart, RunFilter, StoredAnswer};

/// Parses a JSON body, naming the problem (and the field, when serde knows it) on error.
pub(super) fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::Invalid {
            field: None,
            message: "the request body is empty; send a JSON object".into(),
        });
    }
    serde_json::from_slice(body).map_err(|e| {
        let message = e.to_string();
        let field = message
            .split('`')
            .nth(1)
            .filter(|_| message.contains("field"))
            .map(str::to_string);
        ApiError::Invalid { field, message }
    })
}

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
    let store = state.engine.store().ping().await;
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

/// Prometheus metrics (see the `observability` module for names).
#[utoipa::path(get, path = "/metrics", tag = "operations", security(()),
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let now = state.engine.clock().now();
    let (depth, oldest) = state.engine.store().jobs().queue_stats(now).await?;
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

#[utoipa::path(post, path = "/api/v1/runs/{id}/cancel", tag = "runs",
    params(("id" = String, Path, description = "Run id")),
    responses((status = 200, description = "Cancelled, with the child runs cancelled with it"),
              (status = 404, body = ErrorBody), (status = 409, description = "Already finished", body = ErrorBody)))]
pub async fn cancel_run(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
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
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
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

/// Body of `POST /api/v1/workflows/{name}/runs`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRunBody {
    /// The run's input, checked against the workflow's input schema.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    input: Option<Json_>,
}

/// A started run.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct StartedRun {
    id: String,
    workflow: String,
    /// Always true: a repeated `Idempotency-Key` replays the first answer.
    created: bool,
}

/// Every workflow file and the problems of shared files (calendars).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct WorkflowList {
    workflows: Vec<crate::workflow::catalog::WorkflowSummary>,
    diagnostics: Vec<String>,
}

/// One page of runs.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct RunPage {
    runs: Vec<RunView>,
    next_cursor: Option<String>,
}

/// Starts a run. With an `Idempotency-Key` header, a repeated request (a client retrying
/// after a timeout or a crash) returns the run the first one started instead of a second.
#[utoipa::path(post, path = "/api/v1/workflows/{name}/runs", tag = "runs",
    params(("name" = String, Path, description = "Workflow name"),
           ("Idempotency-Key" = Option<String>, Header, description = "Repeats with the same key return the first run")),
    request_body = StartRunBody,
    responses((status = 201, description = "Run started; with an `Idempotency-Key` seen before (same body), the first answer byte for byte", body = StartedRun),
              (status = 404, body = ErrorBody), (status = 409, description = "The workflow file is invalid", body = ErrorBody),
              (status = 422, description = "The input does not match the workflow's input schema, or the `Idempotency-Key` was used with another body", body = ErrorBody)))]
pub async fn start_run(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    raw: Bytes,
) -> Result<Response, ApiError> {
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

/// Body of `POST /api/v1/events`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventBody {
    /// Event type, e.g. `lead.accepted`.
    #[serde(rename = "type")]
    event_type: String,
    /// Correlation key matched against `wait_for.key`.
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    payload: Option<Json_>,
}

#[utoipa::path(post, path = "/api/v1/events", tag = "events", request_body = EventBody,
    responses((status = 202, description = "Stored; waiting runs resumed, triggered workflows started", body = Delivered),
              (status = 422, body = ErrorBody)))]
pub async fn deliver_event(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let body: EventBody = parse_body(&body)?;
    if body.event_type.trim().is_empty() {
        return Err(ApiError::invalid("type", "the event type is empty"));
    }
    if body
        .event_type
        .starts_with(crate::workflow::TIMER_EVENT_PREFIX)
    {
        return Err(ApiError::invalid(
            "type",
            "event types starting with `timer.` are reserved for run timers",
        ));
    }
    let delivered = state
        .engine
        .deliver_event(NewEvent {
            event_type: body.event_type,
            key: body.key.unwrap_or_default(),
            payload: body.payload.unwrap_or_else(|| json!({})),
        })
        .await?;
    Ok((StatusCode::ACCEPTED, Json(delivered)))
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

fn time_param(
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
    let limit = query.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            "limit must be between 1 and 1000",
        ));
    }
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
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let store = state.engine.store();
    let run = store
        .runs()
        .get(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("there is no run `{id}`")))?;
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

#[utoipa::path(get, path = "/api/v1/records/{collection}", tag = "records",
    params(("collection" = String, Path, description = "Collection written by `record` steps")),
    responses((status = 200, description = "The collection's records by key")))]
pub async fn list_records(
    State(state): State<AppState>,
    Path(collection): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let records = state.engine.store().records().list(&collection).await?;
    let records: Vec<Json_> = records
        .into_iter()
        .map(|(key, data)| json!({"key": key, "data": data}))
        .collect();
    Ok(Json(json!({"collection": collection, "records": records})))
}

#[utoipa::path(get, path = "/api/v1/secrets", tag = "secrets",
    responses((status = 200, description = "Names and times of all secrets; values are never returned", body = Vec<crate::store::SecretInfo>)))]
pub async fn list_secrets(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(
        json!({"secrets": state.engine.store().secrets().list().await?}),
    ))
}

/// Body of `PUT /api/v1/secrets/{name}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretBody {
    /// The value; stored encrypted, never returned.
    value: String,
}

#[utoipa::path(put, path = "/api/v1/secrets/{name}", tag = "secrets", request_body = SecretBody,
    params(("name" = String, Path, description = "Letters, digits, `_`, `-`, `.`")),
    responses((status = 204, description = "Stored (encrypted)"), (status = 422, body = ErrorBody)))]
pub async fn put_secret(
    State(state): State<AppState>,
    Path(name): Path<String>,
    raw: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    crate::secrets::check_name(&name).map_err(|e| ApiError::invalid("name", e.to_string()))?;
    // Parse without echoing the body in errors: it holds the secret.
    let body: SecretBody = serde_json::from_slice(&raw).map_err(|_| {
        ApiError::invalid(
            "value",
            "send a JSON object {\"value\": \"...\"} and nothing else",
        )
    })?;
    let sealed = state.master_key.seal(&name, body.value.as_bytes());
    drop(zeroize::Zeroizing::new(body.value));
    state
        .engine
        .store()
        .secrets()
        .put(&name, &sealed, chrono::Utc::now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/v1/secrets/{name}", tag = "secrets",
    params(("name" = String, Path, description = "Secret name")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody)))]
pub async fn delete_secret(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    if state.engine.store().secrets().delete(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("there is no secret `{name}`")))
    }
}

/// The test clock and how many jobs are due at it (0 once the engine caught up).
#[utoipa::path(get, path = "/api/v1/testing/clock", tag = "testing",
    responses((status = 200, description = "The manual clock and the jobs due at it (only with `[testing] manual_clock = true`)")))]
pub async fn get_clock(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let now = state.engine.clock().now();
    let due_jobs = state.engine.store().jobs().due(now).await?;
    Ok(Json(json!({"now": now, "due_jobs": due_jobs})))
}

/// Body of `POST /api/v1/testing/clock`: exactly one of the two.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveClockBody {
    /// A duration such as `90s`, `2h`, `3d`.
    #[serde(default)]
    advance: Option<String>,
    /// An RFC 3339 time to jump to (forward only).
    #[serde(default)]
    set: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/testing/clock", tag = "testing", request_body = MoveClockBody,
    responses((status = 200, description = "The clock's new time"), (status = 422, body = ErrorBody)))]
pub async fn move_clock(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let clock = state
        .manual_clock
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("the manual clock is off".into()))?;
    let body: MoveClockBody = parse_body(&body)?;
    let now = match (body.advance, body.set) {
        (Some(d), None) => {
            let d = kontor_time::parse_duration(&d)
                .map_err(|e| ApiError::invalid("advance", e.to_string()))?;
            clock.advance(d)
        }
        (None, Some(t)) => {
            let t = chrono::DateTime::parse_from_rfc3339(&t)
                .map_err(|e| ApiError::invalid("set", e.to_string()))?;
            clock.set(t.to_utc())
        }
        _ => {
            return Err(ApiError::invalid(
                "advance",
                "give exactly one of `advance` or `set`",
            ));
        }
    };
    state.engine.wake();
    Ok(Json(json!({"now": now})))
}
