//! Lead files, as marketing exports them: CSV with a header row (`,` or `;` between
//! fields — German spreadsheets write `;` —, UTF-8, a byte-order mark allowed) or JSON
//! lines (one lead object per line). Every row becomes a checked [`NewLead`] or an error
//! that names its line and field; `kontor leads import` and `kontor simulate` read them.
//!
//! CSV columns are the lead's fields (`external_id`, `company`, `country`, `postal_code`,
//! `industry`, `employees`, `products`, `first_name`, `last_name`, `email`, `phone`,
//! `title`, `vat_id`, `source`, `quote_requested`, `brochure_downloaded`,
//! `event_visited`, `consent_email`, `consent_phone`); unknown columns are refused.
//! `products` holds several separated by `|` (or by whichever of `,` and `;` is not the
//! delimiter); yes/no columns take `true`/`false`, `1`/`0`, `ja`/`nein`, `yes`/`no`,
//! `x` or nothing; `employees` may have thousands separators (`5.000`).

use std::io::Read;

use super::lead::{Consent, FieldError, NewLead};

/// A row that is not a lead, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {field}: {message}")]
pub struct RowError {
    /// 1-based line of the file (the header is line 1 of a CSV file).
    pub line: u64,
    pub field: String,
    pub message: String,
}

/// One lead of the file, with its line.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub line: u64,
    pub lead: NewLead,
}

/// The columns a CSV file may have.
pub const COLUMNS: &[&str] = &[
    "external_id",
    "company",
    "country",
    "postal_code",
    "industry",
    "employees",
    "products",
    "first_name",
    "last_name",
    "email",
    "phone",
    "title",
    "vat_id",
    "source",
    "quote_requested",
    "brochure_downloaded",
    "event_visited",
    "consent_email",
    "consent_phone",
];

/// Reads every row of `input`; `json_lines` picks the format (else CSV). A file that
/// cannot be read at all is one error at line 0.
pub fn read(input: impl Read, json_lines: bool) -> Vec<Result<Row, RowError>> {
    if json_lines {
        read_json_lines(input)
    } else {
        read_csv(input)
    }
}

fn file_error(message: impl Into<String>) -> Vec<Result<Row, RowError>> {
    vec![Err(RowError {
        line: 0,
        field: "file".into(),
        message: message.into(),
    })]
}

fn checked(line: u64, lead: NewLead) -> Result<Row, RowError> {
    lead.check()
        .map(|lead| Row { line, lead })
        .map_err(|FieldError { field, message }| RowError {
            line,
            field: field.to_string(),
            message,
        })
}

fn read_json_lines(mut input: impl Read) -> Vec<Result<Row, RowError>> {
    let mut text = String::new();
    if let Err(e) = input.read_to_string(&mut text) {
        return file_error(format!("cannot read it as UTF-8 text: {e}"));
    }
    text.trim_start_matches('\u{feff}')
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let line = i as u64 + 1;
            match serde_json::from_str::<NewLead>(l) {
                Ok(lead) => checked(line, lead),
                Err(e) => Err(RowError {
                    line,
                    field: json_field(&e.to_string()),
                    message: e.to_string(),
                }),
            }
        })
        .collect()
}

/// The field serde names in its message (`missing field `company``), else `line`.
fn json_field(message: &str) -> String {
    message
        .split('`')
        .nth(1)
        .filter(|f| COLUMNS.contains(f) || *f == "products" || *f == "consent")
        .unwrap_or("line")
        .to_string()
}

fn read_csv(mut input: impl Read) -> Vec<Result<Row, RowError>> {
    let mut bytes = Vec::new();
    if let Err(e) = input.read_to_end(&mut bytes) {
        return file_error(format!("cannot read it: {e}"));
    }
    let bytes = bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(&bytes);
    let first_line = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    let delimiter = if first_line.contains(&b';') && !first_line.contains(&b',') {
        b';'
    } else {
        b','
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(false)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => return file_error(csv_message(&e)),
    };
    let columns: Vec<String> = headers.iter().map(|h| h.trim().to_lowercase()).collect();
    if let Some(unknown) = columns.iter().find(|c| !COLUMNS.contains(&c.as_str())) {
        return vec![Err(RowError {
            line: 1,
            field: unknown.clone(),
            message: format!(
                "unknown column `{unknown}`; the columns are {}",
                COLUMNS.join(", ")
            ),
        })];
    }
    for required in ["external_id", "company", "country"] {
        if !columns.iter().any(|c| c == required) {
            return vec![Err(RowError {
                line: 1,
                field: required.into(),
                message: format!("the header has no `{required}` column"),
            })];
        }
    }
    let list_separators: &[char] = if delimiter == b';' {
        &['|', ',']
    } else {
        &['|', ';']
    };
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                rows.push(Err(RowError {
                    line,
                    field: "line".into(),
                    message: csv_message(&e),
                }));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        rows.push(
            lead_of(&columns, &record, line, list_separators).and_then(|lead| checked(line, lead)),
        );
    }
    rows
}

fn csv_message(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => {
            "is not UTF-8 text; save the file as UTF-8 (spreadsheets: \"CSV UTF-8\")".into()
        }
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("has {len} fields where the header has {expected_len}")
        }
        _ => e.to_string(),
    }
}

