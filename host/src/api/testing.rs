//! The manual clock of `[testing] manual_clock = true`: read it and move it, so tests
//! drive timers and SLAs without waiting.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;

use super::body::parse_body;
use super::error::ErrorBody;
use super::{ApiError, AppState};

/// The test clock and how many jobs are due at it (0 once the engine caught up).
#[utoipa::path(get, path = "/api/v1/testing/clock", tag = "testing",
    responses((status = 200, description = "The manual clock and the jobs due at it (only with `[testing] manual_clock = true`)")))]
pub async fn get_clock(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let now = state.engine.clock().now();
    let due_jobs = state.store.jobs().due(now).await?;
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
