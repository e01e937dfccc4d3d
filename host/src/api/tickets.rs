//! Service tickets: opened by a web form, a CRM or an agent (`POST /api/v1/tickets`,
//! idempotent on the external id), read with their SLA clocks (replayed from the timeline
//! under the policy in force: due at, business time used and left, paused, breached) and
//! timeline, listed, changed (status, priority, category, tier, group, assignee — a change
//! of priority, category or tier selects the policy again) and written to (replies,
//! internal notes, the customer's messages). The policy is the first of `sla/` that
//! matches the ticket.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::auth::Principal;
use super::body::parse_body;
use super::error::ErrorBody;
use super::extract::{Path, Query};
use super::{ApiError, AppState};
use crate::service::escalation::evaluate;
use crate::service::sla::{CHANNELS, SlaPolicies, TicketFacts};
use crate::service::sla_clock::ClockState;
use crate::service::ticket::Status;
use crate::store::tickets::{
    Message, NewTicket, TicketChange, TicketEvent, TicketFilter, TicketIntake, TicketView,
};

/// Body of `POST /api/v1/tickets`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTicketBody {
    /// The sending system's id: the same id again is the same ticket.
    #[serde(default)]
    external_id: Option<String>,
    /// The ERP's customer id.
    #[serde(default)]
    customer_id: Option<String>,
    #[serde(default)]
    contact: Option<ContactBody>,
    subject: String,
    #[serde(default)]
    category: Option<String>,
    priority: String,
    /// `email`, `phone`, `web` or `api`.
    channel: String,
    /// The customer's tier (`gold`, …), when the caller knows it.
    #[serde(default)]
    tier: Option<String>,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    assignee: Option<String>,
    /// The customer's first message.
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    phone: Option<String>,
}

/// Body of `PATCH /api/v1/tickets/{id}`: only the fields given change; `null` clears
/// group or assignee.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TicketChangeBody {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    priority: Option<String>,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    tier: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    group: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    assignee: Option<Option<String>>,
}

/// A field given as `null` is `Some(None)`, one left out `None`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// Body of `POST /api/v1/tickets/{id}/messages`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageBody {
    /// `reply` (to the customer: satisfies a response clock), `note` (internal: satisfies
    /// nothing) or `customer` (the customer wrote: starts the next-response clock).
    kind: String,
    body: String,
}

