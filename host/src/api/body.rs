//! Reading JSON request bodies: a bad body is a 422 that names the problem and, when
//! serde knows it, the field.

use axum::body::Bytes;
use serde::de::DeserializeOwned;

use super::ApiError;

/// Parses a JSON body, naming the problem (and the field, when serde knows it) on error.
pub(super) fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::Invalid {
            field: None,
            message: "the request body is empty; send a JSON object".into(),
        });
    }
    serde_json::from_slice(body).map_err(|e| {
        let message = e.to_string();
        let field = message
            .split('`')
            .nth(1)
            .filter(|_| message.contains("field"))
            .map(str::to_string);
        ApiError::Invalid { field, message }
    })
}
