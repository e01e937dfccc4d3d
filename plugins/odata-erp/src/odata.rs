//! OData v4 over the host's HTTP capability: query strings, literals, paging with
//! `@odata.nextLink`, and the mapping of answers to retryable and fatal errors.

use base64::Engine as _;
use kontor_sdk::{Error, http, log, secrets};
use serde_json::Value;

use crate::config::{Auth, Config};

/// A string literal: `'O''Brien'`.
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// A date literal (`2024-01-31`, unquoted); the input must be a date.
pub fn date_literal(field: &str, value: &str) -> Result<String, Error> {
    let b = value.as_bytes();
    let ok = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if ok {
        Ok(value.to_string())
    } else {
        Err(Error::invalid_input(format!(
            "{field}: `{value}` is not a date (YYYY-MM-DD)"
        )))
    }
}

/// Percent-encodes a query option's value, keeping what OData's syntax needs literally.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for &b in value.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => out.push(b as char),
            b'-' | b'.' | b'_' | b'~' | b'\'' | b'(' | b')' | b',' | b'/' | b':' | b'$' | b'='
            | b';' | b'*' | b'!' | b'@' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The query string of `options`, e.g. `$filter=…&$top=10`.
pub fn query(options: &[(&str, String)]) -> String {
    options
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub struct Client {
    root: String,
    authorization: String,
    max_page_size: Option<u32>,
    timeout_ms: Option<u32>,
    secret: String,
}

pub struct Collected {
    pub rows: Vec<Value>,
    pub count: Option<u64>,
    pub more: bool,
}

/// One page of a collection:  its rows, the server's next page, and `$count` if asked.
pub struct Page {
    pub rows: Vec<Value>,
    pub next: Option<String>,
    pub count: Option<u64>,
}

impl Client {
    pub fn new(config: &Config) -> Result<Client, Error> {
        let secret = secrets::get(config.auth.secret())?;
        let authorization = match &config.auth {
            Auth::Basic { user, .. } => format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"))
            ),
            Auth::Bearer { .. } => format!("Bearer {secret}"),
        };
        Ok(Client {
            root: config.service_url.trim_end_matches('/').to_string(),
            authorization,
            max_page_size: config.max_page_size,
            timeout_ms: config.timeout_ms,
            secret: config.auth.secret().to_string(),
        })
    }

    /// `root/path?query`.
    pub fn url(&self, path: &str, options: &[(&str, String)]) -> String {
        let q = query(options);
        if q.is_empty() {
            format!("{}/{path}", self.root)
        } else {
            format!("{}/{path}?{q}", self.root)
        }
    }

    /// A next link as an absolute URL: OData allows it relative to the service root.
    fn resolve(&self, link: &str) -> String {
        if link.starts_with("http://") || link.starts_with("https://") {
            link.to_string()
        } else if let Some(path) = link.strip_prefix('/') {
            let scheme_end = self.root.find("://").map_or(0, |i| i + 3);
            let origin_end = self.root[scheme_end..]
                .find('/')
                .map_or(self.root.len(), |i| scheme_end + i);
            format!("{}/{path}", &self.root[..origin_end])
        } else {
            format!("{}/{link}", self.root)
        }
    }

    /// GETs a URL; `None` for 404 (an entity that does not exist).
    pub fn get(&self, url: &str) -> Result<Option<Value>, Error> {
        let mut request = http::Request::get(url)
            .header("accept", "application/json;odata.metadata=minimal")
            .header("odata-version", "4.0")
            .header("authorization", self.authorization.clone());
        if let Some(n) = self.max_page_size {
            request = request.header("prefer", format!("odata.maxpagesize={n}"));
        }
        if let Some(ms) = self.timeout_ms {
            request = request.timeout_ms(ms);
        }
        let response = request.send()?;
        match response.status {
            200 => response.json().map(Some),
            404 => Ok(None),
            status => Err(self.failure(status, &response)),
        }
    }

    /// What an error answer means for the step.
    fn failure(&self, status: u16, response: &http::Response) -> Error {
        let message = odata_message(&response.body)
            .unwrap_or_else(|| response.text().chars().take(300).collect());
        let path = response.url.split('?').next().unwrap_or_default();
        match status {
            401 | 403 => Error::fatal(format!(
                "the ERP refused the credentials ({status} {}): {message} — check the user and the secret `{}` in the plugin's configuration",
                reason(status),
                self.secret
            )),
            429 => {
                let wait = response
                    .header("retry-after")
                    .map(|s| format!("; it asks to wait {} s", s.trim()))
                    .unwrap_or_default();
                Error::retryable(format!(
                    "the ERP is rate-limiting (429 Too Many Requests){wait}: {message}"
                ))
            }
            408 | 500..=599 => Error::retryable(format!(
                "the ERP answered {status} {} for {path}: {message}",
                reason(status)
            )),
            _ => Error::fatal(format!(
                "the ERP answered {status} {} for {path}: {message}",
                reason(status)
            )),
        }
    }

    /// One page of a collection, from a first URL or a next link.
    pub fn page(&self, url: &str) -> Result<Page, Error> {
        let Some(mut body) = self.get(url)? else {
            return Err(Error::fatal(format!(
                "the ERP has no such entity set: {}",
                url.split('?').next().unwrap_or_default()
            )));
        };
        let rows = match body.get_mut("value").map(Value::take) {
            Some(Value::Array(rows)) => rows,
            _ => {
                return Err(Error::fatal(format!(
                    "the answer of {url} is not an OData collection (no `value` array)"
                )));
            }
        };
        let next = body
            .get("@odata.nextLink")
            .and_then(Value::as_str)
            .map(|link| self.resolve(link));
        let count = body.get("@odata.count").and_then(Value::as_u64);
        Ok(Page { rows, next, count })
    }

    /// Up to `limit` rows of a collection, following the server's next links; whether
    /// more rows follow (the server offered another page, or there were more rows).
    pub fn collect(&self, url: &str, limit: usize) -> Result<Collected, Error> {
        let mut first = self.page(url)?;
        let count = first.count;
        let mut rows = std::mem::take(&mut first.rows);
        let mut next = first.next;
        while rows.len() < limit {
            let Some(link) = next.take() else { break };
            log::debug_with(
                "following the server's next page",
                &[("rows", &rows.len().to_string())],
            );
            let page = self.page(&link)?;
            rows.extend(page.rows);
            next = page.next;
        }
        let more = next.is_some() || rows.len() > limit;
        rows.truncate(limit);
        Ok(Collected { rows, count, more })
    }
}

