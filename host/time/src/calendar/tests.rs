use super::*;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn office(state: &str) -> Calendar {
    Calendar::from_yaml(
        "office",
        &format!(
            "timezone: Europe/Berlin
working_hours:
  mon: [\"08:00-12:00\", \"13:00-17:00\"]
  tue: [\"08:00-17:00\"]
  wed: [\"08:00-17:00\"]
  thu: [\"08:00-17:00\"]
  fri: [\"08:00-15:00\"]
holidays:
  german_state: {state}
  dates:
    - 2026-12-24
    - {{ date: 2026-12-31, name: Silvester }}
"
        ),
    )
    .unwrap()
}

fn add(c: &Calendar, start: &str, hours: i64) -> String {
    c.add_business_duration(utc(start), Duration::hours(hours))
        .unwrap()
        .to_rfc3339()
}

#[test]
fn counts_within_a_day_and_over_lunch() {
    let c = office("BY");
    // Mon 2026-06-08 09:00 Berlin (07:00Z) + 2h → 11:00; + 4h → 14:00 (lunch skipped).
    assert_eq!(
        add(&c, "2026-06-08T07:00:00Z", 2),
        "2026-06-08T09:00:00+00:00"
    );
    assert_eq!(
        add(&c, "2026-06-08T07:00:00Z", 4),
        "2026-06-08T12:00:00+00:00"
    );
    // Ending exactly at the end of a period stays there: 09:00 + 7h = 17:00 Monday.
    assert_eq!(
        add(&c, "2026-06-08T07:00:00Z", 7),
        "2026-06-08T15:00:00+00:00"
    );
}

#[test]
fn skips_weekends_and_starts_outside_hours_at_the_next_period() {
    let c = office("BY");
    // Friday 14:00 + 2h: 1h Friday, 1h Monday → Mon 09:00 (07:00Z).
    assert_eq!(
        add(&c, "2026-06-12T12:00:00Z", 2),
        "2026-06-15T07:00:00+00:00"
    );
    // Saturday → Monday 08:00 + 1h.
    assert_eq!(
        add(&c, "2026-06-13T10:00:00Z", 1),
        "2026-06-15T07:00:00+00:00"
    );
    // Before opening (Tue 06:00) and after closing (Tue 18:00).
    assert_eq!(
        add(&c, "2026-06-09T04:00:00Z", 1),
        "2026-06-09T07:00:00+00:00"
    );
    assert_eq!(
        add(&c, "2026-06-09T16:00:00Z", 1),
        "2026-06-10T07:00:00+00:00"
    );
    assert!(!c.is_working_time(utc("2026-06-13T10:00:00Z")));
    assert!(c.is_working_time(utc("2026-06-09T10:00:00Z")));
    assert!(
        !c.is_working_time(utc("2026-06-08T10:30:00Z")),
        "Monday lunch"
    );
    assert_eq!(
        c.next_working_time(utc("2026-06-13T10:00:00Z"))
            .unwrap()
            .to_rfc3339(),
        "2026-06-15T06:00:00+00:00"
    );
}

#[test]
fn holidays_depend_on_the_state() {
    // Fronleichnam 2026-06-04 (Thu) is a holiday in Bavaria, not in Berlin.
    let by = office("BY");
    let be = office("BE");
    assert_eq!(
        by.holiday_name(NaiveDate::from_ymd_opt(2026, 6, 4).unwrap())
            .as_deref(),
        Some("Fronleichnam")
    );
    assert_eq!(
        be.holiday_name(NaiveDate::from_ymd_opt(2026, 6, 4).unwrap()),
        None
    );
    // Wed 2026-06-03 16:00 Berlin + 2h.
    assert_eq!(
        add(&by, "2026-06-03T14:00:00Z", 2),
        "2026-06-05T07:00:00+00:00"
    );
    assert_eq!(
        add(&be, "2026-06-03T14:00:00Z", 2),
        "2026-06-04T07:00:00+00:00"
    );
    // Reformationstag is on a Saturday in 2026; Buß- und Bettag 2026-11-18 only in Saxony.
    let sn = office("SN");
    assert!(!sn.is_working_day(NaiveDate::from_ymd_opt(2026, 11, 18).unwrap()));
    assert!(by.is_working_day(NaiveDate::from_ymd_opt(2026, 11, 18).unwrap()));
    // Wed 23 Dec at closing + 1h: the 24th is an explicit date, the 25th a public holiday,
    // 26/27 a weekend → Mon 28 Dec 09:00 CET.
    assert_eq!(
        add(&be, "2026-12-23T16:00:00Z", 1),
        "2026-12-28T08:00:00+00:00"
    );
    assert_eq!(
        be.holiday_name(NaiveDate::from_ymd_opt(2026, 12, 31).unwrap())
            .as_deref(),
        Some("Silvester")
    );
}

#[test]
fn a_week_long_duration_spans_weekends() {
    let c = office("BE");
    // Mon 8h (net of lunch) + Tue–Thu 9h + Fri 7h = 42h a week.
    assert_eq!(
        add(&c, "2026-06-08T06:00:00Z", 39),
        "2026-06-12T10:00:00+00:00"
    );
    assert_eq!(
        add(&c, "2026-06-08T06:00:00Z", 42),
        "2026-06-12T13:00:00+00:00"
    );
    assert_eq!(
        add(&c, "2026-06-08T06:00:00Z", 43),
        "2026-06-15T07:00:00+00:00"
    );
    assert_eq!(
        add(&c, "2026-06-08T06:00:00Z", 42 * 4),
        "2026-07-03T13:00:00+00:00"
    );
}

#[test]
fn daylight_saving_switches_count_real_time() {
    let night = Calendar::from_yaml(
        "night",
        "timezone: Europe/Berlin\nworking_hours:\n  sun: [\"01:00-04:00\"]\n",
    )
    .unwrap();
    // Sunday 2026-03-29: 01:00-04:00 local is only 2 real hours (02:00 → 03:00 skipped).
    let start = utc("2026-03-29T00:00:00Z"); // 01:00 CET
    assert_eq!(
        night.business_duration_between(start, utc("2026-03-29T12:00:00Z")),
        Duration::hours(2)
    );
    assert_eq!(
        night
            .add_business_duration(start, Duration::hours(2))
            .unwrap()
            .to_rfc3339(),
        "2026-03-29T02:00:00+00:00"
    );
    // Sunday 2026-10-25: 01:00-04:00 local is 4 real hours (02:00-03:00 twice).
    let start = utc("2026-10-24T23:00:00Z"); // 01:00 CEST
    assert_eq!(
        night.business_duration_between(start, utc("2026-10-25T12:00:00Z")),
        Duration::hours(4)
    );
    assert_eq!(
        night
            .add_business_duration(start, Duration::hours(4))
            .unwrap()
            .to_rfc3339(),
        "2026-10-25T03:00:00+00:00"
    );
    // Ordinary office hours across the switch: Fri 14:00 + 2h → Mon 09:00 (CEST / CET).
    let c = office("BE");
    assert_eq!(
        add(&c, "2026-03-27T13:00:00Z", 2),
        "2026-03-30T07:00:00+00:00"
    );
    assert_eq!(
        add(&c, "2026-10-23T12:00:00Z", 2),
        "2026-10-26T08:00:00+00:00"
    );
}

#[test]
fn between_inverts_add() {
    let c = office("BY");
    let mut start = utc("2026-03-25T05:17:00Z");
    for i in 0..200 {
        let d = Duration::minutes(37 * i + 5);
        let end = c.add_business_duration(start, d).unwrap();
        assert_eq!(
            c.business_duration_between(start, end),
            d,
            "start {start} + {d}"
        );
        start += Duration::minutes(437);
    }
}

#[test]
fn a_calendar_without_hours_fails_instead_of_looping() {
    let c = Calendar::from_yaml("none", "timezone: UTC\nworking_hours: {}\n").unwrap();
    assert!(
        c.add_business_duration(utc("2026-01-01T00:00:00Z"), Duration::hours(1))
            .is_err()
    );
}

#[test]
fn file_errors_point_at_the_value() {
    let e = Calendar::from_yaml("x", "timezone: Europe/Berlinn\nworking_hours: {}\n").unwrap_err();
    assert_eq!((e.line, e.column), (1, 11));
    assert!(e.message.contains("Europe/Berlinn"));
    let e = Calendar::from_yaml(
        "x",
        "timezone: UTC\nworking_hours:\n  mon: [\"08:00-12:00\", \"17:00-08:00\"]\n",
    )
    .unwrap_err();
    assert_eq!(e.line, 3);
    assert!(e.message.contains("ends before it starts"), "{}", e.message);
    let e = Calendar::from_yaml(
        "x",
        "timezone: UTC\nworking_hours:\n  mon: [\"08:00-12:00\", \"11:00-13:00\"]\n",
    )
    .unwrap_err();
    assert!(e.message.contains("overlaps"), "{}", e.message);
    let e = Calendar::from_yaml(
        "x",
        "timezone: UTC\nworking_hours:\n  monday: [\"08:00-12:00\"]\n",
    )
    .unwrap_err();
    assert_eq!(e.line, 3);
    assert!(e.message.contains("monday"), "{}", e.message);
    let e = Calendar::from_yaml(
        "x",
        "timezone: UTC\nworking_hours: {}\nholidays:\n  german_state: XY\n",
    )
    .unwrap_err();
    assert_eq!((e.line, e.column), (4, 17));
    let e = Calendar::from_yaml(
        "x",
        "timezone: UTC\nworking_hours: {}\nholidays:\n  dates: [2026-13-01]\n",
    )
    .unwrap_err();
    assert_eq!(e.line, 4);
}
