//! The tickets API over the shipped SLA policies, on both backends: a ticket is numbered
//! and put under its policy, read with its clocks on the manual clock, changed (a new
//! priority selects the policy again, the clocks keep the time used) and written to; bad
//! fields are named, nothing stored.

mod common;

use axum::http::StatusCode;
use chrono::Duration;
use common::router::{app, call};
use serde_json::{Value, json};

fn clock<'a>(ticket: &'a Value, kind: &str) -> &'a Value {
    ticket["clocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} clock in {ticket}"))
}

async fn a_ticket_runs_its_clocks_under_the_policy_its_fields_select() {
    let (app, f) = app().await;
    // Monday 2026-06-08 09:00 Berlin: a malfunction of normal priority by phone.
    let body = json!({
        "external_id": "CRM-4711", "customer_id": "K-10001",
        "contact": {"name": "Jürgen Müller", "email": "J.Mueller@Mueller-Kaelte.example"},
        "subject": "Kühlzelle 3 fällt aus", "category": "stoerung", "priority": "normal",
        "channel": "phone", "group": "service-nord", "assignee": "petra.schulz",
        "message": "Fehler E17 seit heute früh."
    })
    .to_string();
    let (status, created) = call(&app, "POST", "/api/v1/tickets", Some(&body), &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["number"], "T-2026-000001");
    assert_eq!(created["policy"], "standard");
    assert_eq!(
        created["contact"]["email"],
        "j.mueller@mueller-kaelte.example"
    );
    let (status, again) = call(&app, "POST", "/api/v1/tickets", Some(&body), &[]).await;
    assert_eq!((status, &again["id"]), (StatusCode::OK, &created["id"]));
    let other = body.replace("normal", "hoch");
    let (status, conflict) = call(&app, "POST", "/api/v1/tickets", Some(&other), &[]).await;
    assert_eq!(status, StatusCode::CONFLICT, "{conflict}");
    assert!(
        conflict["error"]["message"]
            .as_str()
            .unwrap()
            .contains("T-2026-000001"),
        "{conflict}"
    );

    // Standard: first response 8 h on the Berlin office calendar (Monday has a lunch
    // break): 09–12 and 13–17 Monday is 7 h, Tuesday 08:00 + 1 h.
    let uri = format!("/api/v1/tickets/{}", created["number"].as_str().unwrap());
    let (status, ticket) = call(&app, "GET", &uri, None, &[]).await;
    assert_eq!(status, StatusCode::OK, "{ticket}");
    assert_eq!(
        clock(&ticket, "first_response")["due_at"],
        "2026-06-09T07:00:00Z"
    );
    let kinds: Vec<&str> = ticket["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["created", "customer-message"]);

    // Two hours on, an internal note (the clock runs on), then a priority change to
    // kritisch: a störung, so the 24/7 policy — first response 1 h, long passed.
    f.advance(Duration::hours(2)).await;
    let id = created["id"].as_str().unwrap();
    let note = json!({"kind": "note", "body": "E17 = Verdampferfühler"}).to_string();
    let (status, _) = call(
        &app,
        "POST",
        &format!("/api/v1/tickets/{id}/messages"),
        Some(&note),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, ticket) = call(&app, "GET", &uri, None, &[]).await;
    assert_eq!(clock(&ticket, "first_response")["stopped_at"], Value::Null);
    assert_eq!(clock(&ticket, "first_response")["used_seconds"], 7200);
    let change = json!({"priority": "kritisch"}).to_string();
    let (status, changed) = call(&app, "PATCH", &uri, Some(&change), &[]).await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["policy"], "stoerung-kritisch");
    let (_, ticket) = call(&app, "GET", &uri, None, &[]).await;
    let first = clock(&ticket, "first_response");
    assert_eq!(first["used_seconds"], 7200, "the time used is kept");
    assert_eq!(
        first["breached_at"], "2026-06-08T08:00:00Z",
        "1 h after the start"
    );

    // The public reply stops it; waiting on the customer pauses the resolution.
    let reply = json!({"kind": "reply", "body": "Techniker kommt um 14 Uhr."}).to_string();
    call(
        &app,
        "POST",
        &format!("/api/v1/tickets/{id}/messages"),
        Some(&reply),
        &[],
    )
    .await;
    let waiting = json!({"status": "waiting-on-customer", "assignee": null}).to_string();
    let (status, changed) = call(&app, "PATCH", &uri, Some(&waiting), &[]).await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["assignee"], Value::Null);
    f.advance(Duration::hours(5)).await;
    let (_, ticket) = call(&app, "GET", &uri, None, &[]).await;
    assert_eq!(
        clock(&ticket, "first_response")["stopped_at"],
        "2026-06-08T09:00:00Z"
    );
    let resolution = clock(&ticket, "resolution");
    assert_eq!(
        (
            resolution["paused"].as_bool(),
            resolution["used_seconds"].as_i64()
        ),
        (Some(true), Some(7200))
    );

    let (_, listed) = call(
        &app,
        "GET",
        "/api/v1/tickets?status=waiting-on-customer&group=service-nord",
        None,
        &[],
    )
    .await;
    assert_eq!(listed["tickets"].as_array().unwrap().len(), 1, "{listed}");
    let (_, none) = call(&app, "GET", "/api/v1/tickets?status=resolved", None, &[]).await;
    assert!(none["tickets"].as_array().unwrap().is_empty());
}

async fn bad_ticket_fields_are_named_and_nothing_is_stored() {
    let (app, _f) = app().await;
    for (body, field) in [
        (
            json!({"subject": "x", "priority": "normal", "channel": "fax"}),
            "channel",
        ),
        (
            json!({"subject": "  ", "priority": "normal", "channel": "web"}),
            "subject",
        ),
        (
            json!({"subject": "x", "priority": "normal", "channel": "web", "contact": {"email": "kein-at"}}),
            "contact.email",
        ),
        (
            json!({"subject": "x\u{0007}", "priority": "normal", "channel": "web"}),
            "subject",
        ),
    ] {
        let (status, error) = call(
            &app,
            "POST",
            "/api/v1/tickets",
            Some(&body.to_string()),
            &[],
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {error}");
        assert_eq!(error["error"]["field"], field, "{error}");
    }
    let (status, error) = call(
        &app,
        "POST",
        "/api/v1/tickets",
        Some(r#"{"subject": "x", "priority": "normal", "channel": "web", "colour": "red"}"#),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    let (_, listed) = call(&app, "GET", "/api/v1/tickets", None, &[]).await;
    assert!(listed["tickets"].as_array().unwrap().is_empty(), "{listed}");
    let (status, _) = call(
        &app,
        "PATCH",
        "/api/v1/tickets/T-2026-999999",
        Some(r#"{"status": "open"}"#),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, error) = call(&app, "GET", "/api/v1/tickets?status=done", None, &[]).await;
    assert_eq!(
        (status, &error["error"]["field"]),
        (StatusCode::UNPROCESSABLE_ENTITY, &json!("status"))
    );
}

kontor::on_both_backends!(
    a_ticket_runs_its_clocks_under_the_policy_its_fields_select,
    bad_ticket_fields_are_named_and_nothing_is_stored,
);
