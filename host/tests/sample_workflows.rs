//! The shipped sample workflows run end to end with builtin steps. (Lead routing calls
//! the lead-scoring plugin; it runs in `tests/tests/serve.rs` with the compiled plugin.)

mod common;

use chrono::Duration;
use common::*;
use kontor::run::RunStatus;
use serde_json::json;

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
    let progress = f
        .engine
        .store()
        .runs()
        .child_counts(&campaign)
        .await
        .unwrap();
    assert_eq!((progress.total, progress.running), (3, 3));
    let contacts = f.records("recall_contacts").await;
    assert_eq!(contacts.len(), 3);
    assert_eq!(contacts[1].1["channel"], "letter");
    // K-1 and K-3 get the safety notice by email, each in their locale; K-2 a letter.
    let mail = f
        .engine
        .store()
        .outbox()
        .list(&kontor::store::MessageFilter {
            campaign: Some("R-7".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut sent: Vec<(String, Option<String>, String, String)> = mail
        .iter()
        .map(|m| {
            (
                m.to.clone(),
                m.locale.clone(),
                m.purpose.clone(),
                m.status.clone(),
            )
        })
        .collect();
    sent.sort();
    assert_eq!(
        sent,
        [
            (
                "info@baeckerei-gross.de".into(),
                Some("de".into()),
                "safety".into(),
                "queued".into()
            ),
            (
                "zoe@example.at".into(),
                Some("en".into()),
                "safety".into(),
                "queued".into()
            ),
        ]
    );

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
    let progress = f
        .engine
        .store()
        .runs()
        .child_counts(&campaign)
        .await
        .unwrap();
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
