//! Email routes: the outbox as reports see it, bounce reports, proofs, and the
//! unsubscribe pages that links in mail open.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::{Extension, Json};

use super::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse};
use serde::Deserialize;
use serde_json::json;

use super::auth::Principal;
use super::body::parse_body;
use super::error::ErrorBody;
use super::{ApiError, AppState};
use crate::email::dispatch::Dispatcher;
use crate::store::{MessageFilter, MessageView, Suppression};

fn mailer(state: &AppState) -> Result<&Arc<Dispatcher>, ApiError> {
    state
        .mailer
        .as_ref()
        .ok_or_else(|| ApiError::Conflict("email is not running in this process".into()))
}

/// One page of messages.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct MessagePage {
    messages: Vec<MessageView>,
    /// Messages of the filter by status (ignores `status` and the cursor).
    counts: std::collections::BTreeMap<String, i64>,
    next_cursor: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListMessagesQuery {
    /// Only messages queued by this run.
    run: Option<String>,
    /// Only messages of this campaign (default campaign: the workflow's name).
    campaign: Option<String>,
    /// Only messages to this address (case-insensitive).
    recipient: Option<String>,
    /// queued, sending, sent, failed or suppressed.
    status: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// 1 to 1000, default 50.
    limit: Option<u32>,
}

const STATUSES: [&str; 5] = ["queued", "sending", "sent", "failed", "suppressed"];

/// The outbox: each message with its state (queued, sending, sent, failed with the
/// server's reply, suppressed with the reason), newest first.
#[utoipa::path(get, path = "/api/v1/email/messages", tag = "email", params(ListMessagesQuery),
    responses((status = 200, body = MessagePage), (status = 422, body = ErrorBody)))]
pub async fn list_messages(
    State(state): State<AppState>,
    Query(query): Query<ListMessagesQuery>,
) -> Result<impl IntoResponse, ApiError> {
    if let Some(s) = &query.status
        && !STATUSES.contains(&s.as_str())
    {
        return Err(ApiError::invalid(
            "status",
            format!("unknown status `{s}`; use {}", STATUSES.join(", ")),
        ));
    }
    let limit = super::extract::page_limit(query.limit, 50)?;
    let store = &state.store;
    let messages = store
        .outbox()
        .list(&MessageFilter {
            run_id: query.run.clone(),
            campaign: query.campaign.clone(),
            recipient: query.recipient.clone(),
            status: query.status.clone(),
            before: query.cursor.clone(),
            limit,
        })
        .await?;
    let counts = store
        .outbox()
        .counts(&MessageFilter {
            run_id: query.run,
            campaign: query.campaign,
            recipient: query.recipient,
            ..MessageFilter::default()
        })
        .await?;
    let next_cursor = (messages.len() == limit as usize)
        .then(|| messages.last().map(|m| m.id.clone()))
        .flatten();
    Ok(Json(MessagePage {
        messages,
        counts,
        next_cursor,
    }))
}

#[utoipa::path(get, path = "/api/v1/email/messages/{id}", tag = "email",
    params(("id" = String, Path, description = "Outbox id (the part of the Message-ID before `@`)")),
    responses((status = 200, body = MessageView), (status = 404, body = ErrorBody)))]
pub async fn get_message(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = message_key(&id);
    match state.store.outbox().get(&id).await? {
        Some(m) => Ok(Json(m)),
        None => Err(ApiError::NotFound(format!("there is no message `{id}`"))),
    }
}

/// `<id@domain>` or `id@domain` → `id`.
fn message_key(id: &str) -> String {
    let id = id.trim().trim_start_matches('<').trim_end_matches('>');
    id.split('@').next().unwrap_or(id).to_string()
}

/// A bounce or complaint, as a mail provider's webhook or a DSN parser reports it.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BounceReport {
    /// The address that bounced or complained.
    recipient: String,
    /// `hard`, `soft` or `complaint`; default: from `status` (5.x.x hard, 4.x.x soft).
    #[serde(default)]
    kind: Option<String>,
    /// Enhanced status code (RFC 3463), e.g. `5.1.1`.
    #[serde(default)]
    status: Option<String>,
    /// The remote server's diagnostic text.
    #[serde(default)]
    diagnostic: Option<String>,
    /// Message-ID of the message that bounced.
    #[serde(default)]
    message_id: Option<String>,
}

/// One report or several.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum BounceBody {
    One(BounceReport),
    Many { reports: Vec<BounceReport> },
}

/// Soft bounces within this many days that suppress an address.
const SOFT_BOUNCE_LIMIT: i64 = 3;
const SOFT_BOUNCE_DAYS: i64 = 30;

/// Takes bounce and complaint reports: a hard bounce or a complaint suppresses the
/// address for every purpose at once; soft bounces do after 3 within 30 days.
#[utoipa::path(post, path = "/api/v1/email/bounces", tag = "email", request_body = BounceBody,
    responses((status = 200, description = "What each report did: `{results: [{recipient, kind, suppressed}]}`"),
              (status = 422, body = ErrorBody)))]
