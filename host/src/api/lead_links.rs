//! The accept and reject links in a lead owner's mail (`/l/TOKEN/accept`, `…/reject`): a
//! GET shows the lead and a form and changes nothing (mail scanners follow links); the
//! form's POST acts, as the owner the link was sent to. The token is signed with the
//! mail keyring ([`crate::email::unsubscribe::Keyring::sign_as`]) and names the lead, the
//! owner and an expiry; a link of an owner the lead was since taken from acts no more.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse};
use serde::Deserialize;

use super::extract::Path;
use super::{ApiError, AppState};
use crate::crm::lead::DecisionLink;
use crate::store::leads::{Decided, LeadView};
use crate::templates::escape_html;

/// What a link page's form posts.
#[derive(Deserialize, Default)]
#[serde(default)]
struct DecisionForm {
    opportunity_id: String,
    reason: String,
    note: String,
}

#[derive(Clone, Copy, PartialEq)]
enum Action {
    Accept,
    Reject,
}

/// Why a link does not act.
enum Refusal {
    Invalid,
    Expired,
    PassedOn,
    Closed(String),
}

struct Checked {
    lead: LeadView,
    link: DecisionLink,
    action: Action,
    de: bool,
}

async fn check(
    state: &AppState,
    token: &str,
    action: &str,
) -> Result<Result<Checked, (Refusal, bool)>, ApiError> {
    let action = match action {
        "accept" => Action::Accept,
        "reject" => Action::Reject,
        _ => return Ok(Err((Refusal::Invalid, true))),
    };
    let Some(link) = state.mailer.as_ref().and_then(|m| {
        m.keyring()
            .verify_as::<DecisionLink>(DecisionLink::CONTEXT, token)
    }) else {
        return Ok(Err((Refusal::Invalid, true)));
    };
    let Some(lead) = state.store.leads().get(&link.lead).await? else {
        return Ok(Err((Refusal::Invalid, true)));
    };
    let de = lead
        .team
        .as_deref()
        .and_then(|t| state.engine.catalog().territories.team(t).map(|t| t.locale))
        .is_none_or(|l| l == crate::crm::territory::Locale::De);
    if state.engine.clock().now().timestamp() > link.expires {
        return Ok(Err((Refusal::Expired, de)));
    }
    if lead.stage.is_closed() {
        return Ok(Err((Refusal::Closed(lead.stage.as_str().to_string()), de)));
    }
    if lead.owner.as_deref() != Some(link.owner.as_str()) {
        return Ok(Err((Refusal::PassedOn, de)));
    }
    Ok(Ok(Checked {
        lead,
        link,
        action,
        de,
    }))
}

#[utoipa::path(get, path = "/l/{token}/{action}", tag = "leads", security(()),
    params(("token" = String, Path, description = "Token from the owner's mail"),
           ("action" = String, Path, description = "`accept` or `reject`")),
    responses((status = 200, description = "The lead and the form that acts; nothing changes", content_type = "text/html"),
              (status = 404, description = "Unknown or forged link", content_type = "text/html"),
              (status = 410, description = "Expired, passed on to someone else, or decided already", content_type = "text/html")))]
pub async fn decision_page(
    State(state): State<AppState>,
    Path((token, action)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(match check(&state, &token, &action).await? {
        Err((refusal, de)) => refused(refusal, de),
        Ok(checked) => (StatusCode::OK, Html(form(&state, &checked, None))),
    })
}

#[utoipa::path(post, path = "/l/{token}/{action}", tag = "leads", security(()),
    params(("token" = String, Path, description = "Token from the owner's mail"),
           ("action" = String, Path, description = "`accept` or `reject`")),
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
                 description = "`opportunity_id` to accept; `reason` and `note` to reject"),
    responses((status = 200, description = "Done; the lead's run goes on", content_type = "text/html"),
              (status = 404, description = "Unknown or forged link", content_type = "text/html"),
              (status = 410, description = "Expired, passed on to someone else, or decided already", content_type = "text/html"),
              (status = 422, description = "A field of the form is missing or invalid: the form again, saying which", content_type = "text/html")))]
