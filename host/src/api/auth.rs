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
use crate::store::Actor;

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
/// role has the route's permission ([`crate::access::allows`]) and, for a narrowed token,
/// is one of its scopes; 401 without one (saying why for an expired or revoked token),
/// 403 naming the permission otherwise. The handler finds the [`Principal`] among the
/// request's extensions (to say who made a change in the audit log).
pub async fn authorize(
    State((state, permission)): State<(AppState, Permission)>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let principal = principal(&state, request.headers()).await?;
    state
        .rate_limits
        .check_token(&principal.token_id)
        .map_err(|wait| super::rate_limit::too_many("token", wait))?;
    if !allows(principal.role, permission) {
        return Err(ApiError::Forbidden(format!(
            "the `{}` role may not do this: it needs the `{permission}` permission",
            principal.role
        )));
    }
    if let Some(scopes) = &principal.scopes
        && !scopes.contains(&permission)
    {
        let names: Vec<&str> = scopes.iter().map(|p| p.as_str()).collect();
        return Err(ApiError::Forbidden(format!(
            "this token is narrowed to {} and may not do this: it needs the `{permission}` permission",
            names.join(", ")
        )));
    }
    let redacted = principal.role == Role::Viewer;
    request.extensions_mut().insert(principal);
    let response = next.run(request).await;
    if redacted {
        return redact_response(response).await;
    }
    Ok(response)
}

/// The largest answer redacted; larger ones are refused rather than sent unredacted.
const MAX_REDACTED: usize = 64 * 1024 * 1024;

/// `response` with the personal data of its JSON body redacted ([`crate::redact`]).
async fn redact_response(response: Response) -> Result<Response, ApiError> {
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return Ok(response);
    }
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_REDACTED)
        .await
        .map_err(|e| ApiError::Internal(format!("reading an answer to redact: {e}")))?;
    let mut value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::Internal(format!("an answer to redact is not JSON: {e}")))?;
    crate::redact::redact(&mut value);
    let bytes = serde_json::to_vec(&value).map_err(|e| ApiError::Internal(e.to_string()))?;
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Ok(Response::from_parts(parts, axum::body::Body::from(bytes)))
}

/// Who a request comes from: its token, the token's role and narrowing, and the person
/// it belongs to.
#[derive(Debug, Clone)]
pub struct Principal {
    pub token_id: String,
    pub role: Role,
    /// The permissions the token is narrowed to; `None`: all of its role's.
    pub scopes: Option<Vec<Permission>>,
    /// The user the token belongs to, if any (always an active one).
    pub user: Option<crate::store::users::User>,
}

impl Principal {
    /// Whether this principal sees an object of `domain` (a run of a leads workflow, …);
    /// routes answer 404 for one it does not, so ids do not leak. `domain` as stored:
    /// one this version does not know is seen by admins only.
    pub fn sees(&self, domain: Option<&str>) -> bool {
        match domain {
            None => true,
            Some(name) => match crate::access::Domain::parse(name) {
                Some(domain) => crate::access::sees(self.role, Some(domain)),
                None => self.role == Role::Admin,
            },
        }
    }

    /// Whether this principal reaches an object assigned to `team` and `owner` (a user id
    /// or rep id): sales only what is assigned to them or their team — a sales token of
    /// no user reaches nothing — everyone else every object. Routes answer 404 for one it
    /// does not reach, as for an id that does not exist (the lead, ticket and campaign
    /// routes check each object with this).
    pub fn reaches(&self, team: Option<&str>, owner: Option<&str>) -> bool {
        if self.role != Role::Sales {
            return true;
        }
        let Some(user) = &self.user else {
            return false;
        };
        let mine = |o: &str| o == user.id || user.rep.as_deref() == Some(o);
        owner.is_some_and(mine) || (team.is_some() && team == user.team.as_deref())
    }

    /// How the audit log names this principal.
    pub fn actor(&self) -> Actor {
        Actor {
            name: format!("token:{}", self.token_id),
            user_id: self.user.as_ref().map(|u| u.id.clone()),
            role: Some(self.role.as_str().to_string()),
        }
    }
}

/// How stale a token's last-used time may get before it is written again: one write per
/// token per minute, not one per request.
const LAST_USED_RESOLUTION: chrono::Duration = chrono::Duration::minutes(1);

