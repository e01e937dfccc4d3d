//! Calendars for the service desk's tests.

use std::sync::Arc;

use kontor_time::Calendar;

/// "Service DE": Mon–Fri 08:00–17:00 Berlin, Berlin's public holidays and Christmas Eve.
pub fn service_de() -> Arc<Calendar> {
    Arc::new(
        Calendar::from_yaml(
            "service-de",
            r#"
timezone: Europe/Berlin
working_hours:
  mon: ["08:00-17:00"]
  tue: ["08:00-17:00"]
  wed: ["08:00-17:00"]
  thu: ["08:00-17:00"]
  fri: ["08:00-17:00"]
holidays:
  german_state: BE
  dates:
    - { date: 2026-12-24, name: Heiligabend }
"#,
        )
        .unwrap(),
    )
}

/// Every hour of every day.
pub fn hotline() -> Arc<Calendar> {
    let day = r#"["00:00-24:00"]"#;
    Arc::new(
        Calendar::from_yaml(
            "hotline-24-7",
            &format!(
                "timezone: Europe/Berlin\nworking_hours:\n  mon: {day}\n  tue: {day}\n  wed: {day}\n  thu: {day}\n  fri: {day}\n  sat: {day}\n  sun: {day}\n"
            ),
        )
        .unwrap(),
    )
}
