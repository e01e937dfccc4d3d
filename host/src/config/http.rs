//! `[http]`: how many connections and requests the API takes at once, how long a client
//! may take, and who may read `/metrics` — resolved into the listener's own limits with
//! errors that name the key.

use std::time::Duration;

use serde::Deserialize;

/// The HTTP listener's limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Open connections at most; one more closes the oldest connection that is not being
    /// answered. Kept under the file-descriptor limit.
    pub max_connections: usize,
    /// Requests being answered at once; one more is answered 503 with `Retry-After`.
    pub max_requests: usize,
    /// Time a client has to send a complete request head; also how long an idle
    /// kept-alive connection stays open.
    pub header_timeout: String,
    /// Time from a complete request head to the answer, reading the body included.
    pub request_timeout: String,
    /// How long an answer may wait for a client that does not read it.
    pub write_timeout: String,
    /// Who may read `GET /metrics`: `loopback` (clients on this machine without a token,
    /// others with one), `token` (everyone with a token) or `open`.
    pub metrics: MetricsAccess,
}

/// Who may read `GET /metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsAccess {
    Loopback,
    Token,
    Open,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_connections: 1024,
            max_requests: 256,
            header_timeout: "10s".into(),
            request_timeout: "60s".into(),
            write_timeout: "30s".into(),
            metrics: MetricsAccess::Loopback,
        }
    }
}

/// [`HttpConfig`] with its durations parsed.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub max_connections: usize,
    pub max_requests: usize,
    pub header_timeout: Duration,
    pub request_timeout: Duration,
    pub write_timeout: Duration,
}

impl HttpConfig {
    pub fn limits(&self) -> anyhow::Result<HttpLimits> {
        let duration = |key: &str, text: &str| {
            kontor_time::parse_positive_duration(text)
                .map_err(|e| anyhow::anyhow!("http.{key}: {e}"))
        };
        let at_least_one = |key: &str, value: usize| {
            if value == 0 {
                anyhow::bail!("http.{key} must be at least 1");
            }
            Ok(value)
        };
        Ok(HttpLimits {
            max_connections: at_least_one("max_connections", self.max_connections)?,
            max_requests: at_least_one("max_requests", self.max_requests)?,
            header_timeout: duration("header_timeout", &self.header_timeout)?,
            request_timeout: duration("request_timeout", &self.request_timeout)?,
            write_timeout: duration("write_timeout", &self.write_timeout)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_resolve_and_bad_values_name_their_key() {
        let limits = HttpConfig::default().limits().unwrap();
        assert_eq!(limits.header_timeout, Duration::from_secs(10));
        assert_eq!(limits.max_connections, 1024);
        let bad = HttpConfig {
            request_timeout: "soon".into(),
            ..HttpConfig::default()
        };
        let error = bad.limits().unwrap_err().to_string();
        assert!(error.starts_with("http.request_timeout:"), "{error}");
        let zero = HttpConfig {
            max_requests: 0,
            ..HttpConfig::default()
        };
        assert_eq!(
            zero.limits().unwrap_err().to_string(),
            "http.max_requests must be at least 1"
        );
    }
}
