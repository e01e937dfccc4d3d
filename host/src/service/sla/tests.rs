use std::collections::BTreeSet;
use std::path::Path;

use chrono::Duration;

use super::*;
use crate::service::sla_clock::{ClockKind, Reopen, Threshold};
use crate::service::ticket::Status;

fn calendars() -> BTreeSet<String> {
    ["service-berlin", "hotline-24-7"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn templates() -> BTreeSet<String> {
    ["sla-warning", "sla-escalation"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn parse(name: &str, text: &str) -> ParsedFile {
    parse_file(Path::new(name), text, &calendars(), &templates())
}

fn messages(diagnostics: &[crate::diagnostics::Diagnostic]) -> Vec<String> {
    diagnostics.iter().map(|d| d.to_string()).collect()
}

const SERVICE: &str = r#"
priorities: [kritisch, hoch, normal, niedrig]
categories: [ersatzteil, stoerung, reklamation, zahlung]
defaults:
  calendar: service-berlin
  pause:
    next_response: [waiting-on-customer]
    resolution: [waiting-on-customer, waiting-on-third-party]
  warnings: [75%, 90%]
policies:
  - name: stoerung-kritisch
    match: {category: [stoerung], priority: [kritisch]}
    calendar: hotline-24-7
    first_response: 1h
    next_response: 2h
    resolution: 8h
    reopen: restart
    escalation:
      - {at: 100%, notify: [group_lead], reassign: group_queue}
      - {at: 100% + 4h, clock: resolution, notify: [service_lead, leitung@kaeltetechnik-sued.example], raise_priority: true}
  - name: gold
    match: {tier: [gold]}
    first_response: 2h
    resolution: 2d
  - name: standard
    first_response: 8h
    next_response: 1d
    resolution: 5d
"#;

#[test]
fn the_first_matching_policy_wins_and_defaults_fill_in() {
    let file = parse("sla/service.yaml", SERVICE);
    assert!(
        file.diagnostics.is_empty(),
        "{:?}",
        messages(&file.diagnostics)
    );
    let all = SlaPolicies::assemble(vec![file]);
    assert!(
        all.diagnostics.is_empty(),
        "{:?}",
        messages(&all.diagnostics)
    );
    let pick = |category, priority, tier| {
        all.select(&TicketFacts {
            category: Some(category),
            priority: Some(priority),
            tier,
            channel: Some("phone"),
        })
        .unwrap()
        .name
        .as_str()
    };
    assert_eq!(
        pick("stoerung", "kritisch", Some("gold")),
        "stoerung-kritisch"
    );
    assert_eq!(pick("stoerung", "hoch", Some("gold")), "gold");
    assert_eq!(pick("stoerung", "hoch", None), "standard");

    let critical = all.get("stoerung-kritisch").unwrap();
    assert_eq!(critical.calendar, "hotline-24-7");
    assert_eq!(critical.resolution, Some(Duration::hours(8)));
    assert_eq!(critical.reopen, Reopen::Restart);
    assert_eq!(
        critical.pause.resolution,
        BTreeSet::from([Status::WaitingOnCustomer, Status::WaitingOnThirdParty])
    );
    // Two warnings to the assignee (from the defaults), then the two levels.
    let levels: Vec<(LevelKind, u32, Duration)> = critical
        .levels
        .iter()
        .map(|l| (l.kind, l.at.percent, l.at.plus))
        .collect();
    assert_eq!(
        levels,
        [
            (LevelKind::Warning, 75, Duration::zero()),
            (LevelKind::Warning, 90, Duration::zero()),
            (LevelKind::Escalation, 100, Duration::zero()),
            (LevelKind::Escalation, 100, Duration::hours(4)),
        ]
    );
    let last = &critical.levels[3];
    assert_eq!(last.clock, Some(ClockKind::Resolution));
    assert_eq!(
        last.notify,
        [
            Recipient::ServiceLead,
            Recipient::Email("leitung@kaeltetechnik-sued.example".into())
        ]
    );
    assert!(last.raise_priority && !last.to_group_queue && last.business_hours_only);
    assert!(critical.levels[2].to_group_queue);
    let standard = all.get("standard").unwrap();
    assert_eq!(standard.calendar, "service-berlin");
    assert_eq!(standard.resolution, Some(Duration::days(5)));
}

#[test]
fn thresholds_read_as_a_share_plus_business_time() {
    assert_eq!(
        parse_threshold("100% + 4h"),
        Ok(Threshold {
            percent: 100,
            plus: Duration::hours(4)
        })
    );
    assert_eq!(parse_threshold(" 75%").unwrap().percent, 75);
    for bad in ["75", "0%", "x%", "100% + soon"] {
        assert!(parse_threshold(bad).is_err(), "{bad}");
    }
}

#[test]
fn mistakes_are_reported_where_they_are_written() {
    let file = parse(
        "sla/broken.yaml",
        r#"priorities: [kritisch, hoch]
policies:
  - name: one
    match: {priority: [krtisch], channel: [fax]}
    calendar: service-berln
    first_response: 0h
    pause: {resolution: [waiting-on-custmer, resolved]}
    warnings: [90%, 75%]
    escalation:
      - {at: 100%, clock: next_response, notify: [chef]}
      - {at: 110%, notify: [assignee], template: sla-eskalation}
  - name: two
"#,
    );
    let got = messages(&file.diagnostics);
    let expected = [
        "sla/broken.yaml:5:15: error: there is no calendar `service-berln`",
        "sla/broken.yaml:6:21: error: a target must be longer than zero",
        "sla/broken.yaml:7:26: error: there is no status `waiting-on-custmer`",
        "sla/broken.yaml:7:46: error: `resolved` ends the clocks; it cannot pause them",
        "sla/broken.yaml:8:21: error: `75%` comes after `90%`",
        "sla/broken.yaml:10:27: error: the policy has no `next_response` target",
        "sla/broken.yaml:10:51: error: `chef` is no one to notify",
        "sla/broken.yaml:11:50: error: there is no template `sla-eskalation`",
        "sla/broken.yaml:4:24: error: there is no priority `krtisch`",
        "sla/broken.yaml:4:44: error: there is no channel `fax`",
        "sla/broken.yaml:12:11: error: policy `two` has no calendar",
        "sla/broken.yaml:12:11: error: policy `two` has no target",
    ];
    for e in expected {
        assert!(
            got.iter().any(|g| g.starts_with(e)),
            "missing {e:?} in {got:#?}"
        );
    }
    assert_eq!(got.len(), expected.len(), "{got:#?}");
    assert!(
        got.iter().any(|g| g.contains("did you mean `kritisch`?")),
        "{got:#?}"
    );
}

#[test]
fn a_policy_an_earlier_one_always_beats_is_refused_and_a_catch_all_is_required() {
    let text = r#"
defaults: {calendar: service-berlin, first_response: 4h}
policies:
  - name: phone
    match: {channel: [phone, email]}
  - name: phone-gold
    match: {channel: [phone], tier: [gold]}
"#;
    let all = SlaPolicies::assemble(vec![parse("sla/a.yaml", text)]);
    let got = messages(&all.diagnostics);
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(
        got[0].starts_with(
            "sla/a.yaml:6:11: error: policy `phone-gold` is never used: `phone` (sla/a.yaml:4)"
        ),
        "{got:#?}"
    );
    assert!(
        got[1].starts_with("sla/a.yaml:6:11: error: no policy matches every ticket"),
        "{got:#?}"
    );
    // Across files, in the order of their names.
    let catch_all =
        "defaults: {calendar: service-berlin, first_response: 4h}\npolicies:\n  - name: all\n";
    let all = SlaPolicies::assemble(vec![
        parse(
            "sla/b.yaml",
            "defaults: {calendar: service-berlin, first_response: 4h}\npolicies:\n  - name: late\n    match: {tier: [gold]}\n",
        ),
        parse("sla/a.yaml", catch_all),
    ]);
    let got = messages(&all.diagnostics);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].contains("policy `late` is never used: `all`"),
        "{got:#?}"
    );
}
