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
    /// Requests per token and per client address (`[http.rate_limits]`).
    pub rate_limits: RateLimitConfig,
}

/// How often one token may call the API, and one client address the endpoints that need
/// no token (unsubscribe pages, webhooks); over it, 429 with `Retry-After`. Each process
/// counts on its own.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Sustained requests per token: `100/s`, `6000/min`, `off`.
    pub api: String,
    /// Requests a token may make at once above the sustained rate.
    pub api_burst: u32,
    /// Sustained requests per client address to the endpoints without a token.
    pub public: String,
    pub public_burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            api: "1000/s".into(),
            api_burst: 2000,
            public: "50/s".into(),
            public_burst: 100,
        }
    }
}

/// A sustained rate and a burst, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Time between two requests at the sustained rate.
    pub every: Duration,
    pub burst: u32,
}

impl RateLimitConfig {
    /// The per-token and per-address rates; `None` where limiting is off.
    pub fn rates(&self) -> anyhow::Result<(Option<Rate>, Option<Rate>)> {
        Ok((
            rate("api", &self.api, self.api_burst)?,
            rate("public", &self.public, self.public_burst)?,
        ))
    }
}

fn rate(key: &str, text: &str, burst: u32) -> anyhow::Result<Option<Rate>> {
    let text = text.trim();
    if text == "off" {
        return Ok(None);
    }
    let bad = || {
        anyhow::anyhow!(
            "http.rate_limits.{key}: `{text}` is not a rate such as `100/s`, `600/min`, `1000/h` or `off`"
        )
    };
    let (count, per) = text.split_once('/').ok_or_else(bad)?;
    let count: u32 = count.trim().parse().map_err(|_| bad())?;
    let period = match per.trim() {
        "s" => Duration::from_secs(1),
        "min" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        _ => return Err(bad()),
    };
    if count == 0 {
        return Err(bad());
    }
    if burst == 0 {
        anyhow::bail!("http.rate_limits.{key}_burst must be at least 1");
    }
    Ok(Some(Rate {
        every: period / count,
        burst,
    }))
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
            rate_limits: RateLimitConfig::default(),
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
        self.rate_limits.rates()?;
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

    #[test]
    fn rates_are_read_per_second_minute_or_hour_or_off() {
        let config = RateLimitConfig {
            api: "600/min".into(),
            public: "off".into(),
            ..RateLimitConfig::default()
        };
        let (api, public) = config.rates().unwrap();
        assert_eq!(
            api,
            Some(Rate {
                every: Duration::from_millis(100),
                burst: 2000
            })
        );
        assert_eq!(public, None);
        for bad in ["fast", "0/s", "10/day", "/s"] {
            let config = RateLimitConfig {
                api: bad.into(),
                ..RateLimitConfig::default()
            };
            let error = config.rates().unwrap_err().to_string();
            assert!(error.starts_with("http.rate_limits.api:"), "{error}");
        }
    }
}
