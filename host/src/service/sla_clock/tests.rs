use chrono::{DateTime, Duration, Utc};
use kontor_time::Calendar;
use std::collections::BTreeSet;

use super::*;
use crate::service::testing::{hotline, service_de};
use crate::service::ticket::{Happening, Status, What};

fn t(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn h(hours: i64) -> Duration {
    Duration::hours(hours)
}

fn rule(target: Duration, pause: &[Status]) -> Option<ClockRule> {
    Some(ClockRule {
        target,
        pause: pause.iter().copied().collect::<BTreeSet<_>>(),
    })
}

/// First response 4h, next response 2h, resolution 16h paused while waiting.
fn targets(calendar: Arc<Calendar>) -> Targets {
    Targets {
        calendar,
        first_response: rule(h(4), &[]),
        next_response: rule(h(2), &[Status::WaitingOnCustomer]),
        resolution: rule(
            h(16),
            &[Status::WaitingOnCustomer, Status::WaitingOnThirdParty],
        ),
        reopen: Reopen::Continue,
    }
}

fn at(time: &str, what: What) -> Happening {
    Happening { at: t(time), what }
}

fn state(clocks: &[Clock], kind: ClockKind, cycle: u32, cal: &Calendar, now: &str) -> ClockState {
    clocks
        .iter()
        .find(|c| c.kind == kind && c.cycle == cycle)
        .unwrap_or_else(|| panic!("no {kind:?} #{cycle} in {clocks:#?}"))
        .state(cal, t(now))
}

#[test]
fn a_ticket_of_friday_afternoon_is_due_on_monday_morning() {
    let cal = service_de();
    // Friday 2026-06-05 16:00 Berlin (CEST): 1 h on Friday, 3 h on Monday.
    let clocks = replay(
        &[at("2026-06-05T14:00:00Z", What::Created)],
        &targets(cal.clone()),
    );
    let first = state(
        &clocks,
        ClockKind::FirstResponse,
        0,
        &cal,
        "2026-06-06T12:00:00Z",
    );
    assert_eq!(first.due_at, Some(t("2026-06-08T09:00:00Z")));
    assert_eq!(first.used_seconds, 3600, "the weekend does not count");
    assert_eq!(first.remaining_seconds, 3 * 3600);
    assert!(!first.paused && first.breached_at.is_none());
    // Created on Saturday: nothing counts until Monday 08:00.
    let clocks = replay(
        &[at("2026-06-06T10:00:00Z", What::Created)],
        &targets(cal.clone()),
    );
    let first = state(
        &clocks,
        ClockKind::FirstResponse,
        0,
        &cal,
        "2026-06-08T06:00:00Z",
    );
    assert_eq!(first.used_seconds, 0);
    assert_eq!(first.due_at, Some(t("2026-06-08T10:00:00Z")));
}

#[test]
fn holidays_and_both_clock_changes_are_skipped() {
    let cal = service_de();
    // Wednesday 2026-12-23 16:30 CET: 30 min, then Christmas Eve (the company's), the
    // 25th and 26th (Berlin's), the weekend; 3.5 h more from Monday the 28th 08:00.
    let clocks = replay(
        &[at("2026-12-23T15:30:00Z", What::Created)],
        &targets(cal.clone()),
    );
    let first = state(
        &clocks,
        ClockKind::FirstResponse,
        0,
        &cal,
        "2026-12-23T16:00:00Z",
    );
    assert_eq!(first.due_at, Some(t("2026-12-28T10:30:00Z")));
    // Into summer time: Friday 2026-03-27 15:00 CET, 2 h, then Monday 08:00 CEST + 2 h.
    let clocks = replay(
        &[at("2026-03-27T14:00:00Z", What::Created)],
        &targets(cal.clone()),
    );
    let first = state(
        &clocks,
        ClockKind::FirstResponse,
        0,
        &cal,
        "2026-03-27T14:00:00Z",
    );
    assert_eq!(first.due_at, Some(t("2026-03-30T08:00:00Z")));
    // Out of it: Friday 2026-10-23 15:00 CEST, then Monday 08:00 CET + 2 h.
    let clocks = replay(
        &[at("2026-10-23T13:00:00Z", What::Created)],
        &targets(cal.clone()),
    );
    let first = state(
        &clocks,
        ClockKind::FirstResponse,
        0,
        &cal,
        "2026-10-23T13:00:00Z",
    );
    assert_eq!(first.due_at, Some(t("2026-10-26T09:00:00Z")));
}

#[test]
fn a_hotline_clock_counts_every_hour() {
    let cal = hotline();
    let clocks = replay(
        &[at("2026-06-06T02:00:00Z", What::Created)],
        &targets(cal.clone()),
    );
    let first = state(
        &clocks,
        ClockKind::FirstResponse,
        0,
        &cal,
        "2026-06-06T03:00:00Z",
    );
    assert_eq!(first.due_at, Some(t("2026-06-06T06:00:00Z")));
}

#[test]
fn only_a_public_reply_satisfies_a_response_clock() {
    let cal = service_de();
    // Monday 2026-06-08 08:00 Berlin.
    let history = [
        at("2026-06-08T06:00:00Z", What::Created),
        at("2026-06-08T07:00:00Z", What::AgentReply { public: false }),
    ];
    let clocks = replay(&history, &targets(cal.clone()));
    let first = state(
        &clocks,
        ClockKind::FirstResponse,
        0,
        &cal,
        "2026-06-08T11:00:00Z",
    );
    assert_eq!(first.stopped_at, None, "a note is not an answer");
    assert_eq!(first.breached_at, Some(t("2026-06-08T10:00:00Z")));

    let mut history = history.to_vec();
    history.push(at(
        "2026-06-08T09:00:00Z",
        What::AgentReply { public: true },
    ));
    let clocks = replay(&history, &targets(cal.clone()));
    let first = state(
        &clocks,
        ClockKind::FirstResponse,
        0,
        &cal,
        "2026-06-09T11:00:00Z",
    );
    assert_eq!(first.stopped_at, Some(t("2026-06-08T09:00:00Z")));
    assert_eq!((first.breached_at, first.due_at), (None, None));
    assert_eq!(first.used_seconds, 3 * 3600, "frozen at the reply");
}

#[test]
fn each_customer_message_after_a_reply_starts_a_next_response_cycle() {
    let cal = service_de();
    let history = [
        at("2026-06-08T06:00:00Z", What::Created),
        // Before the first reply a customer's message starts nothing new.
        at("2026-06-08T06:30:00Z", What::CustomerMessage),
        at("2026-06-08T07:00:00Z", What::AgentReply { public: true }),
        at("2026-06-08T08:00:00Z", What::CustomerMessage),
        at("2026-06-08T08:30:00Z", What::CustomerMessage),
        at("2026-06-08T09:00:00Z", What::AgentReply { public: true }),
        at("2026-06-08T11:00:00Z", What::CustomerMessage),
    ];
    let clocks = replay(&history, &targets(cal.clone()));
    let kinds: Vec<(ClockKind, u32)> = clocks.iter().map(|c| (c.kind, c.cycle)).collect();
    assert_eq!(
        kinds,
        [
            (ClockKind::FirstResponse, 0),
            (ClockKind::Resolution, 0),
            (ClockKind::NextResponse, 0),
            (ClockKind::NextResponse, 1),
        ]
    );
    let first_cycle = state(
        &clocks,
        ClockKind::NextResponse,
        0,
        &cal,
        "2026-06-08T12:00:00Z",
    );
    assert_eq!(first_cycle.used_seconds, 3600);
    assert_eq!(first_cycle.stopped_at, Some(t("2026-06-08T09:00:00Z")));
    let second = state(
        &clocks,
        ClockKind::NextResponse,
        1,
        &cal,
        "2026-06-08T12:00:00Z",
    );
    assert_eq!(
        second.due_at,
        Some(t("2026-06-08T13:00:00Z")),
        "the full 2 h again"
    );
}

#[test]
fn waiting_on_the_customer_pauses_and_the_due_time_moves_by_the_pause() {
    let cal = service_de();
    // Monday 08:00 created; 12:00 waiting on the customer (4 h used); Wednesday 08:00
    // open again: 12 h left, Wednesday 9 h and Thursday 3 h.
    let history = [
        at("2026-06-08T06:00:00Z", What::Created),
        at("2026-06-08T07:00:00Z", What::AgentReply { public: true }),
        at(
            "2026-06-08T10:00:00Z",
            What::Status(Status::WaitingOnCustomer),
        ),
    ];
    let clocks = replay(&history, &targets(cal.clone()));
    let paused = state(
        &clocks,
        ClockKind::Resolution,
        0,
        &cal,
        "2026-06-09T12:00:00Z",
    );
    assert!(paused.paused);
    assert_eq!(paused.used_seconds, 4 * 3600, "Tuesday does not count");
    assert_eq!(paused.due_at, None, "no due time while paused");

    let mut history = history.to_vec();
    history.push(at("2026-06-10T06:00:00Z", What::Status(Status::Open)));
    let clocks = replay(&history, &targets(cal.clone()));
    let resumed = state(
        &clocks,
        ClockKind::Resolution,
        0,
        &cal,
        "2026-06-10T06:00:00Z",
    );
    assert!(!resumed.paused);
    assert_eq!(resumed.due_at, Some(t("2026-06-11T09:00:00Z")));
}

#[test]
fn a_new_policy_keeps_the_time_used_and_excludes_the_pauses() {
    let cal = service_de();
    // Monday 08:00; waiting 10:00–12:00 Berlin; at 13:00 the priority goes up.
    let history = [
        at("2026-06-08T06:00:00Z", What::Created),
        at("2026-06-08T07:00:00Z", What::AgentReply { public: true }),
        at(
            "2026-06-08T08:00:00Z",
            What::Status(Status::WaitingOnCustomer),
        ),
        at("2026-06-08T10:00:00Z", What::Status(Status::Open)),
    ];
    let normal = targets(cal.clone());
    let clocks = replay(&history, &normal);
    let before = state(
        &clocks,
        ClockKind::Resolution,
        0,
        &cal,
        "2026-06-08T11:00:00Z",
    );
    // 2 h before the pause, 1 h after: 3 h used, 13 h left — due Tuesday 17:00 Berlin.
    assert_eq!(before.used_seconds, 3 * 3600);
    assert_eq!(before.due_at, Some(t("2026-06-09T15:00:00Z")));
    // High priority: 8 h from the ticket's start, the pause still excluded — due Monday
    // 18:00 would be after hours, so Tuesday 09:00 Berlin.
    let high = Targets {
        resolution: rule(h(8), &[Status::WaitingOnCustomer]),
        ..normal.clone()
    };
    let clocks = replay(&history, &high);
    let after = state(
        &clocks,
        ClockKind::Resolution,
        0,
        &cal,
        "2026-06-08T11:00:00Z",
    );
    assert_eq!(after.used_seconds, 3 * 3600, "the time used is kept");
    assert_eq!(after.due_at, Some(t("2026-06-09T07:00:00Z")));
    // Critical: 2 h — already passed, at the moment the clock had used 2 h (10:00).
    let critical = Targets {
        resolution: rule(h(2), &[Status::WaitingOnCustomer]),
        ..normal
    };
    let clocks = replay(&history, &critical);
    let breached = state(
        &clocks,
        ClockKind::Resolution,
        0,
        &cal,
        "2026-06-08T11:00:00Z",
    );
    assert_eq!(breached.breached_at, Some(t("2026-06-08T08:00:00Z")));
    assert_eq!(breached.remaining_seconds, -3600);
}

#[test]
fn thresholds_are_reached_at_their_share_of_the_target() {
    let cal = service_de();
    let clocks = replay(
        &[at("2026-06-08T06:00:00Z", What::Created)],
        &targets(cal.clone()),
    );
    let resolution = clocks
        .iter()
        .find(|c| c.kind == ClockKind::Resolution)
        .unwrap();
    let warn = Threshold {
        percent: 75,
        plus: Duration::zero(),
    };
    let late = Threshold {
        percent: 100,
        plus: h(4),
    };
    // 16 h: 75 % = 12 h (Monday 9 h + Tuesday 3 h: Tuesday 11:00 Berlin); 100 % + 4 h =
    // 20 h (9 + 9 + 2: Wednesday 10:00 Berlin).
    assert_eq!(
        resolution.reaches(&cal, warn.amount(resolution.target)),
        Some(t("2026-06-09T09:00:00Z"))
    );
    assert_eq!(
        resolution.reaches(&cal, late.amount(resolution.target)),
        Some(t("2026-06-10T08:00:00Z"))
    );
}

#[test]
fn resolving_ends_every_clock_and_reopening_continues_or_restarts() {
    let cal = service_de();
    let history = [
        at("2026-06-08T06:00:00Z", What::Created),
        at("2026-06-08T08:00:00Z", What::Status(Status::Resolved)),
        at("2026-06-09T06:00:00Z", What::Status(Status::Open)),
    ];
    let continuing = replay(&history, &targets(cal.clone()));
    let first = state(
        &continuing,
        ClockKind::FirstResponse,
        0,
        &cal,
        "2026-06-09T07:00:00Z",
    );
    assert_eq!(first.stopped_at, Some(t("2026-06-08T08:00:00Z")));
    let resolution = state(
        &continuing,
        ClockKind::Resolution,
        0,
        &cal,
        "2026-06-09T07:00:00Z",
    );
    assert_eq!(resolution.stopped_at, None);
    assert_eq!(
        resolution.used_seconds,
        3 * 3600,
        "2 h before, 1 h since reopening"
    );

    let restart = Targets {
        reopen: Reopen::Restart,
        ..targets(cal.clone())
    };
    let restarted = replay(&history, &restart);
    let old = state(
        &restarted,
        ClockKind::Resolution,
        0,
        &cal,
        "2026-06-09T07:00:00Z",
    );
    let new = state(
        &restarted,
        ClockKind::Resolution,
        1,
        &cal,
        "2026-06-09T07:00:00Z",
    );
    assert_eq!(old.stopped_at, Some(t("2026-06-08T08:00:00Z")));
    assert_eq!((new.used_seconds, new.stopped_at), (3600, None));
}
