//! Business calendars: when people work, in which time zone, and which days are holidays.
//!
//! ```yaml
//! timezone: Europe/Berlin
//! working_hours:
//!   mon: ["08:00-12:00", "13:00-17:00"]
//!   fri: ["08:00-15:00"]          # days left out are not working days
//! holidays:
//!   german_state: BY              # German public holidays of Bavaria, any year
//!   dates:
//!     - 2026-12-24
//!     - { date: 2026-12-31, name: Silvester }
//! ```
//!
//! Working hours are local wall-clock times. On the day clocks spring forward, a period
//! `01:00-04:00` in Berlin lasts two real hours; on the day they fall back, three and a
//! half... as many as actually pass. Local times in the spring gap mean the first instant
//! after it; ambiguous autumn times mean the earlier instant.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, Utc};
use chrono_tz::Tz;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::holidays::{GermanState, german_public_holidays};
use crate::resolve_local;

/// Weekday keys of `working_hours`, Monday first.
pub const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A problem in a calendar file, or a computation a calendar cannot do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CalendarError {
    /// 1-based; 0 when not about a file position.
    pub line: u32,
    /// 1-based, like `line`; 0 when not about a file position.
    pub column: u32,
    /// What is wrong, in one line.
    pub message: String,
    /// What to write instead, when there is an obvious fix.
    pub hint: Option<String>,
}

