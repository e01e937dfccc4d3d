//! Postal codes as territories use them: strings (leading zeros matter — `01067` is
//! Dresden), scoped by country, compared as ranges of equally long digit strings.
//!
//! A rule writes a prefix (`"8"`: every code starting with 8) or a range (`"20000-29999"`,
//! or shorter, `"20-29"`: every code whose first two digits are 20 to 29). Both become a
//! range of full-length codes, `[from, to]`, so overlaps and shadowing can be computed.
//! Only countries whose codes are a fixed number of digits (most of Europe) have ranges;
//! elsewhere a rule names the whole country or uses a `when:` condition.

/// Digits in the postal codes of the countries ranges are known for, by ISO 3166 code.
const DIGITS: &[(&str, usize)] = &[
    ("AT", 4),
    ("BE", 4),
    ("BG", 4),
    ("CH", 4),
    ("CZ", 5),
    ("DE", 5),
    ("DK", 4),
    ("EE", 5),
    ("ES", 5),
    ("FI", 5),
    ("FR", 5),
    ("GR", 5),
    ("HR", 5),
    ("HU", 4),
    ("IT", 5),
    ("LI", 4),
    ("LT", 5),
    ("LU", 4),
    ("NL", 4),
    ("NO", 4),
    ("PL", 5),
    ("RO", 6),
    ("SE", 5),
    ("SI", 4),
    ("SK", 5),
    ("US", 5),
];

/// The number of digits of `country`'s postal codes, when ranges are known for it.
pub fn digits(country: &str) -> Option<usize> {
    DIGITS.iter().find(|(c, _)| *c == country).map(|(_, n)| *n)
}

/// The countries postal-code ranges are known for, for hints.
pub fn known_countries() -> String {
    DIGITS
        .iter()
        .map(|(c, _)| *c)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The digits a lead's postal code is compared by: spaces and dashes dropped (`123 45`,
/// `00-950`), and for the Netherlands the letters after the four digits. `None` when the
/// code does not have the country's number of digits.
pub fn normalize(country: &str, code: &str) -> Option<String> {
    let n = digits(country)?;
    let digits: String = code
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .take_while(|c| c.is_ascii_digit())
        .collect();
    (digits.len() == n).then_some(digits)
}

/// Whether `code` (as the lead wrote it) is a valid postal code for `country`: the known
/// digit formats exactly, anything printable up to 16 characters elsewhere.
pub fn is_valid(country: &str, code: &str) -> bool {
    let code = code.trim();
    if code.is_empty() || code.chars().count() > 16 || code.chars().any(char::is_control) {
        return false;
    }
    match digits(country) {
        None => true,
        Some(_) if country == "NL" => {
            let compact: String = code.chars().filter(|c| !c.is_whitespace()).collect();
            normalize(country, code).is_some()
                && compact[4..].chars().all(|c| c.is_ascii_alphabetic())
                && compact.len() <= 6
        }
        Some(n) => {
            let compact: String = code
                .chars()
                .filter(|c| !c.is_whitespace() && *c != '-')
                .collect();
            compact.len() == n && compact.chars().all(|c| c.is_ascii_digit())
        }
    }
}

/// Full-length codes `from..=to` (equally long digit strings compare like numbers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRange {
    pub from: String,
    pub to: String,
    /// As written, for explanations.
    pub written: String,
}

