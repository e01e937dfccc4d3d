//! Secrets by name: set (sealed with the master key), listed without values, deleted.
//! The server's own keys (`kontor.…`) are outside this API: not listed, not writable,
//! not deletable.

use axum::body::Bytes;
use axum::extract::State;
use axum::{Extension, Json};

use super::extract::Path;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;

use super::auth::Principal;
use super::error::ErrorBody;
use super::{ApiError, AppState};

#[utoipa::path(get, path = "/api/v1/secrets", tag = "secrets",
    responses((status = 200, description = "Names and times of all secrets; values are never returned", body = Vec<crate::store::SecretInfo>)))]
pub async fn list_secrets(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(json!({"secrets": state
            .store
            .secrets()
            .list()
            .await?
            .into_iter()
            .filter(|s| !crate::secrets::is_reserved(&s.name))
            .collect::<Vec<_>>()})))
}

/// Body of `PUT /api/v1/secrets/{name}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretBody {
    /// The value; stored encrypted, never returned.
    value: String,
}

#[utoipa::path(put, path = "/api/v1/secrets/{name}", tag = "secrets", request_body = SecretBody,
    params(("name" = String, Path, description = "Letters, digits, `_`, `-`, `.`; not starting with `kontor.` (reserved for the server's own keys)")),
    responses((status = 204, description = "Stored (encrypted)"), (status = 422, body = ErrorBody)))]
pub async fn put_secret(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    raw: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    crate::secrets::check_client_name(&name)
        .map_err(|e| ApiError::invalid("name", e.to_string()))?;
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
        .store
        .secrets()
        .put(&name, &sealed, &principal.actor(), chrono::Utc::now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/v1/secrets/{name}", tag = "secrets",
    params(("name" = String, Path, description = "Secret name")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn delete_secret(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    crate::secrets::check_client_name(&name)
        .map_err(|e| ApiError::invalid("name", e.to_string()))?;
    if state
        .store
        .secrets()
        .delete(&name, &principal.actor(), state.engine.clock().now())
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("there is no secret `{name}`")))
    }
}