pub async fn report_bounces(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let reports = match parse_body::<BounceBody>(&body)? {
        BounceBody::One(r) => vec![r],
        BounceBody::Many { reports } => reports,
    };
    // Validate everything before storing anything.
    let mut checked = Vec::new();
    for (i, r) in reports.iter().enumerate() {
        let field = |name: &str| {
            if reports.len() == 1 {
                name.to_string()
            } else {
                format!("reports[{i}].{name}")
            }
        };
        crate::email::parse_address(&r.recipient)
            .map_err(|e| ApiError::invalid(field("recipient"), e))?;
        let kind = match (r.kind.as_deref(), r.status.as_deref()) {
            (Some(k @ ("hard" | "soft" | "complaint")), _) => k,
            (Some(other), _) => {
                return Err(ApiError::invalid(
                    field("kind"),
                    format!("unknown kind `{other}`; use hard, soft or complaint"),
                ));
            }
            (None, Some(s)) if s.starts_with("5.") => "hard",
            (None, Some(s)) if s.starts_with("4.") => "soft",
            (None, _) => {
                return Err(ApiError::invalid(
                    field("kind"),
                    "give `kind` (hard, soft or complaint) or an enhanced `status` such as 5.1.1",
                ));
            }
        };
        checked.push((r, kind));
    }
    let store = &state.store;
    let now = state.engine.clock().now();
    let mut results = Vec::new();
    for (r, kind) in checked {
        let bounce = crate::store::suppressions::Bounce {
            address: r.recipient.clone(),
            kind: kind.to_string(),
            status: r.status.clone(),
            detail: r.diagnostic.clone(),
            message_id: r.message_id.as_deref().map(message_key),
            soft_since: now - chrono::Duration::days(SOFT_BOUNCE_DAYS),
            soft_limit: SOFT_BOUNCE_LIMIT,
        };
        let bounced = store
            .suppressions()
            .bounce(&bounce, &principal.actor(), now)
            .await?;
        results.push(json!({"recipient": r.recipient, "kind": kind, "suppressed": bounced.suppressed.is_some()}));
    }
    Ok(Json(json!({ "results": results })))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SuppressionsQuery {
    /// Only this address.
    address: Option<String>,
    /// 1 to 1000, default 100.
    limit: Option<u32>,
}

/// Addresses mail does not go to, and for which purposes.
#[utoipa::path(get, path = "/api/v1/email/suppressions", tag = "email", params(SuppressionsQuery),
    responses((status = 200, body = Vec<Suppression>)))]
pub async fn list_suppressions(
    State(state): State<AppState>,
    Query(query): Query<SuppressionsQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let limit = super::extract::page_limit(query.limit, 100)?;
    Ok(Json(
        state
            .engine
            .store()
            .suppressions()
            .list(query.address.as_deref(), limit)
            .await?,
    ))
}

/// A proof: one template rendered with sample (or given) data, sent to one address.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestSendBody {
    /// A folder in `workflows/templates/`.
    template: String,
    /// Where the proof goes.
    to: String,
    /// Default: the template's fallback locale.
    #[serde(default)]
    locale: Option<String>,
    /// Default: `default`.
    #[serde(default)]
    channel: Option<String>,
    /// Default: the template's sample data.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    data: Option<serde_json::Value>,
}

/// Sends one proof through a channel (outbox, throttles and DKIM as for real mail, with
/// purpose `proof`) and waits up to 10 s for the result.
#[utoipa::path(post, path = "/api/v1/email/test-send", tag = "email", request_body = TestSendBody,
    responses((status = 200, description = "Sent (or failed); the message with its state", body = MessageView),
              (status = 202, description = "Still queued after 10 s (a throttle holds it)", body = MessageView),
              (status = 422, body = ErrorBody)))]
