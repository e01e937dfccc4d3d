//! People: users with their roles, team and rep id, made, changed and deactivated by
//! admins. A user is never deleted here (the audit log and leads refer to them);
//! deactivating one refuses their tokens at once.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde::{Deserialize, Deserializer};

use super::auth::Principal;
use super::body::parse_body;
use super::error::ErrorBody;
use super::extract::Path;
use super::{ApiError, AppState};
use crate::store::users::{User, UserConflict, UserFields};
use crate::users::FieldError;

/// Body of `POST /api/v1/users`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUserBody {
    /// 1 to 200 characters.
    name: String,
    /// Unique; stored in lower case.
    email: String,
    /// At least one of admin, integrator, marketing, service-lead, sales, viewer.
    roles: Vec<String>,
    /// The sales team the user works in.
    #[serde(default)]
    team: Option<String>,
    /// The id territory rules and the CRM use for this person; unique.
    #[serde(default)]
    rep: Option<String>,
}

/// Body of `PATCH /api/v1/users/{id}`: the fields to change; `null` clears `team` or
/// `rep`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChangeBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    roles: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    team: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    rep: Option<Option<String>>,
    /// `false` deactivates the user (their tokens are refused); `true` activates again.
    #[serde(default)]
    active: Option<bool>,
}

/// A field that is present (its value may be `null`), as opposed to absent.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Every user.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct UserList {
    pub users: Vec<User>,
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError::invalid(e.field, e.message)
    }
}

impl From<UserConflict> for ApiError {
    fn from(e: UserConflict) -> Self {
        ApiError::Conflict(e.to_string())
    }
}

#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    responses((status = 200, body = UserList)))]
pub async fn list_users(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(UserList {
        users: state.store.users().list().await?,
    }))
}

#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = String, Path, description = "The user's id or email address")),
    responses((status = 200, body = User), (status = 404, body = ErrorBody)))]
pub async fn get_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(find(&state, &id).await?))
}

async fn find(state: &AppState, id_or_email: &str) -> Result<User, ApiError> {
    state
        .store
        .users()
        .find(id_or_email)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("there is no user `{id_or_email}`")))
}

#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = NewUserBody,
    responses((status = 201, body = User),
              (status = 409, description = "The email address or rep id belongs to another user", body = ErrorBody),
              (status = 422, description = "A field is missing or invalid (`field` names it)", body = ErrorBody)))]
pub async fn create_user(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let body: NewUserBody = parse_body(&body)?;
    let fields = crate::users::check_new(UserFields {
        name: Some(body.name),
        email: Some(body.email),
        roles: Some(body.roles),
        team: Some(body.team),
        rep: Some(body.rep),
        active: None,
    })?;
    let id = uuid::Uuid::now_v7().to_string();
    let now = state.engine.clock().now();
    let user = state
        .store
        .users()
        .create(&id, &fields, &principal.actor(), now)
        .await??;
    Ok((StatusCode::CREATED, Json(user)))
}

#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users", request_body = UserChangeBody,
    params(("id" = String, Path, description = "The user's id or email address")),
    responses((status = 200, description = "The user as changed", body = User),
              (status = 404, body = ErrorBody),
              (status = 409, description = "The email address or rep id belongs to another user", body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn change_user(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let body: UserChangeBody = parse_body(&body)?;
    let fields = crate::users::check_change(UserFields {
        name: body.name,
        email: body.email,
        roles: body.roles,
        team: body.team,
        rep: body.rep,
        active: body.active,
    })?;
    let user = find(&state, &id).await?;
    if principal.user.as_ref().is_some_and(|me| me.id == user.id) && fields.active == Some(false) {
        return Err(ApiError::invalid(
            "active",
            "you cannot deactivate yourself; ask another admin",
        ));
    }
    let now = state.engine.clock().now();
    let changed = state
        .store
        .users()
        .update(&user.id, &fields, &principal.actor(), now)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("there is no user `{id}`")))??;
    // Their tokens' cached principals are out of date (deactivated, roles changed).
    state.tokens.clear();
    Ok(Json(changed))
}