/// The principal of the request's bearer token; unauthorized without a valid one.
pub async fn principal(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(ApiError::Unauthorized)?;
    let hash = hash_token(token);
    let now = state.engine.clock().now();
    if let Some(cached) = state.tokens.get(&hash, now) {
        note_use(
            state,
            &hash,
            &cached.principal.token_id,
            cached.last_used_at,
            now,
        );
        return Ok(cached.principal);
    }
    let info = state
        .store
        .tokens()
        .find(&hash)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    if let Some(at) = info.revoked_at {
        return Err(ApiError::TokenRefused(format!(
            "this token was revoked at {}",
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )));
    }
    if let Some(at) = info.expires_at.filter(|at| *at <= now) {
        return Err(ApiError::TokenRefused(format!(
            "this token expired at {}; create a new one with `kontor token create`",
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )));
    }
    // A role or scope this version does not know (written by a newer one) grants nothing.
    let role = Role::parse(&info.role).ok_or_else(|| {
        ApiError::Forbidden(format!(
            "the token's role `{}` is not one this server knows",
            info.role
        ))
    })?;
    let scopes = info
        .scopes
        .as_ref()
        .map(|names| names.iter().filter_map(|n| Permission::parse(n)).collect());
    let user = match &info.user_id {
        None => None,
        Some(id) => {
            let user = state.store.users().get(id).await?.ok_or_else(|| {
                ApiError::TokenRefused(format!("this token's user `{id}` does not exist"))
            })?;
            if let Some(at) = user.deactivated_at {
                return Err(ApiError::TokenRefused(format!(
                    "this token belongs to {}, who was deactivated at {}",
                    user.email,
                    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                )));
            }
            if !user.roles.iter().any(|r| r == role.as_str()) {
                return Err(ApiError::Forbidden(format!(
                    "this token is a {role} token, and {} no longer has the {role} role",
                    user.email
                )));
            }
            Some(user)
        }
    };
    let principal = Principal {
        token_id: info.id.clone(),
        role,
        scopes,
        user,
    };
    state.tokens.put(
        hash.clone(),
        principal.clone(),
        info.expires_at,
        info.last_used_at,
    );
    note_use(state, &hash, &info.id, info.last_used_at, now);
    Ok(principal)
}

/// Records that token `id` was used at `now` if its last recorded use is a minute old —
/// off the request's path; a lost update only makes the time a minute older.
fn note_use(
    state: &AppState,
    hash: &str,
    id: &str,
    last_used_at: Option<chrono::DateTime<chrono::Utc>>,
    now: chrono::DateTime<chrono::Utc>,
) {
    if last_used_at.is_some_and(|at| now - at < LAST_USED_RESOLUTION) {
        return;
    }
    state.tokens.used(hash, now);
    let store = state.store.clone();
    let id = id.to_string();
    tokio::spawn(async move {
        if let Err(e) = store.tokens().touch(&id, now).await {
            tracing::debug!(error = %e, "could not record a token's use");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(role: Role, team: Option<&str>) -> Principal {
        let now = chrono::Utc::now();
        Principal {
            token_id: "t".into(),
            role,
            scopes: None,
            user: Some(crate::store::users::User {
                id: "u-1".into(),
                name: "Sandra Vogel".into(),
                email: "sandra@kaelte-nord.de".into(),
                roles: vec![role.as_str().into()],
                team: team.map(str::to_string),
                rep: Some("R-17".into()),
                active: true,
                created_at: now,
                updated_at: now,
                deactivated_at: None,
            }),
        }
    }

    #[test]
    fn sales_reach_their_own_and_their_teams_objects_only() {
        let sandra = principal(Role::Sales, Some("Nord"));
        assert!(sandra.reaches(Some("Nord"), None));
        assert!(
            sandra.reaches(Some("Süd"), Some("R-17")),
            "assigned to her rep id"
        );
        assert!(sandra.reaches(None, Some("u-1")), "assigned to her");
        assert!(!sandra.reaches(Some("Süd"), Some("R-18")));
        assert!(!sandra.reaches(None, None));
        let no_team = principal(Role::Sales, None);
        assert!(!no_team.reaches(None, Some("R-18")));
        assert!(
            !no_team.reaches(None, None),
            "no team matches an unassigned object"
        );
        let anonymous = Principal {
            user: None,
            ..principal(Role::Sales, Some("Nord"))
        };
        assert!(!anonymous.reaches(Some("Nord"), Some("R-17")));
        assert!(principal(Role::Marketing, None).reaches(Some("Süd"), Some("R-18")));
    }
}
