//! German public holidays (gesetzliche Feiertage) per federal state, computed for any year.
//!
//! Covers the holidays that apply to a whole state. Holidays that apply only in some
//! communes — Mariä Himmelfahrt in Catholic parts of Bavaria, Fronleichnam in parts of
//! Saxony and Thuringia, the Augsburger Friedensfest — are left out; add them to a
//! calendar's explicit `dates` where they apply.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, Duration, NaiveDate, Weekday};

/// A German federal state, by its ISO 3166-2 code without the `DE-` (a calendar's
/// `german_state: BY`); it decides which public holidays apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GermanState {
    /// Baden-Württemberg.
    BW,
    /// Bayern (Bavaria).
    BY,
    /// Berlin.
    BE,
    /// Brandenburg.
    BB,
    /// Bremen.
    HB,
    /// Hamburg.
    HH,
    /// Hessen.
    HE,
    /// Mecklenburg-Vorpommern.
    MV,
    /// Niedersachsen (Lower Saxony).
    NI,
    /// Nordrhein-Westfalen.
    NW,
    /// Rheinland-Pfalz.
    RP,
    /// Saarland.
    SL,
    /// Sachsen (Saxony).
    SN,
    /// Sachsen-Anhalt.
    ST,
    /// Schleswig-Holstein.
    SH,
    /// Thüringen (Thuringia).
    TH,
}

use GermanState::*;

const ALL: [GermanState; 16] = [
    BW, BY, BE, BB, HB, HH, HE, MV, NI, NW, RP, SL, SN, ST, SH, TH,
];

impl fmt::Display for GermanState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

impl FromStr for GermanState {
    type Err = String;

    /// `BY`, `by` or `DE-BY`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let code = s.trim().to_ascii_uppercase();
        let code = code.strip_prefix("DE-").unwrap_or(&code);
        ALL.iter()
            .find(|state| state.to_string() == code)
            .copied()
            .ok_or_else(|| {
                format!(
                    "unknown German state `{s}`; use one of {}",
                    ALL.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }
}

/// Easter Sunday (Gregorian calendar), by the anonymous Gregorian algorithm.
pub fn easter_sunday(year: i32) -> NaiveDate {
    let a = year % 19;
    let b = year / 100;
    let c = year % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    NaiveDate::from_ymd_opt(year, month as u32, day as u32).expect("Easter is a valid date")
}

/// The public holidays of `state` in `year`, sorted by date.
pub fn german_public_holidays(year: i32, state: GermanState) -> Vec<(NaiveDate, &'static str)> {
    let date = |m: u32, d: u32| NaiveDate::from_ymd_opt(year, m, d).expect("fixed holiday date");
    let easter = easter_sunday(year);
    let mut days = vec![
        (date(1, 1), "Neujahr"),
        (easter - Duration::days(2), "Karfreitag"),
        (easter + Duration::days(1), "Ostermontag"),
        (date(5, 1), "Tag der Arbeit"),
        (easter + Duration::days(39), "Christi Himmelfahrt"),
        (easter + Duration::days(50), "Pfingstmontag"),
        (date(12, 25), "1. Weihnachtstag"),
        (date(12, 26), "2. Weihnachtstag"),
    ];
    if year >= 1990 {
        days.push((date(10, 3), "Tag der Deutschen Einheit"));
    }
    if matches!(state, BW | BY | ST) {
        days.push((date(1, 6), "Heilige Drei Könige"));
    }
    if (state == BE && year >= 2019) || (state == MV && year >= 2023) {
        days.push((date(3, 8), "Internationaler Frauentag"));
    }
    if state == BE && (year == 2020 || year == 2025) {
        days.push((date(5, 8), "Tag der Befreiung"));
    }
    if state == BB {
        days.push((easter, "Ostersonntag"));
        days.push((easter + Duration::days(49), "Pfingstsonntag"));
    }
    if matches!(state, BW | BY | HE | NW | RP | SL) {
        days.push((easter + Duration::days(60), "Fronleichnam"));
    }
    if state == SL {
        days.push((date(8, 15), "Mariä Himmelfahrt"));
    }
    if state == TH && year >= 2019 {
        days.push((date(9, 20), "Weltkindertag"));
    }
    let reformation = match state {
        BB | MV | SN | ST | TH => true,
        HB | HH | NI | SH => year >= 2018,
        _ => false,
    } || year == 2017;
    if reformation {
        days.push((date(10, 31), "Reformationstag"));
    }
    if matches!(state, BW | BY | NW | RP | SL) {
        days.push((date(11, 1), "Allerheiligen"));
    }
    if state == SN {
        // The Wednesday before 23 November.
        let mut d = date(11, 22);
        while d.weekday() != Weekday::Wed {
            d -= Duration::days(1);
        }
        days.push((d, "Buß- und Bettag"));
    }
    days.sort();
    days
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn has(state: GermanState, date: NaiveDate, name: &str) -> bool {
        german_public_holidays(date.year(), state).contains(&(date, name))
    }

    #[test]
    fn easter_dates() {
        assert_eq!(easter_sunday(2024), d(2024, 3, 31));
        assert_eq!(easter_sunday(2025), d(2025, 4, 20));
        assert_eq!(easter_sunday(2026), d(2026, 4, 5));
        assert_eq!(easter_sunday(2038), d(2038, 4, 25));
    }

    #[test]
    fn state_specific_holidays() {
        assert!(has(BY, d(2026, 6, 4), "Fronleichnam"));
        assert!(
            !german_public_holidays(2026, BE)
                .iter()
                .any(|(_, n)| *n == "Fronleichnam")
        );
        assert!(has(SN, d(2026, 10, 31), "Reformationstag"));
        assert!(
            !german_public_holidays(2026, BY)
                .iter()
                .any(|(_, n)| *n == "Reformationstag")
        );
        assert!(has(SN, d(2026, 11, 18), "Buß- und Bettag"));
        assert!(has(SN, d(2025, 11, 19), "Buß- und Bettag"));
        assert!(
            !german_public_holidays(2026, BY)
                .iter()
                .any(|(_, n)| *n == "Buß- und Bettag")
        );
        assert!(has(BE, d(2026, 3, 8), "Internationaler Frauentag"));
        assert!(!has(BE, d(2018, 3, 8), "Internationaler Frauentag"));
        assert!(has(TH, d(2026, 9, 20), "Weltkindertag"));
        assert!(has(NI, d(2026, 10, 31), "Reformationstag"));
        assert!(!has(NI, d(2016, 10, 31), "Reformationstag"));
        assert!(
            has(BW, d(2017, 10, 31), "Reformationstag"),
            "nationwide in 2017"
        );
        assert!(has(BB, d(2026, 4, 5), "Ostersonntag"));
        assert!(has(BY, d(2026, 1, 6), "Heilige Drei Könige"));
        assert!(has(HE, d(2026, 5, 14), "Christi Himmelfahrt"));
        assert!(has(HE, d(2026, 5, 25), "Pfingstmontag"));
        assert_eq!(german_public_holidays(2026, BE).len(), 10);
        assert_eq!(german_public_holidays(2026, BY).len(), 12);
    }

    #[test]
    fn parses_state_codes() {
        assert_eq!("by".parse::<GermanState>().unwrap(), BY);
        assert_eq!("DE-NW".parse::<GermanState>().unwrap(), NW);
        assert!("XX".parse::<GermanState>().unwrap_err().contains("BW"));
    }
}
