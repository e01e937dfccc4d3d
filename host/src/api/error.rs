//! One error type for every HTTP answer: JSON `{"error": {"code", "message", "field"?}}`.
//! Internal details are logged, never sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::engine::EngineError;
use crate::store::StoreError;

#[derive(Debug)]
pub enum ApiError {
    Unauthorized,
    /// A token that was valid once: expired or revoked (the reason says which, and when).
    TokenRefused(String),
    /// A valid token whose role lacks the route's permission.
    Forbidden(String),
    NotFound(String),
    /// Invalid input; `field` names the offending field when known.
    Invalid {
        field: Option<String>,
        message: String,
    },
    /// The workflow exists but its file is invalid.
    Conflict(String),
    /// A system Kontor depends on (the ERP) is unavailable for now.
    Unavailable {
        message: String,
        retry_after: Option<std::time::Duration>,
    },
    /// A system Kontor depends on answered, but not usefully (bad credentials, mapping).
    BadGateway(String),
    /// The client is over its rate limit (`http.rate_limits`) and should wait this long.
    TooManyRequests {
        message: String,
        retry_after: std::time::Duration,
    },
    Internal(String),
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Invalid {
            field: Some(field.into()),
            message: message.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::UnknownWorkflow(_) => ApiError::NotFound(e.to_string()),
            EngineError::InvalidWorkflow { .. } => ApiError::Conflict(e.to_string()),
            EngineError::InvalidInput(message) => ApiError::Invalid {
                field: Some("input".into()),
                message,
            },
            EngineError::InvalidPayload { .. } => ApiError::Invalid {
                field: Some("payload".into()),
                message: e.to_string(),
            },
            EngineError::Store(s) => s.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry_after = match &self {
            ApiError::Unavailable { retry_after, .. } => *retry_after,
            ApiError::TooManyRequests { retry_after, .. } => Some(*retry_after),
            _ => None,
        };
        let (status, code, message, field) = match self {
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid bearer token is required (create one with `kontor token create --role admin`)".to_string(),
                None,
            ),
            ApiError::TokenRefused(m) => (StatusCode::UNAUTHORIZED, "unauthorized", m, None),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m, None),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m, None),
            ApiError::Invalid { field, message } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid", message, field),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, "conflict", m, None),
            ApiError::Unavailable { message, .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable", message, None)
            }
            ApiError::BadGateway(m) => (StatusCode::BAD_GATEWAY, "bad_gateway", m, None),
            ApiError::TooManyRequests { message, .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "rate_limited", message, None)
            }
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "internal error answering a request");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the server log".to_string(),
                    None,
                )
            }
        };
        let mut error = json!({"code": code, "message": message});
        if let Some(field) = field {
            error["field"] = json!(field);
        }
        let mut response = (status, Json(json!({ "error": error }))).into_response();
        if let Some(wait) = retry_after {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                // Whole seconds, rounded up: a client that waits as told is let in.
                axum::http::HeaderValue::from(wait.as_secs_f64().ceil().max(1.0) as u64),
            );
        }
        response
    }
}

/// axum answers an over-long body with plain text; give it the same JSON shape as every
/// other error.
pub async fn too_large_as_json(response: Response) -> Response {
    if response.status() != StatusCode::PAYLOAD_TOO_LARGE {
        return response;
    }
    let message = format!(
        "the request body is larger than {} bytes",
        super::BODY_LIMIT
    );
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        Json(json!({"error": {"code": "too_large", "message": message}})),
    )
        .into_response()
}

/// The body of every error answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// unauthorized, forbidden, not_found, invalid, conflict, too_large, rate_limited,
    /// unavailable, bad_gateway or internal
    pub code: String,
    pub message: String,
    /// The request field the problem is about, when known.
    pub field: Option<String>,
}
