//! Bearer tokens: random 256-bit secrets, stored only as their SHA-256.

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::{ApiError, AppState};
use crate::access::{Permission, Role, allows};

/// A new token: what to show the user once, and the hash to store.
pub fn new_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = format!("kt_{}", hex::encode(bytes));
    let hash = hash_token(&token);
    (token, hash)
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The one access check of every route that needs a token: a valid bearer token whose
/// role has the route's permission ([`crate::access::allows`]); 401 without one, 403
/// naming the permission otherwise. The role travels on as a request extension.
pub async fn authorize(
    State((state, permission)): State<(AppState, Permission)>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let role = token_role(&state, request.headers()).await?;
    if !allows(role, permission) {
        return Err(ApiError::Forbidden(format!(
            "the `{role}` role may not do this: it needs the `{permission}` permission"
        )));
    }
    request.extensions_mut().insert(role);
    Ok(next.run(request).await)
}

/// The role of the request's bearer token; unauthorized without a valid one.
pub async fn token_role(state: &AppState, headers: &HeaderMap) -> Result<Role, ApiError> {
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(ApiError::Unauthorized)?;
    let role = state
        .store
        .tokens()
        .role(&hash_token(token))
        .await?
        .ok_or(ApiError::Unauthorized)?;
    // A role this version does not know (written by a newer one) grants nothing.
    Role::parse(&role).ok_or_else(|| {
        ApiError::Forbidden(format!(
            "the token's role `{role}` is not one this server knows"
        ))
    })
}
