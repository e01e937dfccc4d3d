//! Cron schedules in a time zone.
//!
//! Expressions have 5 fields (`minute hour day-of-month month day-of-week`) or 6 with
//! seconds first; day-of-week counts like crontab (0 and 7 are Sunday, `1-5` is Monday to
//! Friday) and takes names (`MON-FRI`). Parsing and matching use the `croner` crate on
//! local wall-clock times; turning those into instants follows explicit rules:
//!
//! - a local time that does not exist (the spring-forward gap, e.g. 02:30 in Berlin on the
//!   last Sunday of March) fires once, at the first instant after the gap (03:00);
//! - a local time that exists twice (the autumn fall-back hour) fires once, at its first
//!   occurrence;
//! - instants are strictly increasing: several local times that map to the same instant
//!   (02:00 and 02:30 in the gap, plus 03:00) fire once.
//!
//! Each [`Firing`] carries its scheduled local time, the key that makes firing idempotent.

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::CronParser;

use crate::resolve_local;

/// Why a cron expression cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cron expression `{expression}`: {problem}")]
pub struct ScheduleError {
    /// The expression as it was given.
    pub expression: String,
    /// What is wrong with it: the number of fields, or the parser's complaint.
    pub problem: String,
}

/// One firing: when, and the local wall-clock time it was scheduled for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firing {
    /// The instant it fires.
    pub at: DateTime<Utc>,
    /// The local wall-clock time it was scheduled for, in the schedule's time zone: the
    /// same for every process, so it keys the firing to make it happen once.
    pub local: NaiveDateTime,
}

/// A cron expression (5 fields, or 6 with seconds first) evaluated in a time zone, with
/// explicit rules for the skipped and the repeated hour of daylight-saving switches.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    expression: String,
    cron: Cron,
    timezone: Tz,
}

impl CronSchedule {
    /// Parses `expression` for the time zone `timezone`; the error names the problem.
    pub fn parse(expression: &str, timezone: Tz) -> Result<CronSchedule, ScheduleError> {
        let fields = expression.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(ScheduleError {
                expression: expression.to_string(),
                problem: format!(
                    "it has {fields} fields; use 5 (minute hour day month weekday) or 6 (with seconds first)"
                ),
            });
        }
        let cron = CronParser::new()
            .parse(expression)
            .map_err(|e| ScheduleError {
                expression: expression.to_string(),
                problem: e.to_string(),
            })?;
        Ok(CronSchedule {
            expression: expression.to_string(),
            cron,
            timezone,
        })
    }

    /// The expression as it was written, for listings and messages.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The time zone its fields are read in.
    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    /// The first firing strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<Firing> {
        // Start a few hours back in local time: a local time before `after`'s local time
        // can still fire after it (the spring gap, the repeated autumn hour).
        let mut candidate = after.with_timezone(&self.timezone).naive_local() - Duration::hours(3);
        for _ in 0..100_000 {
            candidate = self.cron.find_next_occurrence(&candidate, false).ok()?;
            let at = resolve_local(self.timezone, candidate);
            if at > after {
                return Some(Firing {
                    at,
                    local: candidate,
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Europe::Berlin;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn firings(schedule: &CronSchedule, from: &str, to: &str) -> Vec<(String, String)> {
        let (mut t, end) = (utc(from), utc(to));
        let mut out = Vec::new();
        while let Some(f) = schedule.next_after(t) {
            if f.at > end {
                break;
            }
            out.push((f.at.to_rfc3339(), f.local.to_string()));
            t = f.at;
        }
        out
    }

    #[test]
    fn daily_0230_fires_once_on_both_dst_days() {
        let s = CronSchedule::parse("30 2 * * *", Berlin).unwrap();
        // 2026-03-29: 02:30 does not exist → 03:00 CEST = 01:00 UTC.
        assert_eq!(
            firings(&s, "2026-03-28T12:00:00Z", "2026-03-30T12:00:00Z"),
            [
                (
                    "2026-03-29T01:00:00+00:00".into(),
                    "2026-03-29 02:30:00".into()
                ),
                (
                    "2026-03-30T00:30:00+00:00".into(),
                    "2026-03-30 02:30:00".into()
                ),
            ]
        );
        // 2026-10-25: 02:30 happens twice → the first one (CEST, 00:30 UTC).
        assert_eq!(
            firings(&s, "2026-10-24T12:00:00Z", "2026-10-26T12:00:00Z"),
            [
                (
                    "2026-10-25T00:30:00+00:00".into(),
                    "2026-10-25 02:30:00".into()
                ),
                (
                    "2026-10-26T01:30:00+00:00".into(),
                    "2026-10-26 02:30:00".into()
                ),
            ]
        );
    }

    #[test]
    fn hourly_never_fires_twice_for_one_instant() {
        let s = CronSchedule::parse("0,30 * * * *", Berlin).unwrap();
        let march = firings(&s, "2026-03-28T23:00:00Z", "2026-03-29T03:00:00Z");
        let instants: Vec<&String> = march.iter().map(|(a, _)| a).collect();
        let mut unique = instants.clone();
        unique.dedup();
        assert_eq!(instants, unique);
        assert!(march.iter().any(|(a, _)| a == "2026-03-29T01:00:00+00:00"));
    }

    #[test]
    fn weekday_ranges_mean_monday_to_friday() {
        for expr in ["0 8 * * 1-5", "0 8 * * MON-FRI", "0 0 8 * * MON-FRI"] {
            let s = CronSchedule::parse(expr, Berlin).unwrap();
            // From Saturday 2026-06-06.
            let days: Vec<String> = firings(&s, "2026-06-06T00:00:00Z", "2026-06-13T00:00:00Z")
                .into_iter()
                .map(|(_, local)| local[..10].to_string())
                .collect();
            assert_eq!(
                days,
                [
                    "2026-06-08",
                    "2026-06-09",
                    "2026-06-10",
                    "2026-06-11",
                    "2026-06-12"
                ],
                "{expr}"
            );
        }
        let sunday = CronSchedule::parse("0 8 * * 0", Berlin).unwrap();
        let seven = CronSchedule::parse("0 8 * * 7", Berlin).unwrap();
        let t = utc("2026-06-06T00:00:00Z");
        assert_eq!(sunday.next_after(t), seven.next_after(t));
        assert_eq!(
            sunday.next_after(t).unwrap().local.to_string(),
            "2026-06-07 08:00:00"
        );
    }

    #[test]
    fn invalid_expressions_are_readable_errors() {
        for expr in ["61 8 * * *", "* * *", "0 8 * * FUNDAY", "hello"] {
            let e = CronSchedule::parse(expr, Berlin).unwrap_err();
            assert!(e.to_string().contains(expr), "{e}");
        }
    }
}
