//! Events from outside (a lead arrived, a customer answered): they resume the runs
//! waiting for them and start the runs they trigger.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

use super::body::parse_body;
use super::error::ErrorBody;
use super::{ApiError, AppState};
use crate::run::NewEvent;
use crate::store::Delivered;

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
    payload: Option<Value>,
    /// The sender's id for this delivery (1–200 characters): delivered again, it is
    /// accepted once (`duplicate: true`), so a retrying webhook starts nothing twice.
    #[serde(default)]
    id: Option<String>,
}

/// Delivers an event. The answer comes once the event, the runs it resumed and the runs
/// it started are durably committed (on SQLite fsynced, on PostgreSQL with
/// `synchronous_commit`): concurrent deliveries share one transaction and one flush, but
/// each answers only after its own commit, and one that fails fails alone, storing
/// nothing.
#[utoipa::path(post, path = "/api/v1/events", tag = "events", request_body = EventBody,
    responses((status = 202, description = "Stored and durable; waiting runs resumed, triggered workflows started (or, for an id delivered before, nothing again: `duplicate`)", body = Delivered),
              (status = 422, description = "A bad body, or a payload that does not fit the input schema of a workflow the event starts (`field`: `payload`; the message names the failing fields); nothing was stored", body = ErrorBody)))]
pub async fn deliver_event(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let (event, id) = checked(parse_body(&body)?)?;
    let delivered = state.engine.deliver_event(event, id.as_deref()).await?;
    Ok((StatusCode::ACCEPTED, Json(delivered)))
}

/// The event a body describes and its delivery id, checked: a type that is not empty
/// and not a timer's, an id of 1 to 200 characters.
pub(super) fn checked(body: EventBody) -> Result<(NewEvent, Option<String>), ApiError> {
    if body.event_type.trim().is_empty() {
        return Err(ApiError::invalid("type", "the event type is empty"));
    }
    if body.event_type.starts_with(crate::run::TIMER_EVENT_PREFIX) {
        return Err(ApiError::invalid(
            "type",
            "event types starting with `timer.` are reserved for run timers",
        ));
    }
    if let Some(id) = &body.id
        && (id.trim().is_empty() || id.len() > 200)
    {
        return Err(ApiError::invalid(
            "id",
            "an event id has 1 to 200 characters",
        ));
    }
    let event = NewEvent {
        event_type: body.event_type,
        key: body.key.unwrap_or_default(),
        payload: body.payload.unwrap_or_else(|| json!({})),
    };
    Ok((event, body.id))
}
