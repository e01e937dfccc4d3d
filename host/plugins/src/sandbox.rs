//! What one plugin call runs in: a fresh store with WASI that grants nothing, the `log`
//! import, a memory limiter and captured stdout/stderr.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::kontor::plugin::log;

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
}

impl State {
    pub fn new(memory_cap: usize) -> State {
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
        }
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

    /// The call's log: `log` lines, then captured stdout and stderr, line by line.
    pub fn take_logs(&mut self) -> Vec<LogLine> {
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
