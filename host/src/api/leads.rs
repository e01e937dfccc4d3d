//! Leads: delivered by a form, a CRM or an import (`POST /api/v1/leads`, idempotent on the
//! external id), read and listed (sales only their own and their team's: anything else is
//! a 404, as for a lead that does not exist), accepted and rejected by sales. A delivered
//! lead starts the workflows triggered by `lead.created` in the same transaction; an
//! accept or reject wakes the lead's run with `lead.accepted` / `lead.rejected`.

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
use super::runs::time_param;
use super::{ApiError, AppState};
use crate::access::Role;
use crate::crm::lead::{NewLead, Stage};
use crate::run::NewEvent;
use crate::store::leads::{
    Decided, Decision, HistoryEntry, Intake, LeadFilter, LeadView, RejectionCount,
};

/// A lead with everything that happened to it.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct LeadDetail {
    #[serde(flatten)]
    lead: LeadView,
    history: Vec<HistoryEntry>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct LeadPage {
    leads: Vec<LeadView>,
    next_cursor: Option<String>,
}

/// Rejected leads counted by reason, team and source, for marketing.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Rejections {
    /// The reasons sales may give (`[leads] rejection_reasons`).
    reasons: Vec<String>,
    counts: Vec<RejectionCount>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListLeadsQuery {
    /// new, unqualified, marketing-qualified, sales-qualified, accepted, rejected or
    /// disqualified.
    stage: Option<String>,
    team: Option<String>,
    /// A team member's id.
    owner: Option<String>,
    source: Option<String>,
    /// Only leads created at or after this time (RFC 3339).
    created_after: Option<String>,
    /// Only leads created before this time (RFC 3339).
    created_before: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// 1 to 1000, default 50.
    limit: Option<u32>,
}

/// Body of `POST /api/v1/leads/{id}/accept`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptBody {
    /// The opportunity opened for the lead in the CRM.
    opportunity_id: String,
}

/// Body of `POST /api/v1/leads/{id}/reject`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectBody {
    /// One of `[leads] rejection_reasons` (default: no-budget, no-need, wrong-contact,
    /// competitor, duplicate, not-reachable, other).
    reason: String,
    /// Free text for marketing.
    #[serde(default)]
    note: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/leads", tag = "leads", request_body = NewLead,
    responses((status = 201, description = "Stored with its `lead.created` runs started, durable before the answer; routing follows in the run", body = LeadView),
              (status = 200, description = "Delivered before with the same fields: that lead", body = LeadView),
              (status = 409, description = "Delivered before with other fields: nothing changed", body = ErrorBody),
              (status = 422, description = "A field is missing or invalid (`field` names it); nothing was stored", body = ErrorBody)))]
pub async fn create_lead(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let lead: NewLead = parse_body(&body)?;
    let lead = lead.check()?;
    let canonical = serde_json::to_vec(&lead).map_err(|e| ApiError::Internal(e.to_string()))?;
    let hash = hex::encode(Sha256::digest(&canonical));
    let id = uuid::Uuid::now_v7().to_string();
    let runs = state
        .engine
        .triggered_runs("lead.created", &lead.to_json(&id))?;
    let now = state.engine.clock().now();
    match state
        .store
        .leads()
        .intake(&id, &lead, &hash, &runs, &principal.actor(), now)
        .await?
    {
        Intake::Created(view) => {
            state.engine.runs_added(&runs);
            Ok((StatusCode::CREATED, Json(view)))
        }
        Intake::Again(view) => Ok((StatusCode::OK, Json(view))),
        Intake::Conflict(view) => Err(ApiError::Conflict(format!(
            "a lead with external id `{}` was delivered before with other fields (lead {}); nothing was changed",
            view.external_id, view.id
        ))),
    }
}

/// The lead, if `principal` reaches it; a 404 otherwise, as for no such lead.
async fn reachable(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<LeadView, ApiError> {
    let missing = || ApiError::NotFound(format!("there is no lead `{id}`"));
    let lead = state.store.leads().get(id).await?.ok_or_else(missing)?;
    if principal.reaches(lead.team.as_deref(), lead.owner.as_deref()) {
        Ok(lead)
    } else {
        Err(missing())
    }
}

#[utoipa::path(get, path = "/api/v1/leads/{id}", tag = "leads",
    params(("id" = String, Path, description = "Lead id")),
    responses((status = 200, description = "The lead, its routing decision (`routing`: rules matched, the winner and why, every candidate and why they were skipped) and its history", body = LeadDetail),
              (status = 404, body = ErrorBody)))]
pub async fn get_lead(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let lead = reachable(&state, &principal, &id).await?;
    let history = state.store.leads().history(&id).await?;
    Ok(Json(LeadDetail { lead, history }))
}

#[utoipa::path(get, path = "/api/v1/leads", tag = "leads", params(ListLeadsQuery),
    responses((status = 200, description = "Leads, newest first (sales: their own and their team's); pass `next_cursor` as `cursor` for the next page", body = LeadPage),
              (status = 422, body = ErrorBody)))]
