//! Teams and their members at run time: who takes leads now (open leads against capacity,
//! absence, active), and changing absence and active — what a team lead does before a
//! holiday. Teams and members themselves are declared in the territory files; a change
//! here is stored, audited and honoured by the next assignment.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use super::auth::Principal;
use super::body::parse_body;
use super::error::ErrorBody;
use super::extract::Path;
use super::{ApiError, AppState};
use crate::access::Role;
use crate::crm::assignment::RepState;
use crate::store::leads::MemberChange;

/// A team member now.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MemberView {
    /// A user's id or rep id.
    user: String,
    capacity: u32,
    open: u32,
    assigned: u64,
    active: bool,
    absent_from: Option<DateTime<Utc>>,
    absent_until: Option<DateTime<Utc>>,
    /// Whether they would be given a lead now (active, present, below capacity).
    available: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TeamView {
    name: String,
    lead: Option<String>,
    locale: String,
    calendar: Option<String>,
    strategy: String,
    members: Vec<MemberView>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TeamList {
    teams: Vec<TeamView>,
}

/// An absence: either end may be open.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AbsenceBody {
    /// RFC 3339; absent: from now.
    #[serde(default)]
    from: Option<String>,
    /// RFC 3339; absent: until changed again.
    #[serde(default)]
    until: Option<String>,
}

/// Body of `PATCH /api/v1/teams/{team}/members/{member}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberChangeBody {
    /// `false`: the member takes no leads until `true` again.
    #[serde(default)]
    active: Option<bool>,
    /// Sets the absence; `null` ends it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<AbsenceBody>)]
    absence: Option<Option<AbsenceBody>>,
}

fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

fn member_view(
    member: &crate::crm::territory::Member,
    state: &RepState,
    now: DateTime<Utc>,
) -> MemberView {
    MemberView {
        user: member.user.clone(),
        capacity: member.capacity,
        open: state.open,
        assigned: state.assigned,
        active: state.active,
        absent_from: state.absent_from,
        absent_until: state.absent_until,
        available: state.active && !state.absent_at(now) && state.open < member.capacity,
    }
}

#[utoipa::path(get, path = "/api/v1/teams", tag = "leads",
    responses((status = 200, description = "The teams of the territory files with every member's open leads, capacity, absence and whether they take a lead now", body = TeamList)))]
pub async fn list_teams(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let catalog = state.engine.catalog();
    let now = state.engine.clock().now();
    let mut teams = Vec::new();
    for team in catalog.territories.teams.values() {
        let states = state.store.leads().reps(&team.name).await?;
        let members = team
            .members
            .iter()
            .map(|m| {
                let s = states
                    .iter()
                    .find(|s| s.user == m.user)
                    .cloned()
                    .unwrap_or_else(|| RepState::new(&m.user));
                member_view(m, &s, now)
            })
            .collect();
        teams.push(TeamView {
            name: team.name.clone(),
            lead: team.lead.clone(),
            locale: team.locale.as_str().to_string(),
            calendar: team.calendar.clone(),
            strategy: team.strategy.as_str().to_string(),
            members,
        });
    }
    Ok(Json(TeamList { teams }))
}

#[utoipa::path(patch, path = "/api/v1/teams/{team}/members/{member}", tag = "leads", request_body = MemberChangeBody,
    params(("team" = String, Path, description = "Team name"), ("member" = String, Path, description = "The member's user id or rep id")),
    responses((status = 200, description = "The member as changed; the next assignment honours it", body = MemberView),
              (status = 404, description = "No such team or member (sales: not their own team)", body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn change_member(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((team, member)): Path<(String, String)>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let catalog = state.engine.catalog();
    let (found, declared) = catalog
        .territories
        .member(&team, &member)
        .map_err(ApiError::NotFound)?;
    // Sales change their own team only; another team is as good as none.
    if principal.role == Role::Sales
        && principal.user.as_ref().and_then(|u| u.team.as_deref()) != Some(found.name.as_str())
    {
        return Err(ApiError::NotFound(format!("there is no team `{team}`")));
    }
    let body: MemberChangeBody = parse_body(&body)?;
    let absent = match body.absence {
        None => None,
        Some(None) => Some((None, None)),
        Some(Some(absence)) => {
            let now = state.engine.clock().now();
            let from = super::runs::time_param("absence.from", &absence.from)?.or(Some(now));
            let until = super::runs::time_param("absence.until", &absence.until)?;
            crate::crm::assignment::check_absence(from, until)
                .map_err(|m| ApiError::invalid("absence.until", m))?;
            Some((from, until))
        }
    };
    let change = MemberChange {
        active: body.active,
        absent,
    };
    let now = state.engine.clock().now();
    let after = state
        .store
        .leads()
        .set_member(
            &found.name,
            &declared.user,
            &change,
            &principal.actor(),
            now,
        )
        .await?;
    Ok(Json(member_view(declared, &after, now)))
}
