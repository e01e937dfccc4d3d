//! Time for Kontor's workflows: business calendars with German public holidays, durations
//! and cron schedules, all correct across weekends, holidays and daylight-saving switches.
//!
//! # Layout
//!
//! | module | concern |
//! |---|---|
//! | [`duration`] | `30s`, `8h`, `1d 4h` ↔ [`chrono::Duration`] |
//! | [`holidays`] | German public holidays per federal state, any year |
//! | [`calendar`] | calendar files: time zone, working hours, holidays; business-time arithmetic |
//! | [`schedule`] | cron expressions in a time zone, with explicit DST rules |
//!
//! All instants are `DateTime<Utc>`; local wall-clock times only exist inside the
//! computations, resolved through `chrono-tz`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod calendar;
pub mod duration;
pub mod holidays;
pub mod schedule;

pub use calendar::{Calendar, CalendarError};
pub use duration::{DurationError, format_duration, parse_duration, parse_positive_duration};
pub use holidays::{GermanState, german_public_holidays};
pub use schedule::{CronSchedule, Firing, ScheduleError};

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Utc};

/// The YAML dialect of every Kontor file (workflows, calendars): YAML 1.2 booleans only
/// (`n`, `no`, `off` stay strings), numbers with leading zeros stay strings (postal codes
/// like `01067`), duplicate keys are errors, and error messages carry no snippet (callers
/// print `file:line:column` themselves).
pub fn yaml_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    options.leading_zero_numbers_as_strings = true;
    options.with_snippet = false;
    options
}
use chrono_tz::Tz;

/// The instant of a local wall-clock time: the earlier one when it is ambiguous (the
/// repeated autumn hour), the first instant after the gap when it does not exist (the
/// skipped spring hour).
pub fn resolve_local(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.to_utc(),
        LocalResult::Ambiguous(early, _) => early.to_utc(),
        LocalResult::None => {
            // Gaps are at most a few hours; walk forward minute by minute to their end.
            let mut probe = local;
            for _ in 0..(24 * 60) {
                probe += chrono::Duration::minutes(1);
                // The first valid local minute after the gap is the transition itself.
                if let Some(t) = tz.from_local_datetime(&probe).earliest() {
                    return t.to_utc();
                }
            }
            Utc.from_utc_datetime(&local)
        }
    }
}