/// A ticket with its clocks now and its timeline.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct TicketDetail {
    #[serde(flatten)]
    ticket: TicketView,
    /// Each clock run under the policy in force: due at, business seconds used and left,
    /// paused, stopped, breached.
    #[schema(value_type = Vec<Object>)]
    clocks: Vec<ClockState>,
    timeline: Vec<TicketEvent>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct TicketPage {
    tickets: Vec<TicketView>,
    next_cursor: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListTicketsQuery {
    /// new, open, waiting-on-customer, waiting-on-third-party, resolved or closed.
    status: Option<String>,
    group: Option<String>,
    assignee: Option<String>,
    customer_id: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// 1 to 1000, default 50.
    limit: Option<u32>,
}

/// Trimmed text of 1 to `max` characters without control characters.
fn text(field: &str, value: &str, max: usize) -> Result<String, ApiError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ApiError::invalid(field, "must not be empty"));
    }
    if value.chars().count() > max {
        return Err(ApiError::invalid(
            field,
            format!("has at most {max} characters"),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(ApiError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(value.to_string())
}

fn optional(field: &str, value: &Option<String>, max: usize) -> Result<Option<String>, ApiError> {
    value
        .as_deref()
        .filter(|v| !v.trim().is_empty())
        .map(|v| text(field, v, max))
        .transpose()
}

fn status(value: &str) -> Result<Status, ApiError> {
    Status::parse(value.trim()).ok_or_else(|| {
        ApiError::invalid(
            "status",
            format!(
                "`{value}` is not a status; use one of {}",
                Status::ALL.map(Status::as_str).join(", ")
            ),
        )
    })
}

/// The name of the first policy that matches the ticket's fields; none when no policy
/// matches (no SLA).
fn policy_for(
    sla: &SlaPolicies,
    category: Option<&str>,
    priority: &str,
    tier: Option<&str>,
    channel: &str,
) -> Option<String> {
    sla.select(&TicketFacts {
        category,
        priority: Some(priority),
        tier,
        channel: Some(channel),
    })
    .map(|p| p.name.clone())
}

fn checked(body: NewTicketBody) -> Result<NewTicket, ApiError> {
    let channel = body.channel.trim().to_string();
    if !CHANNELS.contains(&channel.as_str()) {
        return Err(ApiError::invalid(
            "channel",
            format!(
                "`{channel}` is not a channel; use one of {}",
                CHANNELS.join(", ")
            ),
        ));
    }
    let contact = match &body.contact {
        None => json!({}),
        Some(c) => {
            let email = optional("contact.email", &c.email, 254)?;
            if let Some(e) = &email
                && (!e.contains('@') || e.contains(char::is_whitespace))
            {
                return Err(ApiError::invalid(
                    "contact.email",
                    format!("`{e}` is not an email address"),
                ));
            }
            json!({
                "name": optional("contact.name", &c.name, 200)?,
                "email": email.map(|e| e.to_lowercase()),
                "phone": optional("contact.phone", &c.phone, 40)?,
            })
        }
    };
    Ok(NewTicket {
        external_id: optional("external_id", &body.external_id, 200)?,
        customer_id: optional("customer_id", &body.customer_id, 100)?,
        contact,
        subject: text("subject", &body.subject, 200)?,
        category: optional("category", &body.category, 60)?,
        priority: text("priority", &body.priority, 40)?,
        channel,
        tier: optional("tier", &body.tier, 40)?,
        group: optional("group", &body.group, 100)?,
        assignee: optional("assignee", &body.assignee, 100)?,
        policy: None,
        message: optional("message", &body.message, 20_000)?,
    })
}

#[utoipa::path(post, path = "/api/v1/tickets", tag = "tickets", request_body = NewTicketBody,
    responses((status = 201, description = "The ticket, numbered, under the first SLA policy that matches it", body = TicketView),
              (status = 200, description = "The same external id with the same fields was delivered before: that ticket", body = TicketView),
              (status = 409, description = "The external id was delivered before with other fields; nothing changed", body = ErrorBody),
              (status = 422, description = "A field is wrong; the message names it; nothing stored", body = ErrorBody)))]
pub async fn create_ticket(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let body: NewTicketBody = parse_body(&body)?;
    let mut ticket = checked(body)?;
    let canonical = serde_json::to_vec(&ticket).map_err(|e| ApiError::Internal(e.to_string()))?;
    let hash = hex::encode(Sha256::digest(&canonical));
    let catalog = state.engine.catalog();
    ticket.policy = policy_for(
        &catalog.sla,
        ticket.category.as_deref(),
        &ticket.priority,
        ticket.tier.as_deref(),
        &ticket.channel,
    );
    let id = uuid::Uuid::now_v7().to_string();
    let now = state.engine.clock().now();
    match state
        .store
        .tickets()
        .create(&id, &ticket, &hash, &[], &principal.actor(), now)
        .await?
    {
        TicketIntake::Created(view) => Ok((StatusCode::CREATED, Json(view))),
        TicketIntake::Again(view) => Ok((StatusCode::OK, Json(view))),
        TicketIntake::Conflict(view) => Err(ApiError::Conflict(format!(
            "a ticket with external id `{}` was delivered before with other fields ({}); nothing was changed",
            view.external_id.unwrap_or_default(),
            view.number
        ))),
    }
}

async fn found(state: &AppState, id: &str) -> Result<TicketView, ApiError> {
    state
        .store
        .tickets()
        .get(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("there is no ticket `{id}`")))
}

#[utoipa::path(get, path = "/api/v1/tickets/{id}", tag = "tickets",
    params(("id" = String, Path, description = "Ticket id or number (`T-2026-000123`)")),
    responses((status = 200, description = "The ticket, its SLA clocks now and its timeline", body = TicketDetail),
              (status = 404, body = ErrorBody)))]
