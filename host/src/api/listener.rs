//! The HTTP listener. Kontor accepts connections itself instead of through `axum::serve`,
//! so that no client — idle, slow or hostile — holds more than its share of the server:
//!
//! - **header timeout** (`http.header_timeout`): hyper's head timer runs whenever a
//!   connection waits for a request head, so a half-sent head and an idle kept-alive
//!   connection both close after it;
//! - **request timeout** (`http.request_timeout`): from a complete head to the answer, a
//!   body that stops arriving included; past it the request is answered 503;
//! - **write timeout** (`http.write_timeout`): an answer that waits that long for a client
//!   that does not read it closes the connection;
//! - **connection cap** (`http.max_connections`, kept under the file-descriptor limit so
//!   the store, plugins and folder scans always have descriptors left): one connection
//!   more closes the oldest one that is not being answered — idle or still sending its
//!   head — so a slowloris of thousands of sockets only ever evicts itself;
//! - **request cap** (`http.max_requests`): one request more is answered 503 with
//!   `Retry-After` at once; `/healthz` is exempt, so liveness probes keep answering.
//!
//! Every request carries its peer address ([`ConnectInfo`]) for the handlers that need it.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tower_service::Service;
use tracing::{debug, info, warn};

use super::ApiError;
use crate::config::HttpLimits;

/// How long open connections may take to finish their answers at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// File descriptors kept free of connections: the store, plugin files, folder scans, mail.
const RESERVED_DESCRIPTORS: u64 = 128;

/// Serves `app` on `listener` within `limits` until `stopped` turns true, then lets open
/// answers finish (at most [`SHUTDOWN_GRACE`]).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    mut stopped: watch::Receiver<bool>,
) {
    let max_connections = connection_cap(limits.max_connections);
    let app = guard_requests(app, &limits);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let table = Arc::new(Mutex::new(Table::default()));
    let mut connections = JoinSet::new();
    let mut last_warning: Option<Instant> = None;
    loop {
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            _ = stopped.changed() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors or memory: make room rather than spin on the error.
                metrics::counter!("kontor_http_accept_errors_total").increment(1);
                let freed = lock(&table).evict_oldest_idle();
                if let Some(gone) = &freed {
                    gone.closed_soon().await;
                }
                if last_warning.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
                    warn!(error = %e, "accepting a connection failed; closing idle ones");
                    last_warning = Some(Instant::now());
                }
                if freed.is_none() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                continue;
            }
        };
        // At the cap, the oldest idle connection goes first — and is gone, its descriptor
        // closed, before the new one counts.
        let evicted = {
            let mut table = lock(&table);
            (table.open.len() >= max_connections).then(|| table.evict_oldest_idle())
        };
        match evicted {
            Some(None) => {
                refuse(&stream);
                continue;
            }
            Some(Some(gone)) => gone.closed_soon().await,
            None => {}
        }
        let slot = lock(&table).admit();
        connections.spawn(connection(
            Connection {
                stream,
                peer,
                slot,
                table: table.clone(),
                write_timeout: limits.write_timeout,
            },
            app.clone(),
            http.clone(),
            stopped.clone(),
        ));
    }
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        warn!("connections still open after the shutdown grace period; closing them");
        connections.abort_all();
    }
}

/// One accepted connection and its place in the table.
struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    slot: Arc<Slot>,
    table: Arc<Mutex<Table>>,
    write_timeout: Duration,
}

async fn connection(
    accepted: Connection,
    app: Router,
    http: http1::Builder,
    mut stopped: watch::Receiver<bool>,
) {
    let Connection {
        stream,
        peer,
        slot,
        table,
        write_timeout,
    } = accepted;
    let _leave = Leave { table, id: slot.id };
    let answering = slot.clone();
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let busy = Answering::start(&answering);
        let mut app = app.clone();
        async move {
            let response = app.call(request).await;
            drop(busy);
            response
        }
    });
    let io = TokioIo::new(WriteDeadline::new(stream, write_timeout));
    let mut conn = std::pin::pin!(http.serve_connection(io, service));
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                debug!(%peer, error = %e, "connection ended");
            }
        }
        () = slot.evict.notified() => {
            metrics::counter!("kontor_http_connections_evicted_total").increment(1);
            debug!(%peer, "idle connection closed to make room for a new one");
        }
        Ok(()) = stopped.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Answers a connection there is no room for, without reading from it, and closes it.
fn refuse(stream: &TcpStream) {
    metrics::counter!("kontor_http_connections_refused_total").increment(1);
    const BODY: &str = r#"{"error":{"code":"unavailable","message":"every connection is busy answering a request; try again"}}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    // Best effort: a client whose buffer is full gets the closed connection only.
    let _ = stream.try_write(answer.as_bytes());
}

/// Raises the soft file-descriptor limit to the hard one and returns how many
/// connections fit under it with [`RESERVED_DESCRIPTORS`] to spare.
fn connection_cap(configured: usize) -> usize {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum || limit.maximum.is_none() {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            limit = raised;
        }
    }
    let Some(descriptors) = limit.current else {
        return configured;
    };
    let room = descriptors
        .saturating_sub(RESERVED_DESCRIPTORS)
        .max(descriptors / 2);
    let cap = configured
        .min(usize::try_from(room).unwrap_or(usize::MAX))
        .max(1);
    if cap < configured {
        warn!(
            configured,
            cap, descriptors, "http.max_connections lowered to fit the file-descriptor limit"
        );
    } else {
        info!(cap, descriptors, "connection cap");
    }
    cap
}

