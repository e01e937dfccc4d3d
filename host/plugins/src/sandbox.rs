//! What one plugin call runs in: a fresh store with WASI that grants nothing, the `log`
//! import, a memory limiter and captured stdout/stderr.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::kontor::plugin::types::CapabilityError;
use crate::bindings::kontor::plugin::{config, http, kv, log, secrets};
use crate::{CallContext, KvWrite};

/// Longest key-value key, value, and most keys written in one call.
const MAX_KV_KEY: usize = 256;
const MAX_KV_VALUE: usize = 256 << 10;
const MAX_KV_WRITES: usize = 1000;
/// Most HTTP requests in one call.
const MAX_HTTP_REQUESTS: u32 = 1000;

/// Most log lines kept per call; more are counted, not stored.
const MAX_LOG_LINES: usize = 200;
/// Most bytes of captured stdout/stderr and log text kept per call.
const MAX_LOG_BYTES: usize = 64 * 1024;

/// One line of a plugin's log: from the `log` import or from stdout/stderr.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogLine {
    /// `trace`, `debug`, `info`, `warn`, `error`, or `stdout`/`stderr` for captured output.
    pub level: String,
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<(String, String)>,
}

/// The per-call state of a store.
pub(crate) struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    memory_cap: usize,
    /// Largest linear memory granted during the call, in bytes.
    pub peak_memory: usize,
    /// The guest asked for more memory than its cap.
    pub memory_exceeded: bool,
    pub logs: Vec<LogLine>,
    log_bytes: usize,
    pub dropped_log_lines: usize,
    stdout: Capture,
    stderr: Capture,
    /// What the plugin may use, and the host services behind it.
    context: Arc<CallContext>,
    /// Key-value writes of this call, committed with the step's result.
    kv_writes: std::collections::BTreeMap<String, Option<Vec<u8>>>,
    /// Capability uses the grants refused: each fails the call.
    pub denials: Vec<String>,
    /// The longest `Retry-After` of a 429 or 503 answer in this call: a retry of the
    /// step waits at least that long.
    pub retry_after: Option<std::time::Duration>,
    /// Secret values handed to the plugin this call, never to be logged.
    revealed: Vec<zeroize::Zeroizing<String>>,
    http_requests: u32,
    /// When the call's deadline passes: waits in host calls end there too.
    deadline: std::time::Instant,
}

impl State {
    pub fn new(
        memory_cap: usize,
        context: Arc<CallContext>,
        deadline: std::time::Instant,
    ) -> State {
        let stdout = Capture::default();
        let stderr = Capture::default();
        // Nothing granted: no preopened directories, no environment, no arguments, no
        // sockets (the builder denies every address and lookup by default), no stdin.
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false)
            .build();
        State {
            wasi,
            table: ResourceTable::new(),
            memory_cap,
            peak_memory: 0,
            memory_exceeded: false,
            logs: Vec::new(),
            log_bytes: 0,
            dropped_log_lines: 0,
            stdout,
            stderr,
            context,
            kv_writes: Default::default(),
            denials: Vec::new(),
            retry_after: None,
            revealed: Vec::new(),
            http_requests: 0,
            deadline,
        }
    }

    /// `text` with every secret value handed out this call replaced.
    pub fn redact(&self, text: &str) -> String {
        let mut text = text.to_string();
        for secret in &self.revealed {
            if !secret.is_empty() && text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "[redacted]");
            }
        }
        text
    }

    /// The call's key-value writes, in key order.
    pub fn take_kv_writes(&mut self) -> Vec<KvWrite> {
        std::mem::take(&mut self.kv_writes)
            .into_iter()
            .map(|(key, value)| KvWrite {
                plugin: self.context.plugin.clone(),
                key,
                value,
            })
            .collect()
    }

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

    fn push_log(&mut self, line: LogLine) {
        let size = line.message.len()
            + line
                .fields
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
        if self.logs.len() >= MAX_LOG_LINES || self.log_bytes + size > MAX_LOG_BYTES {
            self.dropped_log_lines += 1;
            return;
        }
        self.log_bytes += size;
        self.logs.push(line);
    }

    /// The call's log: `log` lines, then captured stdout and stderr, line by line, with
    /// secret values redacted.
    pub fn take_logs(&mut self) -> Vec<LogLine> {
        let mut logs = self.take_raw_logs();
        if !self.revealed.is_empty() {
            for line in &mut logs {
                line.message = self.redact(&line.message);
                for (_, value) in &mut line.fields {
                    *value = self.redact(value);
                }
            }
        }
        logs
    }

    fn take_raw_logs(&mut self) -> Vec<LogLine> {
        for (level, capture) in [
            ("stdout", self.stdout.clone()),
            ("stderr", self.stderr.clone()),
        ] {
            let (text, dropped) = capture.take();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                self.push_log(LogLine {
                    level: level.into(),
                    message: line.to_string(),
                    fields: Vec::new(),
                });
            }
            if dropped > 0 {
                self.push_log(LogLine {
                    level: level.into(),
                    message: format!("… {dropped} more bytes not kept"),
                    fields: Vec::new(),
                });
            }
        }
        if self.dropped_log_lines > 0 {
            let n = self.dropped_log_lines;
            self.logs.push(LogLine {
                level: "warn".into(),
                message: format!("… {n} more log lines not kept"),
                fields: Vec::new(),
            });
            self.dropped_log_lines = 0;
        }
        std::mem::take(&mut self.logs)
    }

    /// The last lines the guest wrote to stderr (where a Rust panic message lands).
    pub fn stderr_tail(&self) -> String {
        let text = self.stderr.peek();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(3)..].join(" | ")
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wasmtime::ResourceLimiter for State {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            self.memory_exceeded = true;
            return Ok(false);
        }
        self.peak_memory = self.peak_memory.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
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

/// A stdout/stderr that keeps the first [`MAX_LOG_BYTES`] and silently drops the rest, so
/// a chatty guest neither grows the host's memory nor fails its writes.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Captured>>);

#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    dropped: usize,
}

impl Capture {
    fn append(&self, data: &[u8]) {
        let mut c = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let room = MAX_LOG_BYTES.saturating_sub(c.bytes.len());
        let keep = data.len().min(room);
        c.bytes.extend_from_slice(&data[..keep]);
        c.dropped += data.len() - keep;
    }

    fn take(&self) -> (String, usize) {
        let mut c = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let text = String::from_utf8_lossy(&c.bytes).into_owned();
        c.bytes.clear();
        (text, std::mem::take(&mut c.dropped))
    }

    fn peek(&self) -> String {
        let c = self.0.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&c.bytes).into_owned()
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

impl OutputStream for Capture {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for Capture {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.append(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
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
