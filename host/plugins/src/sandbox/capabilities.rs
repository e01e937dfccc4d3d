//! The capability imports of the contract, answered for one call: `config`, `secrets`,
//! `kv`, `http` and `log`. Each checks the plugin's grants first; a refused use is
//! recorded as a denial, which fails the call whatever the plugin does with the error.
//! The caps on how much one call may use are here too.

use crate::bindings::kontor::plugin::types::CapabilityError;
use crate::bindings::kontor::plugin::{config, http, kv, log, secrets};

use super::{LogLine, State};

/// Longest key-value key, value, and most keys written in one call.
const MAX_KV_KEY: usize = 256;
const MAX_KV_VALUE: usize = 256 << 10;
const MAX_KV_WRITES: usize = 1000;
/// Most HTTP requests in one call.
const MAX_HTTP_REQUESTS: u32 = 1000;

impl State {
    fn deny(&mut self, what: String) -> CapabilityError {
        tracing::warn!(plugin = %self.context.plugin, "capability refused: {what}");
        self.denials.push(what.clone());
        CapabilityError::Denied(what)
    }

    fn kv_allowed(&mut self, key: &str) -> Result<(), CapabilityError> {
        if !self.context.grants.kv {
            return Err(self.deny(
                "the key-value store is not granted; grant it with kv = true in [plugin.NAME.grants]"
                    .into(),
            ));
        }
        if key.is_empty() || key.len() > MAX_KV_KEY {
            return Err(CapabilityError::Invalid(format!(
                "a key must have 1 to {MAX_KV_KEY} bytes, this one has {}",
                key.len()
            )));
        }
        Ok(())
    }

    fn kv_write(&mut self, key: String, value: Option<Vec<u8>>) -> Result<(), CapabilityError> {
        self.kv_allowed(&key)?;
        if let Some(v) = &value
            && v.len() > MAX_KV_VALUE
        {
            return Err(CapabilityError::Invalid(format!(
                "the value of `{key}` has {} bytes; at most {MAX_KV_VALUE} are kept",
                v.len()
            )));
        }
        if !self.kv_writes.contains_key(&key) && self.kv_writes.len() >= MAX_KV_WRITES {
            return Err(CapabilityError::Invalid(format!(
                "one call may write at most {MAX_KV_WRITES} keys"
            )));
        }
        self.kv_writes.insert(key, value);
        Ok(())
    }
}

impl crate::bindings::kontor::plugin::types::Host for State {}

impl config::Host for State {
    fn get_all(&mut self) -> String {
        self.context.config_text.clone()
    }

    fn get(&mut self, key: String) -> Option<String> {
        self.context.config.get(&key).map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }
}

impl secrets::Host for State {
    async fn get(&mut self, name: String) -> Result<String, CapabilityError> {
        if !self.context.grants.secrets.contains(&name) {
            return Err(self.deny(format!(
                "secret `{name}` is not granted; grant it with secrets = [\"{name}\"] in [plugin.NAME.grants]"
            )));
        }
        let Some(services) = self.context.services.clone() else {
            return Err(CapabilityError::Unavailable(
                "no secrets store is open in this process".into(),
            ));
        };
        match services.secret(&name).await {
            Ok(Some(value)) => {
                // The value and the forms a URL or a form body would give it.
                let mut forms = vec![
                    value.clone(),
                    percent_encoding::utf8_percent_encode(
                        &value,
                        percent_encoding::NON_ALPHANUMERIC,
                    )
                    .to_string(),
                    url::form_urlencoded::byte_serialize(value.as_bytes()).collect(),
                ];
                if let Ok(url) = url::Url::parse(&format!("http://x/?{value}"))
                    && let Some(query) = url.query()
                {
                    forms.push(query.to_string());
                }
                forms.sort();
                forms.dedup();
                for form in forms {
                    if !self.revealed.iter().any(|r| r.as_str() == form) {
                        self.revealed.push(zeroize::Zeroizing::new(form));
                    }
                }
                // Longest first, so a form that contains another is replaced whole.
                self.revealed.sort_by_key(|r| std::cmp::Reverse(r.len()));
                Ok(value)
            }
            Ok(None) => Err(CapabilityError::Unavailable(format!(
                "secret `{name}` is granted but not set (`kontor secret set {name}`)"
            ))),
            Err(e) => Err(CapabilityError::Unavailable(format!(
                "secret `{name}` cannot be read: {e}"
            ))),
        }
    }
}

