//! Tickets in the store, on both backends: numbers per year, intake idempotent on the
//! external id, changes and messages on the timeline, and the SLA clocks replayed from
//! that timeline under the shipped policies.

mod common;

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use kontor::service::escalation::evaluate;
use kontor::service::sla::TicketFacts;
use kontor::service::sla_clock::ClockKind;
use kontor::service::ticket::{Happening, Status, What};
use kontor::store::Store;
use kontor::store::audit::Actor;
use kontor::store::tickets::{Message, NewTicket, TicketChange, TicketFilter, TicketIntake};
use serde_json::json;

async fn store(dir: &tempfile::TempDir) -> Store {
    Store::open(&common::database_url(dir.path()).await)
        .await
        .unwrap()
}

fn catalog() -> kontor::workflow::Catalog {
    let catalog = kontor::workflow::Catalog::load(std::path::Path::new("../workflows"), None);
    assert!(
        catalog.all_diagnostics().is_empty(),
        "{:?}",
        catalog.all_diagnostics()
    );
    catalog
}

fn t(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn agent() -> Actor {
    Actor {
        name: "user:petra.schulz".into(),
        user_id: Some("petra.schulz".into()),
        role: Some("agent".into()),
    }
}

fn ticket(external: Option<&str>, priority: &str) -> NewTicket {
    NewTicket {
        external_id: external.map(str::to_string),
        customer_id: Some("K-10001".into()),
        contact: json!({"name": "Jürgen Müller", "email": "j.mueller@mueller-kaelte.example"}),
        subject: "Kühlzelle 3 fällt aus – Störung seit heute früh".into(),
        category: Some("stoerung".into()),
        priority: priority.into(),
        channel: "phone".into(),
        tier: None,
        group: Some("service-nord".into()),
        assignee: Some("petra.schulz".into()),
        policy: Some("hoch".into()),
        message: Some("Die Kühlzelle zeigt Fehler E17.".into()),
    }
}

async fn a_ticket_is_numbered_and_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let now = t("2026-06-08T06:00:00Z");
    let first = store
        .tickets()
        .create(
            "tkt-1",
            &ticket(Some("CRM-T-1"), "hoch"),
            "h1",
            &[],
            &agent(),
            now,
        )
        .await
        .unwrap();
    let TicketIntake::Created(first) = first else {
        panic!("{first:?}")
    };
    assert_eq!(first.number, "T-2026-000001");
    assert_eq!(first.status, Status::New);
    assert_eq!(first.contact["name"], "Jürgen Müller");
    let again = store
        .tickets()
        .create(
            "tkt-x",
            &ticket(Some("CRM-T-1"), "hoch"),
            "h1",
            &[],
            &agent(),
            now,
        )
        .await
        .unwrap();
    assert_eq!(again, TicketIntake::Again(first.clone()));
    let conflict = store
        .tickets()
        .create(
            "tkt-y",
            &ticket(Some("CRM-T-1"), "normal"),
            "h2",
            &[],
            &agent(),
            now,
        )
        .await
        .unwrap();
    assert_eq!(conflict, TicketIntake::Conflict(first.clone()));
    let second = store
        .tickets()
        .create("tkt-2", &ticket(None, "normal"), "h3", &[], &agent(), now)
        .await
        .unwrap();
    let TicketIntake::Created(second) = second else {
        panic!("{second:?}")
    };
    assert_eq!(
        second.number, "T-2026-000002",
        "no number lost to the re-deliveries"
    );
    // A new year starts at 1.
    let next_year = store
        .tickets()
        .create(
            "tkt-3",
            &ticket(None, "normal"),
            "h4",
            &[],
            &agent(),
            t("2027-01-01T00:00:01Z"),
        )
        .await
        .unwrap();
    let TicketIntake::Created(next_year) = next_year else {
        panic!()
    };
    assert_eq!(next_year.number, "T-2027-000001");
    assert_eq!(
        store
            .tickets()
            .get("T-2026-000002")
            .await
            .unwrap()
            .unwrap()
            .id,
        "tkt-2"
    );
    let all = store
        .tickets()
        .list(&TicketFilter {
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: Vec<&str> = all.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(
        ids,
        ["tkt-3", "tkt-2", "tkt-1"],
        "newest first, nothing else stored"
    );
}

async fn the_timeline_drives_the_clocks_under_the_shipped_policy() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let catalog = catalog();
    let tickets = store.tickets();
    // Monday 2026-06-08 08:00 Berlin, priority hoch: first response 4 h, resolution 24 h
    // on the Berlin office calendar (Monday with a lunch break).
    let created = t("2026-06-08T06:00:00Z");
    tickets
        .create("tkt-1", &ticket(None, "hoch"), "h", &[], &agent(), created)
        .await
        .unwrap();
    let facts = TicketFacts {
        category: Some("stoerung"),
        priority: Some("hoch"),
        tier: None,
        channel: Some("phone"),
    };
    let policy = catalog.sla.select(&facts).unwrap();
    assert_eq!(policy.name, "hoch");
    let calendar = catalog.calendars.get(&policy.calendar).unwrap().clone();

    // An internal note, then the reply 2 h in; then waiting on the customer.
    let store_note = Message::Note {
        body: "Fehler E17 = Verdampferfühler, Techniker fragen".into(),
    };
    tickets
        .add_message("tkt-1", &store_note, &agent(), t("2026-06-08T07:00:00Z"))
        .await
        .unwrap();
    let reply = Message::Reply {
        body: "Wir schicken morgen früh einen Techniker.".into(),
    };
    tickets
        .add_message("tkt-1", &reply, &agent(), t("2026-06-08T08:00:00Z"))
        .await
        .unwrap();
    let waiting = TicketChange {
        status: Some(Status::WaitingOnCustomer),
        ..Default::default()
    };
    tickets
        .change("tkt-1", &waiting, &agent(), t("2026-06-08T09:00:00Z"))
        .await
        .unwrap()
        .unwrap();
    let happenings = tickets.happenings("tkt-1").await.unwrap();
    let expected = [
        Happening {
            at: created,
            what: What::Created,
        },
        Happening {
            at: t("2026-06-08T07:00:00Z"),
            what: What::AgentReply { public: false },
        },
        Happening {
            at: t("2026-06-08T08:00:00Z"),
            what: What::AgentReply { public: true },
        },
        Happening {
            at: t("2026-06-08T09:00:00Z"),
            what: What::Status(Status::WaitingOnCustomer),
        },
    ];
    assert_eq!(
        happenings, expected,
        "the first message is not a next-response start"
    );

    let now = t("2026-06-09T12:00:00Z");
    let evaluation = evaluate(policy, calendar.clone(), &happenings, &BTreeSet::new(), now);
    let clock = |kind| {
        evaluation
            .clocks
            .iter()
            .find(|c| c.kind == kind)
            .unwrap()
            .clone()
    };
    let first = clock(ClockKind::FirstResponse);
    assert_eq!(
        first.stopped_at,
        Some(t("2026-06-08T08:00:00Z")),
        "the note did not count"
    );
    let resolution = clock(ClockKind::Resolution);
    assert!(resolution.paused);
    // Monday 08:00–11:00 Berlin: 3 h, nothing since.
    assert_eq!(resolution.used_seconds, 3 * 3600);

    // The customer answers; the status is open again, and the priority goes up to
    // kritisch — a störung, so the 24/7 policy, replayed from the start.
    tickets
        .add_message(
            "tkt-1",
            &Message::Customer {
                body: "Techniker ist willkommen, Tor 2.".into(),
            },
            &Actor {
                name: "customer".into(),
                user_id: None,
                role: None,
            },
            t("2026-06-09T12:00:00Z"),
        )
        .await
        .unwrap();
    let critical = TicketFacts {
        priority: Some("kritisch"),
        ..facts
    };
    let new_policy = catalog.sla.select(&critical).unwrap();
    assert_eq!(new_policy.name, "stoerung-kritisch");
    let change = TicketChange {
        status: Some(Status::Open),
        priority: Some("kritisch".into()),
        policy: Some(new_policy.name.clone()),
        ..Default::default()
    };
    let changed = tickets
        .change("tkt-1", &change, &agent(), t("2026-06-09T12:00:00Z"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            changed.priority.as_str(),
            changed.status,
            changed.policy.as_deref()
        ),
        ("kritisch", Status::Open, Some("stoerung-kritisch"))
    );
    let kinds: Vec<String> = tickets
        .events("tkt-1")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            "created",
            "customer-message",
            "note",
            "reply",
            "status",
            "customer-message",
            "status",
            "priority",
            "policy"
        ]
    );
    let hotline = catalog.calendars.get(&new_policy.calendar).unwrap().clone();
    let happenings = tickets.happenings("tkt-1").await.unwrap();
    let evaluation = evaluate(
        new_policy,
        hotline,
        &happenings,
        &BTreeSet::new(),
        t("2026-06-09T12:00:00Z"),
    );
    let resolution = evaluation
        .clocks
        .iter()
        .find(|c| c.kind == ClockKind::Resolution)
        .unwrap();
    // Around the clock: 3 h before the pause, none while paused; 8 h target → 5 h left.
    assert_eq!(resolution.used_seconds, 3 * 3600);
    assert_eq!(resolution.due_at, Some(t("2026-06-09T17:00:00Z")));
    // The customer's message after the reply started the next-response clock (2 h).
    let next = evaluation
        .clocks
        .iter()
        .find(|c| c.kind == ClockKind::NextResponse)
        .unwrap();
    assert_eq!(next.due_at, Some(t("2026-06-09T14:00:00Z")));
    // Under the new targets the first response (2 h against 1 h) passed its 75 %, 90 %
    // and 100 % on the way: those are due now, and each is remembered once.
    let keys: Vec<(String, &'static str, serde_json::Value)> = evaluation
        .due
        .iter()
        .map(|d| (d.key.clone(), "warning", json!({"clock": d.clock.kind})))
        .collect();
    let names: Vec<&str> = keys.iter().map(|(k, _, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "first_response#0:warning@75%",
            "first_response#0:warning@90%",
            "first_response#0:escalation@100%"
        ],
        "{evaluation:?}"
    );
    assert!(
        tickets
            .record_fired("tkt-1", &keys, &agent(), t("2026-06-09T12:00:00Z"))
            .await
            .unwrap()
    );
    assert!(
        tickets
            .record_fired("tkt-1", &keys, &agent(), t("2026-06-09T12:01:00Z"))
            .await
            .unwrap()
    );
    let after = tickets.get("tkt-1").await.unwrap().unwrap();
    assert_eq!(after.fired.len(), keys.len(), "each once");
    let warnings = tickets
        .events("tkt-1")
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "warning")
        .count();
    assert_eq!(warnings, keys.len());
}

