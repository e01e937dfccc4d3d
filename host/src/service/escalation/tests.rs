use std::collections::BTreeSet;
use std::path::Path;

use chrono::{DateTime, Utc};

use super::*;
use crate::service::sla::{Recipient, SlaPolicies, TicketFacts, parse_file};
use crate::service::testing::service_de;
use crate::service::ticket::{Happening, Status, What};

fn t(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

/// Normal tickets: resolution in 16 h, warned at 75 %, the group lead at 100 %, the
/// service lead 4 h later; high ones in 8 h, warned at 75 % and 90 %.
fn policies() -> SlaPolicies {
    let text = r#"
priorities: [hoch, normal]
defaults:
  calendar: service-de
  pause: {resolution: [waiting-on-customer]}
policies:
  - name: hoch
    match: {priority: [hoch]}
    resolution: 8h
    warnings: [75%, 90%]
  - name: normal
    resolution: 16h
    warnings: [75%]
    escalation:
      - {at: 100%, notify: [group_lead], reassign: group_queue}
      - {at: 100% + 4h, notify: [service_lead], raise_priority: true, business_hours_only: false}
"#;
    let calendars = BTreeSet::from(["service-de".to_string()]);
    let templates = BTreeSet::from(["sla-warning".to_string(), "sla-escalation".to_string()]);
    let all = SlaPolicies::assemble(vec![parse_file(
        Path::new("sla.yaml"),
        text,
        &calendars,
        &templates,
    )]);
    assert!(all.diagnostics.is_empty(), "{:?}", all.diagnostics);
    all
}

fn policy<'a>(all: &'a SlaPolicies, priority: &str) -> &'a Policy {
    all.select(&TicketFacts {
        priority: Some(priority),
        ..TicketFacts::default()
    })
    .unwrap()
}

/// Fires what is due, as an SLA step would, and returns the keys it fired.
fn fire(evaluation: &Evaluation, fired: &mut BTreeSet<String>) -> Vec<String> {
    evaluation
        .due
        .iter()
        .map(|d| {
            fired.insert(d.key.clone());
            d.key.clone()
        })
        .collect()
}

#[test]
fn each_level_fires_once_in_order_and_the_next_one_is_known() {
    let all = policies();
    let normal = policy(&all, "normal");
    let cal = service_de();
    // Monday 2026-06-08 08:00 Berlin.
    let history = [Happening {
        at: t("2026-06-08T06:00:00Z"),
        what: What::Created,
    }];
    let mut fired = BTreeSet::new();
    let at = |now: &str, fired: &BTreeSet<String>| {
        evaluate(normal, cal.clone(), &history, fired, t(now))
    };

    let start = at("2026-06-08T06:00:00Z", &fired);
    assert!(start.due.is_empty());
    // 75 % of 16 h = 12 h: Monday 9 h, Tuesday 3 h → Tuesday 11:00 Berlin.
    assert_eq!(start.next_at, Some(t("2026-06-09T09:00:00Z")));

    let warned = at("2026-06-09T09:00:00Z", &fired);
    assert_eq!(fire(&warned, &mut fired), ["resolution#0:warning@75%"]);
    assert_eq!(warned.due[0].level.notify, [Recipient::Assignee]);
    assert!(at("2026-06-09T09:30:00Z", &fired).due.is_empty(), "once");

    // 100 %: Tuesday 15:00 Berlin; 100 % + 4 h: Wednesday 10:00 Berlin.
    let breached = at("2026-06-09T14:00:00Z", &fired);
    assert_eq!(
        fire(&breached, &mut fired),
        ["resolution#0:escalation@100%"]
    );
    assert!(breached.due[0].level.to_group_queue);
    assert_eq!(breached.next_at, Some(t("2026-06-10T08:00:00Z")));
    assert_eq!(
        breached.clocks[0].breached_at,
        Some(t("2026-06-09T13:00:00Z"))
    );

    let later = at("2026-06-10T09:00:00Z", &fired);
    assert_eq!(
        fire(&later, &mut fired),
        ["resolution#0:escalation@100%+4h"]
    );
    assert!(later.due[0].level.raise_priority);
    assert_eq!(later.next_at, None, "nothing left");
}