pub async fn decide_by_link(
    State(state): State<AppState>,
    Path((token, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let checked = match check(&state, &token, &action).await? {
        Err((refusal, de)) => return Ok(refused(refusal, de)),
        Ok(checked) => checked,
    };
    let form_fields: DecisionForm = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let decision = match checked.action {
        Action::Accept => super::leads::accept(&form_fields.opportunity_id),
        Action::Reject => {
            super::leads::reject(&state, &form_fields.reason, Some(&form_fields.note))
        }
    };
    let decision = match decision {
        Ok(decision) => decision,
        Err(ApiError::Invalid { message, .. }) => {
            return Ok((
                StatusCode::UNPROCESSABLE_ENTITY,
                Html(form(&state, &checked, Some(&message))),
            ));
        }
        Err(e) => return Err(e),
    };
    let actor = crate::store::audit::Actor::named(format!("link:{}", checked.link.owner));
    let de = checked.de;
    Ok(
        match super::leads::record_decision(&state, &checked.lead.id, &decision, &actor).await? {
            None => refused(Refusal::Invalid, de),
            Some(Decided::Refused { why, .. }) => refused(Refusal::Closed(why), de),
            Some(Decided::Done(lead) | Decided::Again(lead)) => {
                let company = escape_html(lead.data["company"].as_str().unwrap_or_default());
                let text = match (lead.stage.as_str(), de) {
                    ("accepted", true) => {
                        format!("<p>Danke. <strong>{company}</strong> ist angenommen.</p>")
                    }
                    ("accepted", false) => {
                        format!("<p>Thank you. <strong>{company}</strong> is accepted.</p>")
                    }
                    (_, true) => format!(
                        "<p>Danke. <strong>{company}</strong> ist abgelehnt; das Marketing sieht den Grund.</p>"
                    ),
                    (_, false) => format!(
                        "<p>Thank you. <strong>{company}</strong> is rejected; marketing sees the reason.</p>"
                    ),
                };
                (
                    StatusCode::OK,
                    Html(page(de, if de { "Erledigt" } else { "Done" }, &text)),
                )
            }
        },
    )
}

fn refused(refusal: Refusal, de: bool) -> (StatusCode, Html<String>) {
    let (status, text) = match (refusal, de) {
        (Refusal::Invalid, _) => (
            StatusCode::NOT_FOUND,
            "<p>Dieser Link ist ungültig. / This link is not valid.</p>".to_string(),
        ),
        (Refusal::Expired, true) => (
            StatusCode::GONE,
            "<p>Dieser Link ist abgelaufen. Bitte öffnen Sie den Lead in Kontor.</p>".into(),
        ),
        (Refusal::Expired, false) => (
            StatusCode::GONE,
            "<p>This link has expired. Please open the lead in Kontor.</p>".into(),
        ),
        (Refusal::PassedOn, true) => (
            StatusCode::GONE,
            "<p>Dieser Lead wurde inzwischen jemand anderem zugewiesen.</p>".into(),
        ),
        (Refusal::PassedOn, false) => (
            StatusCode::GONE,
            "<p>This lead has since been passed on to someone else.</p>".into(),
        ),
        (Refusal::Closed(stage), true) => (
            StatusCode::GONE,
            format!(
                "<p>Über diesen Lead ist schon entschieden ({}).</p>",
                escape_html(&stage)
            ),
        ),
        (Refusal::Closed(stage), false) => (
            StatusCode::GONE,
            format!(
                "<p>This lead has been decided already ({}).</p>",
                escape_html(&stage)
            ),
        ),
    };
    (status, Html(page(de, "Kontor", &text)))
}

fn form(state: &AppState, checked: &Checked, problem: Option<&str>) -> String {
    let de = checked.de;
    let lead = &checked.lead;
    let field = |key: &str| escape_html(lead.data[key].as_str().unwrap_or_default());
    let contact = [field("first_name"), field("last_name")].join(" ");
    let mut summary = format!(
        "<p><strong>{}</strong>{}<br>{} {} · {}<br>Score {} ({})</p>",
        field("company"),
        if contact.trim().is_empty() {
            String::new()
        } else {
            format!(" — {}", contact.trim())
        },
        field("postal_code"),
        field("country"),
        field("industry"),
        lead.score
            .map(|s| s.to_string())
            .unwrap_or_else(|| "–".into()),
        escape_html(lead.grade.as_deref().unwrap_or("–")),
    );
    if let Some(problem) = problem {
        summary.push_str(&format!(
            "<p role=\"alert\" style=\"color:#a00\">{}</p>",
            escape_html(problem)
        ));
    }
    let body = match (checked.action, de) {
        (Action::Accept, _) => format!(
            "{summary}<form method=\"post\"><label>{}<br><input name=\"opportunity_id\" required maxlength=\"200\"></label>\
             <p><button type=\"submit\">{}</button></p></form>",
            if de {
                "Opportunity-Nummer im CRM"
            } else {
                "Opportunity id in the CRM"
            },
            if de { "Annehmen" } else { "Accept" },
        ),
        (Action::Reject, _) => {
            let options: String = state
                .lead_rejection_reasons
                .iter()
                .map(|r| format!("<option>{}</option>", escape_html(r)))
                .collect();
            format!(
                "{summary}<form method=\"post\"><label>{}<br><select name=\"reason\">{options}</select></label>\
                 <p><label>{}<br><textarea name=\"note\" maxlength=\"2000\" rows=\"4\"></textarea></label></p>\
                 <p><button type=\"submit\">{}</button></p></form>",
                if de { "Grund" } else { "Reason" },
                if de {
                    "Anmerkung für das Marketing"
                } else {
                    "Note for marketing"
                },
                if de { "Ablehnen" } else { "Reject" },
            )
        }
    };
    let title = match (checked.action, de) {
        (Action::Accept, true) => "Lead annehmen",
        (Action::Accept, false) => "Accept lead",
        (Action::Reject, true) => "Lead ablehnen",
        (Action::Reject, false) => "Reject lead",
    };
    page(de, title, &body)
}

fn page(de: bool, title: &str, body: &str) -> String {
    let lang = if de { "de" } else { "en" };
    format!(
        "<!doctype html><html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{title}</title></head>\
         <body style=\"font-family:sans-serif;max-width:32em;margin:3em auto;padding:0 1em\"><h1>{title}</h1>{body}</body></html>"
    )
}