impl CodeRange {
    /// Parses a prefix or range for a country with `digits`-digit codes; the error says
    /// what is wrong.
    pub fn parse(written: &str, digits: usize) -> Result<CodeRange, String> {
        let written_trimmed = written.trim();
        let (from, to) = match written_trimmed.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (written_trimmed, written_trimmed),
        };
        for part in [from, to] {
            if part.is_empty() || !part.chars().all(|c| c.is_ascii_digit()) {
                return Err(format!(
                    "`{written}` is not a postal-code prefix or range (digits, or two with a `-` between)"
                ));
            }
            if part.len() > digits {
                return Err(format!(
                    "`{part}` has {} digits; codes here have {digits}",
                    part.len()
                ));
            }
        }
        if from.len() != to.len() {
            return Err(format!(
                "`{from}` and `{to}` differ in length; write both ends with as many digits"
            ));
        }
        if from > to {
            return Err(format!("the range `{written}` runs backwards"));
        }
        Ok(CodeRange {
            from: format!("{from:0<digits$}"),
            to: format!("{to:9<digits$}"),
            written: written_trimmed.to_string(),
        })
    }

    pub fn contains(&self, code: &str) -> bool {
        self.from.as_str() <= code && code <= self.to.as_str()
    }

    /// How many codes the range spans.
    pub fn size(&self) -> u64 {
        let from: u64 = self.from.parse().unwrap_or(0);
        let to: u64 = self.to.parse().unwrap_or(0);
        to.saturating_sub(from) + 1
    }

    pub fn overlaps(&self, other: &CodeRange) -> bool {
        self.from <= other.to && other.from <= self.to
    }
}

/// Whether the union of `ranges` covers every code of `range`.
pub fn covers(ranges: &[CodeRange], range: &CodeRange) -> bool {
    let mut sorted: Vec<&CodeRange> = ranges.iter().collect();
    sorted.sort_by(|a, b| a.from.cmp(&b.from));
    let mut reached: u64 = range.from.parse().unwrap_or(0);
    let end: u64 = range.to.parse().unwrap_or(0);
    for r in sorted {
        let from: u64 = r.from.parse().unwrap_or(0);
        let to: u64 = r.to.parse().unwrap_or(0);
        if from > reached {
            continue;
        }
        if to >= reached {
            if to >= end {
                return true;
            }
            reached = to + 1;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_ranges_become_full_length() {
        let r = CodeRange::parse("8", 5).unwrap();
        assert_eq!((r.from.as_str(), r.to.as_str()), ("80000", "89999"));
        let r = CodeRange::parse("20-29", 5).unwrap();
        assert_eq!((r.from.as_str(), r.to.as_str()), ("20000", "29999"));
        let r = CodeRange::parse("01067", 5).unwrap();
        assert_eq!((r.from.as_str(), r.to.as_str()), ("01067", "01067"));
        assert!(r.contains("01067") && !r.contains("01068"));
        assert_eq!(CodeRange::parse("1", 4).unwrap().size(), 1000);
    }

    #[test]
    fn bad_ranges_say_why() {
        assert!(
            CodeRange::parse("2x", 5)
                .unwrap_err()
                .contains("not a postal-code")
        );
        assert!(
            CodeRange::parse("123456", 5)
                .unwrap_err()
                .contains("6 digits")
        );
        assert!(
            CodeRange::parse("29-20", 5)
                .unwrap_err()
                .contains("backwards")
        );
        assert!(
            CodeRange::parse("2-299", 5)
                .unwrap_err()
                .contains("differ in length")
        );
    }

    #[test]
    fn codes_are_normalized_per_country() {
        assert_eq!(normalize("DE", "01067").as_deref(), Some("01067"));
        assert_eq!(normalize("AT", "1010").as_deref(), Some("1010"));
        assert_eq!(normalize("DE", "1010"), None);
        assert_eq!(normalize("SE", "123 45").as_deref(), Some("12345"));
        assert_eq!(normalize("PL", "00-950").as_deref(), Some("00950"));
        assert_eq!(normalize("NL", "1012 AB").as_deref(), Some("1012"));
        assert!(is_valid("NL", "1012 AB") && !is_valid("NL", "1012 A1"));
        assert!(is_valid("CH", "8001") && !is_valid("CH", "80010"));
        assert!(is_valid("GB", "SW1A 1AA"));
        assert!(!is_valid("DE", "8000") && !is_valid("DE", ""));
    }

    #[test]
    fn coverage_joins_adjacent_ranges() {
        let parts = [
            CodeRange::parse("20-24", 5).unwrap(),
            CodeRange::parse("25-29", 5).unwrap(),
        ];
        assert!(covers(&parts, &CodeRange::parse("2", 5).unwrap()));
        assert!(!covers(&parts, &CodeRange::parse("19-21", 5).unwrap()));
        assert!(!covers(&parts[..1], &CodeRange::parse("2", 5).unwrap()));
    }
}