#[test]
fn a_priority_change_keeps_sent_warnings_and_makes_passed_ones_due_at_once() {
    let all = policies();
    let cal = service_de();
    let history = [Happening {
        at: t("2026-06-08T06:00:00Z"),
        what: What::Created,
    }];
    let mut fired = BTreeSet::new();
    // Normal: warned at 75 % (12 h) on Tuesday 11:00 Berlin.
    let normal = evaluate(
        policy(&all, "normal"),
        cal.clone(),
        &history,
        &fired,
        t("2026-06-09T09:00:00Z"),
    );
    fire(&normal, &mut fired);
    // Then the priority goes up: 8 h from the ticket's start is long past. The 75 %
    // warning was sent; the 90 % one is due now — once.
    let high = policy(&all, "hoch");
    let now = t("2026-06-09T10:00:00Z");
    let changed = evaluate(high, cal.clone(), &history, &fired, now);
    assert_eq!(fire(&changed, &mut fired), ["resolution#0:warning@90%"]);
    assert_eq!(changed.due[0].reached_at, t("2026-06-08T13:12:00Z"));
    assert!(evaluate(high, cal, &history, &fired, now).due.is_empty());
}

#[test]
fn a_resolved_or_paused_ticket_escalates_no_further_and_mail_waits_for_office_hours() {
    let all = policies();
    let normal = policy(&all, "normal");
    let cal = service_de();
    let mut history = vec![
        Happening {
            at: t("2026-06-08T06:00:00Z"),
            what: What::Created,
        },
        Happening {
            at: t("2026-06-08T08:00:00Z"),
            what: What::Status(Status::WaitingOnCustomer),
        },
    ];
    let paused = evaluate(
        normal,
        cal.clone(),
        &history,
        &BTreeSet::new(),
        t("2026-06-15T06:00:00Z"),
    );
    assert!(
        paused.due.is_empty() && paused.next_at.is_none(),
        "{paused:?}"
    );
    assert!(paused.clocks[0].paused);

    history.push(Happening {
        at: t("2026-06-10T06:00:00Z"),
        what: What::Status(Status::Open),
    });
    // 2 h used before the pause; 75 % (12 h) 10 h after Wednesday 08:00 → Thursday 09:00
    // Berlin. Evaluated on Thursday 22:00, the warning is due but its mail waits for
    // Friday 08:00; the service lead's level (20 h, Thursday 17:00) does not wait.
    let late = evaluate(
        normal,
        cal.clone(),
        &history,
        &BTreeSet::new(),
        t("2026-06-11T20:00:00Z"),
    );
    let warning = late
        .due
        .iter()
        .find(|d| d.key == "resolution#0:warning@75%")
        .unwrap();
    assert_eq!(warning.reached_at, t("2026-06-11T07:00:00Z"));
    assert_eq!(warning.notify_at, t("2026-06-12T06:00:00Z"));
    let service_lead = late
        .due
        .iter()
        .find(|d| d.key == "resolution#0:escalation@100%+4h")
        .unwrap();
    assert_eq!(service_lead.reached_at, t("2026-06-11T15:00:00Z"));
    assert_eq!(service_lead.notify_at, t("2026-06-11T20:00:00Z"));
    let keys: Vec<&str> = late.due.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "resolution#0:warning@75%",
            "resolution#0:escalation@100%",
            "resolution#0:escalation@100%+4h"
        ],
        "in the order reached"
    );

    history.push(Happening {
        at: t("2026-06-10T07:00:00Z"),
        what: What::Status(Status::Resolved),
    });
    let resolved = evaluate(
        normal,
        cal,
        &history,
        &BTreeSet::new(),
        t("2026-06-20T06:00:00Z"),
    );
    assert!(
        resolved.due.is_empty() && resolved.next_at.is_none(),
        "{resolved:?}"
    );
}
