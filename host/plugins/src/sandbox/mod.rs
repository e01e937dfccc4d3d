//! What one plugin call runs in: the per-call state of a fresh store ([`State`]) —
//! WASI that grants nothing, a memory limiter, the plugin's log with captured
//! stdout/stderr, and the key-value writes and secret values of this call. The
//! capability imports it answers are in `capabilities`; the capture of stdout/stderr
//! in `captured_output`.

mod capabilities;
mod captured_output;

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::KvWrite;
use crate::services::CallContext;
use captured_output::Capture;

/// Most log lines kept per call; more are counted, not stored.
const MAX_LOG_LINES: usize = 200;
/// Most bytes of captured stdout/stderr and log text kept per call.
const MAX_LOG_BYTES: usize = 64 * 1024;

/// One line of a plugin's log: from the `log` import or from stdout/stderr.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogLine {
    /// `trace`, `debug`, `info`, `warn`, `error`, `stdout`/`stderr` for captured output,
    /// or `http` for one hop of an outbound request.
    pub level: String,
    /// The text, secret values redacted.
    pub message: String,
    /// Structured fields the plugin attached (`log::info_with`), as key and value.
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
