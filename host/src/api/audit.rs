//! The audit log for admins: who changed what and when, newest first, filtered.

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use serde::Deserialize;

use super::error::ErrorBody;
use super::extract::Query;
use super::runs::time_param;
use super::{ApiError, AppState};
use crate::store::audit::{AuditEntry, AuditFilter};

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only this action, such as `user.create`, `secret.put`, `plugin.configure`,
    /// `token.revoke`, `suppression.add`, `workflows.reload`.
    action: Option<String>,
    /// Only changes by this actor: `token:ID`, `cli`, `server`, `recipient`,
    /// `webhook:SOURCE`.
    actor: Option<String>,
    /// Only changes made with a token of this user (their id).
    user: Option<String>,
    /// Only changes to this target (a user id, a secret or plugin name, an address).
    target: Option<String>,
    /// Only changes at or after this time (RFC 3339).
    since: Option<String>,
    /// Only changes before this time (RFC 3339).
    until: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<i64>,
    /// 1 to 1000, default 100.
    limit: Option<u32>,
}

/// A page of the audit log.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// Pass as `cursor` for the next (older) page; `null` on the last.
    pub next_cursor: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, description = "Changes, newest first", body = AuditPage),
              (status = 422, body = ErrorBody)))]
pub async fn list_audit(
    State(state): State<AppState>,
    Query(query): Query<AuditQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let limit = super::extract::page_limit(query.limit, 100)?;
    let entries = state
        .store
        .audit()
        .list(&AuditFilter {
            action: query.action,
            actor: query.actor,
            user_id: query.user,
            target: query.target,
            since: time_param("since", &query.since)?,
            until: time_param("until", &query.until)?,
            before: query.cursor,
            limit: i64::from(limit),
        })
        .await?;
    let next_cursor = (entries.len() == limit as usize)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    Ok(Json(AuditPage {
        entries,
        next_cursor,
    }))
}