async fn lists_filter_by_status_group_and_assignee_and_the_erp_view_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let now = t("2026-06-08T06:00:00Z");
    for (id, group) in [
        ("a", "service-nord"),
        ("b", "service-sued"),
        ("c", "service-nord"),
    ] {
        let mut new = ticket(None, "normal");
        new.group = Some(group.into());
        store
            .tickets()
            .create(id, &new, id, &[], &agent(), now)
            .await
            .unwrap();
    }
    store
        .tickets()
        .change(
            "c",
            &TicketChange {
                status: Some(Status::Resolved),
                assignee: Some(None),
                ..Default::default()
            },
            &agent(),
            now,
        )
        .await
        .unwrap();
    let list = |filter: TicketFilter| {
        let store = store.clone();
        async move {
            store
                .tickets()
                .list(&TicketFilter {
                    limit: 10,
                    ..filter
                })
                .await
                .unwrap()
                .into_iter()
                .map(|t| t.id)
                .collect::<Vec<_>>()
        }
    };
    let nord = list(TicketFilter {
        group: Some("service-nord".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(nord, ["c", "a"]);
    let resolved = list(TicketFilter {
        status: Some(Status::Resolved),
        ..Default::default()
    })
    .await;
    assert_eq!(resolved, ["c"]);
    let petra = list(TicketFilter {
        assignee: Some("petra.schulz".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(petra, ["b", "a"], "c has no assignee any more");
    let page = list(TicketFilter {
        before: Some("b".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(page, ["a"]);

    let snapshot = json!({
        "customer": {"id": "K-10001", "name": "Müller Kältetechnik GmbH"},
        "missing": [{"part": "open_items", "why": "the ERP did not answer in 5 s"}]
    });
    assert!(
        store
            .tickets()
            .set_erp_snapshot("a", &snapshot, &agent(), now)
            .await
            .unwrap()
    );
    assert!(
        !store
            .tickets()
            .set_erp_snapshot("nope", &snapshot, &agent(), now)
            .await
            .unwrap()
    );
    let a = store.tickets().get("a").await.unwrap().unwrap();
    assert_eq!(a.erp_snapshot.as_ref(), Some(&snapshot));
    assert_eq!(a.erp_loaded_at, Some(now));
}

kontor::on_both_backends!(
    a_ticket_is_numbered_and_stored_once,
    the_timeline_drives_the_clocks_under_the_shipped_policy,
    lists_filter_by_status_group_and_assignee_and_the_erp_view_is_kept,
);
