//! `POST /hooks/{source}`: events from systems that sign their requests instead of
//! holding a token ([`crate::webhooks`] has the scheme). The signature is checked before
//! the body is read; then the body is an event as for `POST /api/v1/events`, of a type the
//! source may deliver.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;

use super::body::parse_body;
use super::error::ErrorBody;
use super::events::{EventBody, checked};
use super::extract::Path;
use super::{ApiError, AppState};
use crate::webhooks::{SIGNATURE_HEADER, SignatureError};

fn count(source: &str, outcome: &'static str) {
    metrics::counter!("kontor_webhooks_total", "source" => source.to_string(), "outcome" => outcome)
        .increment(1);
}

#[utoipa::path(post, path = "/hooks/{source}", tag = "events", security(()),
    request_body = EventBody,
    params(("source" = String, Path, description = "The webhook source, as configured in `[webhooks.SOURCE]`"),
           ("Kontor-Signature" = String, Header, description = "`t=UNIX_SECONDS,v1=HEX`: HMAC-SHA256 over `{t}.{body}` with one of the source's secrets")),
    responses((status = 202, description = "Verified and delivered (or, sent before, accepted once: `duplicate`)", body = crate::store::Delivered),
              (status = 401, description = "No, a malformed, a stale or a wrong signature (the message says which)", body = ErrorBody),
              (status = 403, description = "The source may not deliver this event type", body = ErrorBody),
              (status = 404, description = "No such source", body = ErrorBody),
              (status = 422, body = ErrorBody),
              (status = 503, description = "The source's secrets cannot be read now", body = ErrorBody)))]
pub async fn receive_webhook(
    State(state): State<AppState>,
    Path(source): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let Some(config) = state.webhooks.get(&source) else {
        return Err(ApiError::NotFound(format!(
            "there is no webhook source `{source}`"
        )));
    };
    let refused = |e: SignatureError| {
        count(&source, e.reason());
        ApiError::TokenRefused(e.to_string())
    };
    let header = headers
        .get(SIGNATURE_HEADER)
        .ok_or(SignatureError::Missing)
        .and_then(|v| {
            v.to_str()
                .map_err(|_| SignatureError::Malformed("it is not ASCII".into()))
        })
        .map_err(refused)?;
    let signature = crate::webhooks::parse(header).map_err(refused)?;
    let mut secrets = Vec::new();
    for name in &config.secrets {
        match crate::secrets::read(&state.store, &state.master_key, name).await {
            Ok(Some(value)) => secrets.push(value),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(%source, secret = %name, error = %e, "a webhook secret cannot be read")
            }
        }
    }
    if secrets.is_empty() {
        tracing::error!(%source, secrets = ?config.secrets,
            "no secret of this webhook source is stored: set one with `kontor secret set`");
        count(&source, "unverifiable");
        return Err(ApiError::Unavailable {
            message: format!("signatures of `{source}` cannot be verified now"),
            retry_after: Some(std::time::Duration::from_secs(60)),
        });
    }
    let keys: Vec<&[u8]> = secrets.iter().map(|s| s.expose()).collect();
    let window = config.window().map_err(ApiError::Internal)?;
    let now = state.engine.clock().now().timestamp();
    crate::webhooks::verify(&signature, &keys, &body, now, window).map_err(refused)?;

    let parsed: EventBody = parse_body(&body).inspect_err(|_| count(&source, "invalid"))?;
    let (event, id) = checked(parsed).inspect_err(|_| count(&source, "invalid"))?;
    if !config.events.contains(&event.event_type) {
        count(&source, "type");
        return Err(ApiError::Forbidden(format!(
            "the webhook source `{source}` may not deliver `{}` events; it may deliver {}",
            event.event_type,
            config.events.join(", ")
        )));
    }
    // The sender's id, or else the signature: the same signed request twice is one.
    let delivery = match id {
        Some(id) => format!("hook:{source}:{id}"),
        None => format!("hook:{source}:{}", hex::encode(signature.macs[0])),
    };
    let delivered = state
        .engine
        .deliver_event(event, Some(&delivery))
        .await
        .inspect_err(|_| count(&source, "invalid"))?;
    count(
        &source,
        if delivered.duplicate {
            "duplicate"
        } else {
            "accepted"
        },
    );
    Ok((StatusCode::ACCEPTED, Json(delivered)))
}