pub async fn get_ticket(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let ticket = found(&state, &id).await?;
    let timeline = state.store.tickets().events(&ticket.id).await?;
    let catalog = state.engine.catalog();
    let policy = ticket
        .policy
        .as_deref()
        .and_then(|name| catalog.sla.get(name));
    let clocks = match policy.and_then(|p| Some((p, catalog.calendars.get(&p.calendar)?))) {
        Some((policy, calendar)) => {
            let happenings = state.store.tickets().happenings(&ticket.id).await?;
            let fired = ticket.fired.iter().cloned().collect();
            let now = state.engine.clock().now();
            evaluate(policy, calendar.clone(), &happenings, &fired, now).clocks
        }
        None => Vec::new(),
    };
    Ok(Json(TicketDetail {
        ticket,
        clocks,
        timeline,
    }))
}

#[utoipa::path(get, path = "/api/v1/tickets", tag = "tickets", params(ListTicketsQuery),
    responses((status = 200, description = "Tickets, newest first; pass `next_cursor` as `cursor` for the next page", body = TicketPage),
              (status = 422, body = ErrorBody)))]
pub async fn list_tickets(
    State(state): State<AppState>,
    Query(query): Query<ListTicketsQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let limit = super::extract::page_limit(query.limit, 50)?;
    let tickets = state
        .store
        .tickets()
        .list(&TicketFilter {
            status: query.status.as_deref().map(status).transpose()?,
            group: query.group,
            assignee: query.assignee,
            customer_id: query.customer_id,
            before: query.cursor,
            limit,
        })
        .await?;
    let next_cursor = (tickets.len() == limit as usize)
        .then(|| tickets.last().map(|t| t.id.clone()))
        .flatten();
    Ok(Json(TicketPage {
        tickets,
        next_cursor,
    }))
}

#[utoipa::path(patch, path = "/api/v1/tickets/{id}", tag = "tickets", request_body = TicketChangeBody,
    params(("id" = String, Path, description = "Ticket id or number")),
    responses((status = 200, description = "The ticket after the change (a new priority, category or tier selects the SLA policy again; the clocks keep the time used)", body = TicketView),
              (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn change_ticket(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let body: TicketChangeBody = parse_body(&body)?;
    let before = found(&state, &id).await?;
    let mut change = TicketChange {
        status: body.status.as_deref().map(status).transpose()?,
        priority: body
            .priority
            .as_deref()
            .map(|p| text("priority", p, 40))
            .transpose()?,
        category: body
            .category
            .as_deref()
            .map(|c| text("category", c, 60))
            .transpose()?,
        tier: body
            .tier
            .as_deref()
            .map(|t| text("tier", t, 40))
            .transpose()?,
        group: body.group.map(|g| optional("group", &g, 100)).transpose()?,
        assignee: body
            .assignee
            .map(|a| optional("assignee", &a, 100))
            .transpose()?,
        policy: None,
    };
    change.policy = policy_for(
        &state.engine.catalog().sla,
        change.category.as_deref().or(before.category.as_deref()),
        change.priority.as_deref().unwrap_or(&before.priority),
        change.tier.as_deref().or(before.tier.as_deref()),
        &before.channel,
    );
    let now = state.engine.clock().now();
    let changed = state
        .store
        .tickets()
        .change(&before.id, &change, &principal.actor(), now)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("there is no ticket `{id}`")))?;
    Ok(Json(changed))
}

#[utoipa::path(post, path = "/api/v1/tickets/{id}/messages", tag = "tickets", request_body = MessageBody,
    params(("id" = String, Path, description = "Ticket id or number")),
    responses((status = 201, description = "Added to the timeline", body = TicketView),
              (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn add_message(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let body: MessageBody = parse_body(&body)?;
    let text = text("body", &body.body, 20_000)?;
    let message = match body.kind.as_str() {
        "reply" => Message::Reply { body: text },
        "note" => Message::Note { body: text },
        "customer" => Message::Customer { body: text },
        other => {
            return Err(ApiError::invalid(
                "kind",
                format!("`{other}` is not a kind of message; use reply, note or customer"),
            ));
        }
    };
    let ticket = found(&state, &id).await?;
    let now = state.engine.clock().now();
    state
        .store
        .tickets()
        .add_message(&ticket.id, &message, &principal.actor(), now)
        .await?;
    Ok((StatusCode::CREATED, Json(found(&state, &ticket.id).await?)))
}