impl CalendarError {
    fn at<T>(spanned: &Spanned<T>, message: impl Into<String>, hint: impl Into<String>) -> Self {
        CalendarError {
            line: spanned.referenced.line() as u32,
            column: spanned.referenced.column() as u32,
            message: message.into(),
            hint: Some(hint.into()),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CalendarFile {
    timezone: Spanned<String>,
    working_hours: WorkingHoursFile,
    #[serde(default)]
    holidays: Option<HolidaysFile>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WorkingHoursFile {
    #[serde(default)]
    mon: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    tue: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    wed: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    thu: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    fri: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    sat: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    sun: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HolidaysFile {
    #[serde(default)]
    german_state: Option<Spanned<String>>,
    #[serde(default)]
    dates: Vec<Spanned<serde_json::Value>>,
}

/// Minutes since local midnight, `[start, end)`, end at most 24:00.
type Period = (u32, u32);

/// A business calendar: a time zone, working hours per weekday, and holidays (a German
/// state's public holidays plus explicit dates). Answers "is this working time?" and
/// does business-time arithmetic for SLAs and business-hours waits.
#[derive(Debug, Clone)]
pub struct Calendar {
    name: String,
    timezone: Tz,
    /// Monday first.
    hours: [Vec<Period>; 7],
    state: Option<GermanState>,
    dates: BTreeMap<NaiveDate, String>,
}

impl Calendar {
    /// Parses a calendar file; errors point at the offending value.
    pub fn from_yaml(name: &str, source: &str) -> Result<Calendar, CalendarError> {
        let file: CalendarFile = serde_saphyr::from_str_with_options(source, crate::yaml_options()).map_err(|e| {
            let (line, column) = e
                .location()
                .map(|l| (l.line() as u32, l.column() as u32))
                .unwrap_or((0, 0));
            CalendarError {
                line,
                column,
                message: e.to_string().lines().next().unwrap_or("invalid YAML").trim().to_string(),
                hint: Some(
                    "a calendar has `timezone`, `working_hours` (mon..sun) and optional `holidays`".into(),
                ),
            }
        })?;
        let timezone: Tz = file.timezone.value.parse().map_err(|_| {
            CalendarError::at(
                &file.timezone,
                format!("unknown time zone `{}`", file.timezone.value),
                "use an IANA name such as `Europe/Berlin`",
            )
        })?;
        let w = &file.working_hours;
        let days = [&w.mon, &w.tue, &w.wed, &w.thu, &w.fri, &w.sat, &w.sun];
        let mut hours: [Vec<Period>; 7] = Default::default();
        for (i, day) in days.iter().enumerate() {
            let mut periods: Vec<(Period, &Spanned<String>)> = Vec::new();
            for text in day.iter().flat_map(|v| v.iter()) {
                periods.push((parse_period(text)?, text));
            }
            periods.sort_by_key(|(p, _)| *p);
            for pair in periods.windows(2) {
                if pair[1].0.0 < pair[0].0.1 {
                    return Err(CalendarError::at(
                        pair[1].1,
                        format!(
                            "`{}` overlaps `{}` on {}",
                            pair[1].1.value, pair[0].1.value, WEEKDAYS[i]
                        ),
                        "working periods of one day must not overlap",
                    ));
                }
            }
            hours[i] = periods.into_iter().map(|(p, _)| p).collect();
        }
        let mut state = None;
        let mut dates = BTreeMap::new();
        if let Some(holidays) = &file.holidays {
            if let Some(code) = &holidays.german_state {
                state = Some(code.value.parse::<GermanState>().map_err(|message| {
                    CalendarError::at(code, message, "federal state codes: BW, BY, BE, BB, HB, HH, HE, MV, NI, NW, RP, SL, SN, ST, SH, TH")
                })?);
            }
            for entry in &holidays.dates {
                let (date_text, name) = match &entry.value {
                    serde_json::Value::String(s) => (s.clone(), "Feiertag".to_string()),
                    serde_json::Value::Object(map) => (
                        map.get("date")
                            .and_then(|d| d.as_str())
                            .unwrap_or_default()
                            .to_string(),
                        map.get("name")
                            .and_then(|n| n.as_str())
                            .unwrap_or("Feiertag")
                            .to_string(),
                    ),
                    _ => (String::new(), String::new()),
                };
                let date = NaiveDate::parse_from_str(&date_text, "%Y-%m-%d").map_err(|_| {
                    CalendarError::at(
                        entry,
                        format!(
                            "`{}` is not a date",
                            if date_text.is_empty() {
                                entry.value.to_string()
                            } else {
                                date_text.clone()
                            }
                        ),
                        "write `2026-12-24` or `{ date: 2026-12-24, name: Heiligabend }`",
                    )
                })?;
                dates.insert(date, name);
            }
        }
        Ok(Calendar {
            name: name.to_string(),
            timezone,
            hours,
            state,
            dates,
        })
    }

    /// The name workflows refer to it by (its file name without `.yaml`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The time zone its working hours and holidays are in.
    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    /// The holiday on `date` (local), if any: explicit dates first, then state holidays.
    pub fn holiday_name(&self, date: NaiveDate) -> Option<String> {
        if let Some(name) = self.dates.get(&date) {
            return Some(name.clone());
        }
        let state = self.state?;
        german_public_holidays(date.year(), state)
            .into_iter()
            .find(|(d, _)| *d == date)
            .map(|(_, n)| n.to_string())
    }

    /// Whether the local `date` has working hours and is no holiday.
    pub fn is_working_day(&self, date: NaiveDate) -> bool {
        !self.hours[date.weekday().num_days_from_monday() as usize].is_empty()
            && self.holiday_name(date).is_none()
    }

    /// The working periods of a local date as UTC instants (empty on holidays).
    fn periods(
        &self,
        date: NaiveDate,
        holidays: &mut HolidayCache,
    ) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        let periods = &self.hours[date.weekday().num_days_from_monday() as usize];
        if periods.is_empty() || holidays.is_holiday(self, date) {
            return Vec::new();
        }
        periods
            .iter()
            .filter_map(|&(start, end)| {
                let s = resolve_local(self.timezone, local_at(date, start));
                let e = resolve_local(self.timezone, local_at(date, end));
                (s < e).then_some((s, e))
            })
            .collect()
    }

    fn local_date(&self, at: DateTime<Utc>) -> NaiveDate {
        at.with_timezone(&self.timezone).date_naive()
    }

    fn has_working_hours(&self) -> bool {
        self.hours.iter().any(|d| !d.is_empty())
    }

    /// Whether the instant `at` falls in a working period (start included, end not).
    pub fn is_working_time(&self, at: DateTime<Utc>) -> bool {
        let mut cache = HolidayCache::default();
        let date = self.local_date(at);
        // A period ending at 24:00 belongs to its own day, so the day before is checked too.
        [date.pred_opt(), Some(date)]
            .into_iter()
            .flatten()
            .flat_map(|d| self.periods(d, &mut cache))
            .any(|(s, e)| s <= at && at < e)
    }

    /// The first working instant at or after `at`.
    pub fn next_working_time(&self, at: DateTime<Utc>) -> Result<DateTime<Utc>, CalendarError> {
        self.walk(at, |from, _, _| Some(from))
    }

    /// `start` plus `duration` of working time. A start outside working hours begins at
    /// the next working period; a result exactly at the end of a period stays there.
    /// Fails only for a calendar without working hours (or with none in 50 years).
    pub fn add_business_duration(
        &self,
        start: DateTime<Utc>,
        duration: Duration,
    ) -> Result<DateTime<Utc>, CalendarError> {
        if duration <= Duration::zero() {
            return Ok(start);
        }
        let mut remaining = duration;
        self.walk(start, |from, _, end| {
            let available = end - from;
            if remaining <= available {
                Some(from + remaining)
            } else {
                remaining -= available;
                None
            }
        })
    }

    /// Visits the working periods from `start` on, clipped to start no earlier than it,
    /// until `visit(from, period_start, period_end)` returns an answer.
    fn walk(
        &self,
        start: DateTime<Utc>,
        mut visit: impl FnMut(DateTime<Utc>, DateTime<Utc>, DateTime<Utc>) -> Option<DateTime<Utc>>,
    ) -> Result<DateTime<Utc>, CalendarError> {
        if !self.has_working_hours() {
            return Err(self.no_working_time());
        }
        let mut cache = HolidayCache::default();
        let mut date = self
            .local_date(start)
            .pred_opt()
            .unwrap_or(self.local_date(start));
        for _ in 0..(366 * 50) {
            for (s, e) in self.periods(date, &mut cache) {
                if e <= start {
                    continue;
                }
                let from = s.max(start);
                if let Some(answer) = visit(from, s, e) {
                    return Ok(answer);
                }
            }
            date = date.succ_opt().ok_or_else(|| self.no_working_time())?;
        }
        Err(self.no_working_time())
    }

    fn no_working_time(&self) -> CalendarError {
        CalendarError {
            line: 0,
            column: 0,
            message: format!("calendar `{}` has no working time to count", self.name),
            hint: Some("give it working hours on at least one weekday".into()),
        }
    }

    /// Working time between two instants (zero if `to <= from`).
    pub fn business_duration_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
        if to <= from || !self.has_working_hours() {
            return Duration::zero();
        }
        let mut total = Duration::zero();
        let mut cache = HolidayCache::default();
        let mut date = self
            .local_date(from)
            .pred_opt()
            .unwrap_or(self.local_date(from));
        let last = self.local_date(to);
        while date <= last {
            for (s, e) in self.periods(date, &mut cache) {
                let (s, e) = (s.max(from), e.min(to));
                if s < e {
                    total += e - s;
                }
            }
            match date.succ_opt() {
                Some(d) => date = d,
                None => break,
            }
        }
        total
    }
}

/// State holidays per year, computed once per walk.
#[derive(Default)]
struct HolidayCache {
    years: BTreeMap<i32, BTreeSet<NaiveDate>>,
}

impl HolidayCache {
    fn is_holiday(&mut self, calendar: &Calendar, date: NaiveDate) -> bool {
        if calendar.dates.contains_key(&date) {
            return true;
        }
        let Some(state) = calendar.state else {
            return false;
        };
        self.years
            .entry(date.year())
            .or_insert_with(|| {
                german_public_holidays(date.year(), state)
                    .into_iter()
                    .map(|(d, _)| d)
                    .collect()
            })
            .contains(&date)
    }
}

fn local_at(date: NaiveDate, minutes: u32) -> chrono::NaiveDateTime {
    if minutes >= 24 * 60 {
        date.succ_opt().unwrap_or(date).and_time(NaiveTime::MIN)
    } else {
        date.and_time(
            NaiveTime::from_hms_opt(minutes / 60, minutes % 60, 0).unwrap_or(NaiveTime::MIN),
        )
    }
}

fn parse_period(text: &Spanned<String>) -> Result<Period, CalendarError> {
    let bad = |why: &str| {
        CalendarError::at(
            text,
            format!("`{}` is not a working period: {why}", text.value),
            "write periods as `HH:MM-HH:MM`, e.g. `08:00-12:00`; `24:00` ends at midnight",
        )
    };
    let (start, end) = text
        .value
        .split_once('-')
        .ok_or_else(|| bad("missing `-`"))?;
    let minutes = |t: &str| -> Option<u32> {
        let (h, m) = t.trim().split_once(':')?;
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
    };
    let start = minutes(start).ok_or_else(|| bad("the start is not a time"))?;
    let end = minutes(end).ok_or_else(|| bad("the end is not a time"))?;
    if end <= start {
        return Err(bad("it ends before it starts"));
    }
    Ok((start, end))
}

#[cfg(test)]
mod tests;
