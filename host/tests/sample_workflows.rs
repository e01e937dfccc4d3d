//! The shipped sample workflows run end to end with builtin steps.

mod common;

use chrono::Duration;
use common::*;
use kontor::store::RunStatus;
use serde_json::json;

fn lead(id: &str, postal_code: &str, employees: i64, quote: bool) -> serde_json::Value {
    json!({
        "id": id, "email": "einkauf@example.de", "company": "Müller Maschinenbau GmbH",
        "title": "Leiter Einkauf", "country": "DE", "postal_code": postal_code,
        "industry": "maschinenbau", "product": "B", "employees": employees, "quote_requested": quote
    })
}

#[tokio::test]
async fn lead_routing_scores_assigns_and_records_feedback() {
    // Monday 2026-06-08 10:00 Berlin.
    let f = shipped_workflows("2026-06-08T08:00:00Z").await;
    f.event("lead.created", "", lead("L-1", "20095", 320, true))
        .await;
    f.event("lead.created", "", lead("L-2", "80331", 10, false))
        .await;
    let leads = f.records("leads").await;
    assert_eq!(leads.len(), 2);
    // L-1: DE 20 + 320 staff 25 + industry 20 + quote 30 + title 10 = 105 → sales-qualified;
    // Hamburg 20095 × maschinenbau × product B → only team nord-maschinenbau owns B there.
    assert_eq!(leads[0].1["stage"], "sales-qualified");
    assert_eq!(leads[0].1["score"], 105);
    assert_eq!(leads[0].1["team"], "nord-maschinenbau");
    // L-2: 20 + 5 + 20 + 0 + 10 = 55 → marketing-qualified, Munich → team sued.
    assert_eq!(leads[1].1["stage"], "marketing-qualified");
    assert_eq!(leads[1].1["team"], "sued");

    f.event("lead.accepted", "L-1", json!({"opportunity_id": "OPP-9"}))
        .await;
    assert_eq!(f.records("leads").await[0].1["stage"], "accepted");
    assert_eq!(f.records("leads").await[0].1["opportunity"], "OPP-9");

    // Nobody reacts to L-2: reminders after each 16 business hours (two working days),
    // and after the third the lead is marked unanswered.
    f.advance_in_steps(Duration::days(2), Duration::minutes(30))
        .await; // Wed 10:00
    assert_eq!(f.records("lead_reminders").await[0].1["reminders"], 1);
    f.advance_in_steps(Duration::days(7), Duration::minutes(30))
        .await;
    let leads = f.records("leads").await;
    assert_eq!(leads[1].1["stage"], "unanswered");
    let runs = f
        .engine
        .store()
        .list_runs(&kontor::store::RunFilter {
            workflow: Some("lead-routing".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(runs.iter().all(|r| r.status == RunStatus::Completed));
}

#[tokio::test]
async fn recall_campaign_contacts_everyone_and_reports_progress() {
    let f = shipped_workflows("2026-06-08T08:00:00Z").await;
    let customers = json!([
        {"id": "K-1", "name": "Bäckerei Groß", "email": "info@baeckerei-gross.de"},
        {"id": "K-2", "name": "Jürgen Weiß", "email": "jw@example.de", "channel": "letter"},
        {"id": "K-3", "name": "Zoë Ångström", "email": "zoe@example.at", "locale": "en"}
    ]);
    let campaign = f
        .start(
            "recall-campaign",
            json!({"campaign": "R-7", "series": "KX-200", "customers": customers}),
        )
        .await;
    f.settle().await;
    let progress = f.engine.store().child_counts(&campaign).await.unwrap();
    assert_eq!((progress.total, progress.running), (3, 3));
    let contacts = f.records("recall_contacts").await;
    assert_eq!(contacts.len(), 3);
    assert_eq!(contacts[1].1["channel"], "letter");

    f.event(
        "recall.response",
        "R-7/K-1",
        json!({"answer": "Termin am Dienstag"}),
    )
    .await;
    f.advance(Duration::days(7)).await; // follow-ups for K-2 and K-3
    f.event(
        "recall.response",
        "R-7/K-2",
        json!({"answer": "Gerät bereits getauscht"}),
    )
    .await;
    let progress = f.engine.store().child_counts(&campaign).await.unwrap();
    assert_eq!((progress.completed, progress.running), (2, 1));
    assert_eq!(f.run(&campaign).await.status, RunStatus::Waiting);
    f.advance(Duration::days(14)).await; // K-3 never answers
    let states: Vec<String> = f
        .records("recall_contacts")
        .await
        .iter()
        .map(|(k, v)| format!("{k}={}", v["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [
            "R-7/K-1=responded",
            "R-7/K-2=responded",
            "R-7/K-3=no_response"
        ]
    );
    let run = f.run(&campaign).await;
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(run.output.unwrap()["contacted"], 3);
}

#[tokio::test]
async fn ticket_priority_change_recomputes_the_sla_timers() {
    // Monday 2026-06-08 09:00 Berlin.
    let f = shipped_workflows("2026-06-08T07:00:00Z").await;
    f.event(
        "ticket.created",
        "",
        json!({"id": "T-1", "customer_id": "K-1", "priority": "niedrig", "subject": "Frage zur Rechnung"}),
    )
    .await;
    // niedrig: warning after 32 business hours. At 11:00 it becomes kritisch: the warning
    // now comes 2 business hours after the change — 11–12 and, after lunch, 13–14.
    f.advance(Duration::hours(2)).await; // Mon 11:00
    f.event("ticket.updated", "T-1", json!({"priority": "kritisch"}))
        .await;
    f.advance(Duration::hours(2)).await; // Mon 13:00: 1 business hour since the change
    assert!(f.records("ticket_escalations").await.is_empty());
    f.advance(Duration::hours(1)).await; // Mon 14:00
    assert_eq!(f.records("ticket_escalations").await[0].1["level"], 1);
}