/// The message of an OData error body: `{"error": {"code", "message"}}`, where the
/// message may also be `{"lang", "value"}` (OData v2 style, which some gateways keep).
pub fn odata_message(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let error = value.get("error")?;
    let message = error.get("message")?;
    let text = message
        .as_str()
        .map(str::to_string)
        .or_else(|| message.get("value")?.as_str().map(str::to_string))?;
    Some(match error.get("code").and_then(Value::as_str) {
        Some(code) if !code.is_empty() && !text.contains(code) => format!("{text} (code {code})"),
        _ => text,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        412 => "Precondition Failed",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_double_quotes_and_values_are_encoded_for_urls() {
        assert_eq!(literal("O'Brien"), "'O''Brien'");
        assert_eq!(
            encode("email eq 'jörg+1@bäcker.de' & x"),
            "email%20eq%20'j%C3%B6rg%2B1@b%C3%A4cker.de'%20%26%20x"
        );
        assert_eq!(
            query(&[
                ("$filter", "ID eq 'K-1'".into()),
                ("$top", "5".into()),
                ("$count", String::new())
            ]),
            "$filter=ID%20eq%20'K-1'&$top=5"
        );
    }

    #[test]
    fn dates_must_be_dates() {
        assert_eq!(
            date_literal("delivered_from", "2024-01-31").unwrap(),
            "2024-01-31"
        );
        let e = date_literal("delivered_from", "31.01.2024").unwrap_err();
        assert!(e.to_string().contains("delivered_from"), "{e}");
    }

    #[test]
    fn odata_error_messages_in_both_shapes() {
        assert_eq!(
            odata_message(
                br#"{"error":{"code":"400","message":"Property \"foo\" does not exist"}}"#
            )
            .unwrap(),
            "Property \"foo\" does not exist (code 400)"
        );
        assert_eq!(
            odata_message(
                br#"{"error":{"code":"SY/530","message":{"lang":"de","value":"Kunde gesperrt"}}}"#
            )
            .unwrap(),
            "Kunde gesperrt (code SY/530)"
        );
        assert!(odata_message(b"<html>").is_none());
    }
}
