//! Durations as people write them: `30s`, `15m`, `8h`, `2d`, `1w`, `1d 4h`, `1h30m`.

use chrono::Duration;

/// Why a text is not a duration; the message says how to write one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration `{input}`: {problem}; use a number and a unit (s, m, h, d, w), e.g. `8h` or `1d 4h`"
)]
pub struct DurationError {
    /// The text as it was given.
    pub input: String,
    /// What is wrong with it: empty, a number without a unit, an unknown unit, too long.
    pub problem: String,
}

/// Parses `1d 4h`, `90m`, `1h30m`, `2w`. Units: `ms`, `s`, `m`, `h`, `d` (24 h), `w`.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let error = |problem: String| DurationError {
        input: text.to_string(),
        problem,
    };
    let mut total = Duration::zero();
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(error("it is empty".into()));
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(error(format!("expected a number at `{rest}`")));
        }
        let number: i64 = rest[..digits]
            .parse()
            .map_err(|_| error(format!("`{}` is too large", &rest[..digits])))?;
        rest = rest[digits..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let part = match unit {
            "ms" => Duration::try_milliseconds(number),
            "s" => Duration::try_seconds(number),
            "m" | "min" => Duration::try_minutes(number),
            "h" => Duration::try_hours(number),
            "d" => Duration::try_days(number),
            "w" => Duration::try_weeks(number),
            "" => return Err(error(format!("`{number}` has no unit"))),
            other => return Err(error(format!("unknown unit `{other}`"))),
        }
        .ok_or_else(|| error("it is too long".into()))?;
        total = total
            .checked_add(&part)
            .ok_or_else(|| error("it is too long".into()))?;
        rest = rest[unit_len..].trim_start();
    }
    Ok(total)
}

/// Parses a duration such as `2s`, `500ms` or `1h` that must be longer than zero, for
/// settings (timeouts, deadlines) where zero would mean "never".
pub fn parse_positive_duration(text: &str) -> Result<std::time::Duration, String> {
    parse_duration(text)
        .ok()
        .and_then(|d| d.to_std().ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("`{text}` is not a positive duration like `2s` or `500ms`"))
}

/// Formats a duration compactly: `1d 4h`, `90s` → `1m 30s`, zero → `0s`.
pub fn format_duration(d: Duration) -> String {
    let mut seconds = d.num_seconds();
    if seconds == 0 {
        return "0s".into();
    }
    let mut out = Vec::new();
    if seconds < 0 {
        out.push("-".to_string());
        seconds = -seconds;
    }
    for (unit, size) in [
        ("w", 604_800),
        ("d", 86_400),
        ("h", 3_600),
        ("m", 60),
        ("s", 1),
    ] {
        if seconds >= size {
            out.push(format!("{}{unit}", seconds / size));
            seconds %= size;
        }
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_combinations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::seconds(30));
        assert_eq!(parse_duration("15m").unwrap(), Duration::minutes(15));
        assert_eq!(parse_duration("1d 4h").unwrap(), Duration::hours(28));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::minutes(90));
        assert_eq!(parse_duration("2w").unwrap(), Duration::days(14));
        assert_eq!(
            parse_duration("250ms").unwrap(),
            Duration::milliseconds(250)
        );
    }

    #[test]
    fn rejects_bad_input_with_the_reason() {
        let e = parse_duration("3 days").unwrap_err();
        assert!(e.to_string().contains("unknown unit `days`"), "{e}");
        assert!(parse_duration("").is_err());
        assert!(
            parse_duration("h")
                .unwrap_err()
                .to_string()
                .contains("expected a number")
        );
        assert!(
            parse_duration("10")
                .unwrap_err()
                .to_string()
                .contains("no unit")
        );
    }

    #[test]
    fn formats_compactly() {
        assert_eq!(format_duration(Duration::hours(28)), "1d 4h");
        assert_eq!(format_duration(Duration::seconds(90)), "1m 30s");
    }
}