impl kv::Host for State {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, CapabilityError> {
        self.kv_allowed(&key)?;
        if let Some(pending) = self.kv_writes.get(&key) {
            return Ok(pending.clone());
        }
        let Some(services) = self.context.services.clone() else {
            return Ok(None);
        };
        services
            .kv_get(&self.context.plugin, &key)
            .await
            .map_err(|e| CapabilityError::Unavailable(format!("reading `{key}` failed: {e}")))
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), CapabilityError> {
        self.kv_write(key, Some(value))
    }

    fn delete(&mut self, key: String) -> Result<(), CapabilityError> {
        self.kv_write(key, None)
    }
}

impl http::Host for State {
    async fn send(&mut self, request: http::Request) -> Result<http::Response, http::HttpError> {
        self.http_requests += 1;
        if self.http_requests > MAX_HTTP_REQUESTS {
            return Err(http::HttpError::InvalidRequest(format!(
                "one call may send at most {MAX_HTTP_REQUESTS} requests"
            )));
        }
        let context = self.context.clone();
        let mut limits = context.http.clone();
        // The guest is not interrupted while it waits in the host: the wait ends with
        // the call's deadline.
        limits.timeout = limits.timeout.min(
            self.deadline
                .saturating_duration_since(std::time::Instant::now()),
        );
        let mut hops = Vec::new();
        let result = crate::http::send(
            &context.grants,
            &limits,
            &context.connections,
            crate::http::Request {
                method: request.method,
                url: request.url,
                headers: request.headers,
                body: request.body,
                timeout: request
                    .timeout_ms
                    .map(|ms| std::time::Duration::from_millis(ms.into())),
            },
            &mut hops,
        )
        .await;
        for hop in hops {
            let message = self.redact(&format!(
                "http {} {} → {}",
                hop.method, hop.url, hop.outcome
            ));
            tracing::info!(plugin = %context.plugin, elapsed_ms = hop.elapsed.as_millis() as u64, "{message}");
            self.push_log(LogLine {
                level: "http".into(),
                message,
                fields: vec![("ms".into(), hop.elapsed.as_millis().to_string())],
            });
        }
        use crate::http::HttpError as E;
        if let Ok(r) = &result
            && matches!(r.status, 429 | 503)
            && let Some(wait) = r
                .headers
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("retry-after"))
                .and_then(|(_, value)| retry_after(value, std::time::SystemTime::now()))
        {
            self.retry_after = Some(self.retry_after.map_or(wait, |w| w.max(wait)));
        }
        result
            .map(|r| http::Response {
                status: r.status,
                headers: r.headers,
                body: r.body,
                url: r.url,
            })
            .map_err(|e| {
                if e.is_denial() {
                    self.deny(e.to_string());
                }
                match e {
                    E::NotGranted(m) => http::HttpError::NotGranted(m),
                    E::ForbiddenAddress(m) => http::HttpError::ForbiddenAddress(m),
                    E::TooLarge(m) => http::HttpError::TooLarge(m),
                    E::Timeout(m) => http::HttpError::Timeout(m),
                    E::Connection(m) => http::HttpError::Connection(m),
                    E::InvalidRequest(m) => http::HttpError::InvalidRequest(m),
                    E::TooManyRedirects(m) => http::HttpError::TooManyRedirects(m),
                }
            })
    }
}

impl log::Host for State {
    fn log(&mut self, level: log::Level, message: String, fields: Vec<(String, String)>) {
        let level = match level {
            log::Level::Trace => "trace",
            log::Level::Debug => "debug",
            log::Level::Info => "info",
            log::Level::Warn => "warn",
            log::Level::Error => "error",
        };
        self.push_log(LogLine {
            level: level.into(),
            message,
            fields,
        });
    }
}

/// The longest wait a server may ask for; a longer `Retry-After` is shortened to it.
pub const MAX_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// A `Retry-After` value: seconds (`120`) or an HTTP date
/// (`Wed, 21 Oct 2026 07:28:00 GMT`), as a wait from `now`, at most [`MAX_RETRY_AFTER`].
pub fn retry_after(value: &str, now: std::time::SystemTime) -> Option<std::time::Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => std::time::Duration::from_secs(seconds),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(now)
            .unwrap_or_default(),
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod retry_after_tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    #[test]
    fn retry_after_in_seconds_or_as_a_date_capped_at_an_hour() {
        let now = httpdate::parse_http_date("Thu, 26 Nov 2026 06:00:00 GMT").unwrap();
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after("Thu, 26 Nov 2026 06:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after("Thu, 26 Nov 2026 05:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("86400", now), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after("soon", SystemTime::now()), None);
    }
}