fn lead_of(
    columns: &[String],
    record: &csv::StringRecord,
    line: u64,
    separators: &[char],
) -> Result<NewLead, RowError> {
    let bad = |field: &str, message: String| RowError {
        line,
        field: field.to_string(),
        message,
    };
    let mut lead = NewLead::default();
    let mut consent = Consent::default();
    for (column, value) in columns.iter().zip(record.iter()) {
        let text = || (!value.is_empty()).then(|| value.to_string());
        let yes = |field: &str| match value.to_lowercase().as_str() {
            "" | "false" | "0" | "nein" | "no" | "n" => Ok(false),
            "true" | "1" | "ja" | "yes" | "j" | "y" | "x" => Ok(true),
            other => Err(bad(
                field,
                format!("`{other}` is not yes or no (true/false, ja/nein, 1/0)"),
            )),
        };
        match column.as_str() {
            "external_id" => lead.external_id = value.to_string(),
            "company" => lead.company = value.to_string(),
            "country" => lead.country = value.to_string(),
            "postal_code" => lead.postal_code = text(),
            "industry" => lead.industry = text(),
            "first_name" => lead.first_name = text(),
            "last_name" => lead.last_name = text(),
            "email" => lead.email = text(),
            "phone" => lead.phone = text(),
            "title" => lead.title = text(),
            "vat_id" => lead.vat_id = text(),
            "source" => lead.source = text(),
            "products" => {
                lead.products = value
                    .split(separators)
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_string)
                    .collect()
            }
            "employees" if value.is_empty() => {}
            "employees" => {
                let digits: String = value
                    .chars()
                    .filter(|c| !matches!(c, '.' | ',' | ' ' | '\''))
                    .collect();
                lead.employees =
                    Some(digits.parse().map_err(|_| {
                        bad("employees", format!("`{value}` is not a whole number"))
                    })?);
            }
            "quote_requested" => lead.quote_requested = yes(column)?,
            "brochure_downloaded" => lead.brochure_downloaded = yes(column)?,
            "event_visited" => lead.event_visited = yes(column)?,
            "consent_email" => consent.email = yes(column)?,
            "consent_phone" => consent.phone = yes(column)?,
            _ => {}
        }
    }
    lead.consent = consent;
    Ok(lead)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leads(text: &str, json: bool) -> Vec<Result<Row, RowError>> {
        read(text.as_bytes(), json)
    }

    #[test]
    fn german_spreadsheet_csv_is_read() {
        let text = "\u{feff}external_id;company;country;postal_code;employees;products;quote_requested\n\
                    L-1;Müller GmbH;de;01067;5.000;A, B;ja\n\
                    L-2;\"Kälte; Klima AG\";AT;1010;;C;\n";
        let rows = leads(text, false);
        let first = rows[0].as_ref().unwrap();
        assert_eq!((first.line, first.lead.country.as_str()), (2, "DE"));
        assert_eq!(first.lead.postal_code.as_deref(), Some("01067"));
        assert_eq!(first.lead.employees, Some(5000));
        assert_eq!(first.lead.products, ["A", "B"]);
        assert!(first.lead.quote_requested);
        let second = rows[1].as_ref().unwrap();
        assert_eq!(
            (second.lead.company.as_str(), second.lead.employees),
            ("Kälte; Klima AG", None)
        );
    }

    #[test]
    fn bad_rows_name_their_line_and_field() {
        let text = "external_id,company,country,postal_code,employees\n\
                    L-1,Müller,DE,8033,10\n\
                    L-2,Huber,DE,80331,viele\n\
                    L-3,Maier,DE\n\
                    L-4,Gruber,AT,1010,3\n";
        let rows = leads(text, false);
        let errors: Vec<String> = rows
            .iter()
            .filter_map(|r| r.as_ref().err())
            .map(ToString::to_string)
            .collect();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(
            errors[0].starts_with("line 2: postal_code: `8033` is not a postal code of DE"),
            "{}",
            errors[0]
        );
        assert_eq!(
            errors[1],
            "line 3: employees: `viele` is not a whole number"
        );
        assert_eq!(
            errors[2],
            "line 4: line: has 3 fields where the header has 5"
        );
        assert!(rows[3].is_ok());
        let unknown = leads("external_id,company,land\n", false);
        assert!(
            unknown[0]
                .as_ref()
                .unwrap_err()
                .message
                .contains("unknown column `land`")
        );
        let latin1 = read(
            &b"external_id,company,country\nL-1,M\xfcller,DE\n"[..],
            false,
        );
        assert!(
            latin1[0]
                .as_ref()
                .unwrap_err()
                .message
                .contains("not UTF-8"),
            "{latin1:?}"
        );
    }

    #[test]
    fn json_lines_are_read_and_checked() {
        let text = "{\"external_id\": \"L-1\", \"company\": \"Müller\", \"country\": \"CH\", \"postal_code\": \"8001\", \"products\": [\"A\"]}\n\n\
                    {\"external_id\": \"L-2\", \"country\": \"DE\"}\n\
                    {\"external_id\": \"L-3\", \"company\": \"X\", \"country\": \"DE\", \"employes\": 3}\n";
        let rows = leads(text, true);
        assert_eq!(rows[0].as_ref().unwrap().lead.products, ["A"]);
        let e = rows[1].as_ref().unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (3, "company"));
        let e = rows[2].as_ref().unwrap_err();
        assert_eq!(e.line, 4);
        assert!(e.message.contains("unknown field `employes`"), "{e}");
    }
}