pub async fn list_leads(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<ListLeadsQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let stage = match &query.stage {
        None => None,
        Some(s) => Some(Stage::parse(s).ok_or_else(|| {
            let all: Vec<&str> = Stage::ALL.iter().map(|s| s.as_str()).collect();
            ApiError::invalid(
                "stage",
                format!("unknown stage `{s}`; use one of {}", all.join(", ")),
            )
        })?),
    };
    let reach = (principal.role == Role::Sales).then(|| match &principal.user {
        Some(user) => (
            [Some(user.id.clone()), user.rep.clone()]
                .into_iter()
                .flatten()
                .collect(),
            user.team.clone(),
        ),
        None => (Vec::new(), None),
    });
    let limit = super::extract::page_limit(query.limit, 50)?;
    let leads = state
        .store
        .leads()
        .list(&LeadFilter {
            stage,
            team: query.team,
            owner: query.owner,
            source: query.source,
            created_after: time_param("created_after", &query.created_after)?,
            created_before: time_param("created_before", &query.created_before)?,
            before: query.cursor,
            reach,
            limit,
        })
        .await?;
    let next_cursor = (leads.len() == limit as usize)
        .then(|| leads.last().map(|l| l.id.clone()))
        .flatten();
    Ok(Json(LeadPage { leads, next_cursor }))
}

#[utoipa::path(get, path = "/api/v1/leads/rejections", tag = "leads",
    responses((status = 200, description = "Rejected leads counted by reason, team and source (the leads themselves: `GET /api/v1/leads?stage=rejected`)", body = Rejections)))]
pub async fn rejections(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(Rejections {
        reasons: state.lead_rejection_reasons.to_vec(),
        counts: state.store.leads().rejection_counts().await?,
    }))
}

#[utoipa::path(post, path = "/api/v1/leads/{id}/accept", tag = "leads", request_body = AcceptBody,
    params(("id" = String, Path, description = "Lead id")),
    responses((status = 200, description = "Accepted (or accepted before with this opportunity); the lead's run goes on", body = LeadView),
              (status = 404, body = ErrorBody),
              (status = 409, description = "The lead is closed already with another decision", body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn accept_lead(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let body: AcceptBody = parse_body(&body)?;
    let decision = accept(&body.opportunity_id)?;
    decide(&state, &principal, &id, decision).await
}

#[utoipa::path(post, path = "/api/v1/leads/{id}/reject", tag = "leads", request_body = RejectBody,
    params(("id" = String, Path, description = "Lead id")),
    responses((status = 200, description = "Rejected (or rejected before alike); marketing sees it, the lead's run goes on", body = LeadView),
              (status = 404, body = ErrorBody),
              (status = 409, description = "The lead is closed already with another decision", body = ErrorBody),
              (status = 422, description = "`reason` is not one of the configured reasons (the message lists them)", body = ErrorBody)))]
pub async fn reject_lead(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let body: RejectBody = parse_body(&body)?;
    let decision = reject(&state, &body.reason, body.note.as_deref())?;
    decide(&state, &principal, &id, decision).await
}

/// An acceptance with `opportunity_id`, checked.
pub(super) fn accept(opportunity_id: &str) -> Result<Decision, ApiError> {
    let opportunity_id = opportunity_id.trim().to_string();
    if opportunity_id.is_empty() || opportunity_id.chars().count() > 200 {
        return Err(ApiError::invalid(
            "opportunity_id",
            "has 1 to 200 characters",
        ));
    }
    Ok(Decision::Accept { opportunity_id })
}

/// A rejection for `reason` (one of `[leads] rejection_reasons`) with an optional note,
/// checked.
pub(super) fn reject(
    state: &AppState,
    reason: &str,
    note: Option<&str>,
) -> Result<Decision, ApiError> {
    let reason = reason.trim().to_string();
    if !state.lead_rejection_reasons.contains(&reason) {
        return Err(ApiError::invalid(
            "reason",
            format!(
                "`{reason}` is not a rejection reason; use one of {}",
                state.lead_rejection_reasons.join(", ")
            ),
        ));
    }
    let note = note.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
    if note.as_ref().is_some_and(|n| n.chars().count() > 2000) {
        return Err(ApiError::invalid("note", "has at most 2,000 characters"));
    }
    Ok(Decision::Reject { reason, note })
}

/// Records the decision, then wakes the lead's run with it (see [`record_decision`]).
async fn decide(
    state: &AppState,
    principal: &Principal,
    id: &str,
    decision: Decision,
) -> Result<Json<LeadView>, ApiError> {
    reachable(state, principal, id).await?;
    match record_decision(state, id, &decision, &principal.actor()).await? {
        None => Err(ApiError::NotFound(format!("there is no lead `{id}`"))),
        Some(Decided::Refused { why, .. }) => Err(ApiError::Conflict(why)),
        Some(Decided::Done(lead) | Decided::Again(lead)) => Ok(Json(lead)),
    }
}

/// Records `decision` on lead `id` as made by `actor`, then wakes the lead's run with
/// `lead.accepted` / `lead.rejected`. The event has an id per lead and decision, so
/// repeating a decision after a failure between the two delivers it once.
pub(super) async fn record_decision(
    state: &AppState,
    id: &str,
    decision: &Decision,
    actor: &crate::store::audit::Actor,
) -> Result<Option<Decided>, ApiError> {
    let now = state.engine.clock().now();
    let decided = state.store.leads().decide(id, decision, actor, now).await?;
    let Some(Decided::Done(lead) | Decided::Again(lead)) = &decided else {
        return Ok(decided);
    };
    let by = actor.user_id.clone().unwrap_or_else(|| actor.name.clone());
    let (event_type, payload) = match decision {
        Decision::Accept { opportunity_id } => (
            "lead.accepted",
            json!({"lead": lead.id, "by": by, "opportunity_id": opportunity_id}),
        ),
        Decision::Reject { reason, note } => (
            "lead.rejected",
            json!({"lead": lead.id, "by": by, "reason": reason, "note": note}),
        ),
    };
    let event = NewEvent {
        event_type: event_type.to_string(),
        key: lead.id.clone(),
        payload,
    };
    state
        .engine
        .deliver_event(event, Some(&format!("{event_type}:{}", lead.id)))
        .await?;
    Ok(decided)
}