pub async fn test_send(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let body: TestSendBody = parse_body(&body)?;
    let mailer = mailer(&state)?;
    crate::email::parse_address(&body.to).map_err(|e| ApiError::invalid("to", e))?;
    let channel = body
        .channel
        .clone()
        .unwrap_or_else(|| crate::email::channel::DEFAULT_CHANNEL.to_string());
    if mailer.channel(&channel).is_none() {
        let known: Vec<&str> = mailer.channel_names().collect();
        return Err(ApiError::invalid(
            "channel",
            format!(
                "there is no channel `{channel}` (channels: {})",
                known.join(", ")
            ),
        ));
    }
    let catalog = state.engine.catalog();
    let template = catalog.templates.get(&body.template).ok_or_else(|| {
        let known: Vec<&str> = catalog.templates.names().collect();
        ApiError::invalid(
            "template",
            format!(
                "there is no template `{}` (templates: {})",
                body.template,
                known.join(", ")
            ),
        )
    })?;
    let data = body.data.unwrap_or_else(|| template.sample.clone());
    if !data.is_object() {
        return Err(ApiError::invalid("data", "data must be a JSON object"));
    }
    // Render now so a template error is the answer, not a failed message later.
    catalog
        .templates
        .render(&body.template, body.locale.as_deref().unwrap_or(""), &data)
        .map_err(|e| ApiError::invalid("data", e.to_string()))?;
    let id = uuid::Uuid::now_v7().to_string();
    let email = crate::run::OutgoingEmail {
        id: id.clone(),
        workflow: String::new(),
        campaign: "proof".into(),
        channel,
        template: body.template,
        locale: body.locale,
        to: body.to,
        name: None,
        purpose: "proof".into(),
        data,
    };
    let store = &state.store;
    store
        .outbox()
        .enqueue(std::slice::from_ref(&email), state.engine.clock().now())
        .await?;
    mailer.wake();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let message = store
            .outbox()
            .get(&id)
            .await?
            .ok_or_else(|| ApiError::Internal("the proof vanished from the outbox".into()))?;
        if !matches!(message.status.as_str(), "queued" | "sending") {
            return Ok((StatusCode::OK, Json(message)));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok((StatusCode::ACCEPTED, Json(message)));
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

/// The page an unsubscribe link opens. Showing it changes nothing — mail scanners
/// follow links — its button POSTs.
#[utoipa::path(get, path = "/u/{token}", tag = "email", security(()),
    params(("token" = String, Path, description = "Token from the message's link")),
    responses((status = 200, description = "Confirmation page (German or English) with a button", content_type = "text/html"),
              (status = 404, description = "Unknown or forged token", content_type = "text/html")))]
pub async fn unsubscribe_page(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> impl IntoResponse {
    let Some(what) = verify(&state, &token) else {
        return (
            StatusCode::NOT_FOUND,
            Html(page("en", Page::Invalid, "", "")),
        );
    };
    (
        StatusCode::OK,
        Html(page(&what.locale, Page::Confirm, &what.address, &token)),
    )
}

/// One-click unsubscribe (RFC 8058: mail clients POST `List-Unsubscribe=One-Click`; the
/// confirmation page's button posts here too). Blocks only the token's purpose.
#[utoipa::path(post, path = "/u/{token}", tag = "email", security(()),
    params(("token" = String, Path, description = "Token from the message's link")),
    responses((status = 200, description = "Unsubscribed; a short page says so", content_type = "text/html"),
              (status = 404, description = "Unknown or forged token", content_type = "text/html")))]
pub async fn unsubscribe(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let Some(what) = verify(&state, &token) else {
        return Ok((
            StatusCode::NOT_FOUND,
            Html(page("en", Page::Invalid, "", "")),
        ));
    };
    let now = state.engine.clock().now();
    state
        .engine
        .store()
        .suppressions()
        .add(
            &what.address,
            &what.purpose,
            "unsubscribed",
            None,
            &crate::store::Actor::named("recipient"),
            now,
        )
        .await?;
    metrics::counter!("kontor_email_unsubscribes_total", "purpose" => what.purpose.clone())
        .increment(1);
    Ok((
        StatusCode::OK,
        Html(page(&what.locale, Page::Done, &what.address, "")),
    ))
}

/// What an unsubscribe token says, if one of our keys signed it.
fn verify(state: &AppState, token: &str) -> Option<crate::email::unsubscribe::Unsubscribe> {
    state.mailer.as_ref()?.keyring().verify(token)
}

enum Page {
    Confirm,
    Done,
    Invalid,
}

fn page(locale: &str, which: Page, address: &str, token: &str) -> String {
    let de = locale == "de";
    let address = crate::templates::escape_html(address);
    let token = crate::templates::escape_html(token);
    let (title, body) = match (which, de) {
        (Page::Confirm, true) => (
            "Abmelden",
            format!(
                "<p>Keine E-Mails dieser Art mehr an <strong>{address}</strong> senden?</p>\
                 <form method=\"post\" action=\"{token}\"><button type=\"submit\">Abmelden</button></form>"
            ),
        ),
        (Page::Confirm, false) => (
            "Unsubscribe",
            format!(
                "<p>Stop sending emails of this kind to <strong>{address}</strong>?</p>\
                 <form method=\"post\" action=\"{token}\"><button type=\"submit\">Unsubscribe</button></form>"
            ),
        ),
        (Page::Done, true) => (
            "Abgemeldet",
            format!("<p><strong>{address}</strong> erhält keine E-Mails dieser Art mehr.</p>"),
        ),
        (Page::Done, false) => (
            "Unsubscribed",
            format!(
                "<p><strong>{address}</strong> will not receive emails of this kind any more.</p>"
            ),
        ),
        (Page::Invalid, _) => (
            "Link ungültig / Invalid link",
            "<p>Dieser Abmeldelink ist ungültig. / This unsubscribe link is not valid.</p>".into(),
        ),
    };
    let lang = if de { "de" } else { "en" };
    format!(
        "<!doctype html><html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{title}</title></head>\
         <body style=\"font-family:sans-serif;max-width:32em;margin:3em auto\"><h1>{title}</h1>{body}</body></html>"
    )
}