/// The open connections, oldest first (ids only grow). A connection leaves when its
/// task ends, so the count is of open sockets, evicted ones until they are closed.
#[derive(Default)]
struct Table {
    next_id: u64,
    open: BTreeMap<u64, Arc<Slot>>,
}

/// One open connection: how many of its requests are being answered, the signal that
/// closes it, and the one that says it is closed.
struct Slot {
    id: u64,
    answering: AtomicUsize,
    evicted: AtomicBool,
    evict: Notify,
    closed: Notify,
}

impl Slot {
    /// Waits until an evicted connection's task has ended and its descriptor is closed
    /// (at most a second: a task that does not end then still ends soon).
    async fn closed_soon(&self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.closed.notified()).await;
    }
}

impl Table {
    fn admit(&mut self) -> Arc<Slot> {
        self.next_id += 1;
        let slot = Arc::new(Slot {
            id: self.next_id,
            answering: AtomicUsize::new(0),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
            closed: Notify::new(),
        });
        self.open.insert(slot.id, slot.clone());
        self.report();
        slot
    }

    /// Tells the oldest connection with no request being answered to close; `None` if
    /// every connection is busy.
    fn evict_oldest_idle(&mut self) -> Option<Arc<Slot>> {
        let slot = self.open.values().find(|slot| {
            slot.answering.load(Ordering::SeqCst) == 0 && !slot.evicted.load(Ordering::SeqCst)
        })?;
        slot.evicted.store(true, Ordering::SeqCst);
        slot.evict.notify_one();
        Some(slot.clone())
    }

    fn report(&self) {
        metrics::gauge!("kontor_http_connections").set(self.open.len() as f64);
    }
}

fn lock(table: &Mutex<Table>) -> MutexGuard<'_, Table> {
    // The table holds no invariant a panicking holder could break halfway.
    table
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Removes a finished connection from the table.
struct Leave {
    table: Arc<Mutex<Table>>,
    id: u64,
}

impl Drop for Leave {
    fn drop(&mut self) {
        let mut table = lock(&self.table);
        if let Some(slot) = table.open.remove(&self.id) {
            slot.closed.notify_one();
            table.report();
        }
    }
}

/// Marks a connection busy while one of its requests is being answered.
struct Answering(Arc<Slot>);

impl Answering {
    fn start(slot: &Arc<Slot>) -> Answering {
        slot.answering.fetch_add(1, Ordering::SeqCst);
        Answering(slot.clone())
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.answering.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Clone)]
struct RequestGuard {
    permits: Arc<Semaphore>,
    timeout: Duration,
}

fn guard_requests(app: Router, limits: &HttpLimits) -> Router {
    let guard = RequestGuard {
        permits: Arc::new(Semaphore::new(limits.max_requests)),
        timeout: limits.request_timeout,
    };
    app.layer(middleware::from_fn_with_state(guard, guard_request))
}

/// The request cap and the request timeout.
async fn guard_request(
    State(guard): State<RequestGuard>,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().path() == "/healthz" {
        return next.run(request).await;
    }
    let Ok(_permit) = guard.permits.clone().try_acquire_owned() else {
        metrics::counter!("kontor_http_requests_shed_total").increment(1);
        return ApiError::Unavailable {
            message:
                "the server is answering as many requests as http.max_requests allows; try again"
                    .into(),
            retry_after: Some(Duration::from_secs(1)),
        }
        .into_response();
    };
    match tokio::time::timeout(guard.timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            metrics::counter!("kontor_http_requests_timed_out_total").increment(1);
            ApiError::Unavailable {
                message: format!(
                    "the request was not answered within http.request_timeout ({}s); a body that stops arriving counts",
                    guard.timeout.as_secs_f64()
                ),
                retry_after: None,
            }
            .into_response()
        }
    }
}

/// A TCP stream whose writes fail once they have waited `limit` for a client that does
/// not read.
struct WriteDeadline {
    stream: TcpStream,
    limit: Duration,
    waiting: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl WriteDeadline {
    fn new(stream: TcpStream, limit: Duration) -> Self {
        WriteDeadline {
            stream,
            limit,
            waiting: None,
        }
    }

    fn within_deadline<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.waiting = None;
            return poll;
        }
        let limit = self.limit;
        let timer = self
            .waiting
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client did not read the answer within http.write_timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for WriteDeadline {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteDeadline {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.within_deadline(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.within_deadline(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_flush(cx);
        this.within_deadline(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_shutdown(cx);
        this.within_deadline(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_oldest_idle_connection_is_evicted_first_and_busy_ones_are_kept() {
        let table = Arc::new(Mutex::new(Table::default()));
        let first = lock(&table).admit();
        let second = lock(&table).admit();
        let busy = Answering::start(&first);
        let evicted = lock(&table)
            .evict_oldest_idle()
            .expect("an idle connection");
        assert_eq!(
            evicted.id, second.id,
            "busy first: kept; oldest idle: evicted"
        );
        assert_eq!(lock(&table).open.len(), 2, "counted until its task ends");
        drop(Leave {
            table: table.clone(),
            id: second.id,
        });
        evicted.closed.notified().await;
        assert_eq!(lock(&table).open.len(), 1);
        let third = lock(&table).admit();
        let _also_busy = Answering::start(&third);
        assert!(
            lock(&table).evict_oldest_idle().is_none(),
            "every connection busy"
        );
        drop(busy);
        assert_eq!(lock(&table).evict_oldest_idle().unwrap().id, first.id);
        assert!(
            lock(&table).evict_oldest_idle().is_none(),
            "an evicted connection is not evicted twice"
        );
    }
}
