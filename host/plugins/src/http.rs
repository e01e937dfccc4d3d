//! Outbound HTTP for plugins (`kontor:plugin/http`), checked at every hop.
//!
//! Connections are kept alive per plugin ([`ConnectionPool`]) and reused only for the
//! same origin and an address the current request's resolution approved again.
//!
//! For each request and each redirect: the origin must be granted; the host resolves
//! the name itself and refuses loopback, private, link-local, unique-local, metadata
//! and IPv4-mapped addresses unless `private_networks` names them (any refused address
//! in the answer refuses the whole name); it connects to exactly an address it checked,
//! so a second lookup cannot swap it; TLS is verified against the Web PKI roots. Header
//! and body sizes and the total time are capped.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{self, HeaderName, HeaderValue};
use tokio::net::TcpStream;

use crate::grants::{Grants, Origin, forbidden_kind};

/// Caps on one request.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpLimits {
    /// Largest response body.
    pub max_response_bytes: usize,
    /// Largest response head (status line and headers).
    pub max_header_bytes: usize,
    /// Largest request body.
    pub max_request_bytes: usize,
    /// Longest time for one exchange, redirects included; a plugin may ask for less.
    pub timeout: Duration,
    pub max_redirects: u32,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_response_bytes: 8 << 20,
            max_header_bytes: 64 << 10,
            max_request_bytes: 4 << 20,
            timeout: Duration::from_secs(10),
            max_redirects: 5,
        }
    }
}

/// Why a request got no answer (mirrors the WIT `http-error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    NotGranted(String),
    ForbiddenAddress(String),
    TooLarge(String),
    Timeout(String),
    Connection(String),
    InvalidRequest(String),
    TooManyRedirects(String),
}

impl HttpError {
    /// A refusal by policy: it fails the step whatever the plugin does.
    pub fn is_denial(&self) -> bool {
        matches!(
            self,
            HttpError::NotGranted(_) | HttpError::ForbiddenAddress(_)
        )
    }

    pub fn kind(&self) -> &'static str {
        match self {
            HttpError::NotGranted(_) => "not-granted",
            HttpError::ForbiddenAddress(_) => "forbidden-address",
            HttpError::TooLarge(_) => "too-large",
            HttpError::Timeout(_) => "timeout",
            HttpError::Connection(_) => "connection",
            HttpError::InvalidRequest(_) => "invalid-request",
            HttpError::TooManyRedirects(_) => "too-many-redirects",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            HttpError::NotGranted(m)
            | HttpError::ForbiddenAddress(m)
            | HttpError::TooLarge(m)
            | HttpError::Timeout(m)
            | HttpError::Connection(m)
            | HttpError::InvalidRequest(m)
            | HttpError::TooManyRedirects(m) => m,
        }
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http {}: {}", self.kind(), self.message())
    }
}

/// A request as the plugin made it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub url: String,
}

/// One hop of an exchange, for the step's log (no headers: they may carry credentials).
#[derive(Debug, Clone)]
pub struct Hop {
    pub method: String,
    pub url: String,
    pub outcome: String,
    pub elapsed: Duration,
}

/// How long an idle connection is kept, and how many per origin and address.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_IDLE: usize = 4;

/// Idle keep-alive connections of one plugin, by origin and the address connected to.
#[derive(Default)]
pub struct ConnectionPool {
    idle: Mutex<HashMap<(Origin, SocketAddr), Vec<Connection>>>,
}

/// An open HTTP/1.1 connection; its driver task ends when it is dropped.
struct Connection {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    driver: tokio::task::JoinHandle<()>,
    /// The checked address it is connected to.
    address: SocketAddr,
    since: Instant,
    /// Whether it came out of the pool (then a failure before any answer is retried).
    reused: bool,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl ConnectionPool {
    /// An idle, still open connection to `origin` at one of `addresses`.
    fn take(&self, origin: &Origin, addresses: &[SocketAddr]) -> Option<Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        for address in addresses {
            let Some(list) = idle.get_mut(&(origin.clone(), *address)) else {
                continue;
            };
            while let Some(connection) = list.pop() {
                if connection.since.elapsed() < IDLE_TIMEOUT
                    && !connection.sender.is_closed()
                    && connection.sender.is_ready()
                {
                    let mut connection = connection;
                    connection.reused = true;
                    return Some(connection);
                }
            }
        }
        None
    }

    fn give(&self, origin: &Origin, mut connection: Connection) {
        connection.since = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|_, list| {
            list.retain(|c| c.since.elapsed() < IDLE_TIMEOUT && !c.sender.is_closed());
            !list.is_empty()
        });
        let list = idle
            .entry((origin.clone(), connection.address))
            .or_default();
        if list.len() < MAX_IDLE {
            list.push(connection);
        }
    }
}

/// Headers a plugin may not set: the host owns framing and the target.
const RESERVED: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
];

fn tls() -> Arc<tokio_rustls::rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<tokio_rustls::rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = tokio_rustls::rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let provider = tokio_rustls::rustls::crypto::ring::default_provider();
            let config =
                tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(provider))
                    .with_safe_default_protocol_versions()
                    .expect("ring supports the default TLS versions")
                    .with_root_certificates(roots)
                    .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// Sends `request` under `grants` and `limits`, reusing connections of `pool`; `hops`
/// receives one entry per hop.
pub async fn send(
    grants: &Grants,
    limits: &HttpLimits,
    pool: &ConnectionPool,
    request: Request,
    hops: &mut Vec<Hop>,
) -> Result<Response, HttpError> {
    let budget = request
        .timeout
        .map_or(limits.timeout, |t| t.min(limits.timeout));
    let url = request.url.clone();
    match tokio::time::timeout(budget, exchange(grants, limits, pool, request, hops)).await {
        Ok(result) => result,
        Err(_) => Err(HttpError::Timeout(format!(
            "{} gave no complete answer within {} ms",
            display_url(&url),
            budget.as_millis()
        ))),
    }
}

/// A URL without credentials, for logs and messages.
fn display_url(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        Err(_) => text.chars().take(200).collect(),
    }
}

async fn exchange(
    grants: &Grants,
    limits: &HttpLimits,
    pool: &ConnectionPool,
    request: Request,
    hops: &mut Vec<Hop>,
) -> Result<Response, HttpError> {
    let mut method = hyper::Method::from_bytes(request.method.to_ascii_uppercase().as_bytes())
        .ok()
        .filter(|m| {
            matches!(
                m.as_str(),
                "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS"
            )
        })
        .ok_or_else(|| {
            HttpError::InvalidRequest(format!(
                "method `{}` is not one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS",
                request.method
            ))
        })?;
    let mut url = url::Url::parse(&request.url).map_err(|e| {
        HttpError::InvalidRequest(format!("`{}` is not a URL: {e}", display_url(&request.url)))
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(HttpError::InvalidRequest(
            "the URL must not carry credentials; send them in a header read from a secret".into(),
        ));
    }
    let mut headers = Vec::with_capacity(request.headers.len());
    for (name, value) in &request.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| HttpError::InvalidRequest(format!("`{name}` is not a header name")))?;
        if RESERVED.contains(&name.as_str()) {
            return Err(HttpError::InvalidRequest(format!(
                "header `{name}` is set by the host"
            )));
        }
        let value = HeaderValue::from_str(value).map_err(|_| {
            HttpError::InvalidRequest(format!("the value of header `{name}` is not valid"))
        })?;
        headers.push((name, value));
    }
    let mut body = request.body.map(Bytes::from);
    if let Some(b) = &body
        && b.len() > limits.max_request_bytes
    {
        return Err(HttpError::TooLarge(format!(
            "the request body is {} bytes; the host sends at most {}",
            b.len(),
            limits.max_request_bytes
        )));
    }
    let mut redirects = 0;
    loop {
        let started = Instant::now();
        let origin = Origin::of(&url).ok_or_else(|| {
            HttpError::InvalidRequest(format!(
                "{} is not an http or https URL",
                display_url(url.as_str())
            ))
        })?;
        let result = hop(
            grants,
            pool,
            limits,
            &origin,
            &method,
            &url,
            &headers,
            body.clone(),
        )
        .await;
        let outcome = match &result {
            Ok(r) => format!("{} ({} bytes)", r.status, r.body.len()),
            Err(e) => format!("refused or failed: {e}"),
        };
        hops.push(Hop {
            method: method.to_string(),
            url: display_url(url.as_str()),
            outcome,
            elapsed: started.elapsed(),
        });
        let response = result?;
        let location = response
            .headers
            .iter()
            .find(|(n, _)| n == "location")
            .map(|(_, v)| v.clone());
        let (true, Some(location)) = (
            matches!(response.status, 301 | 302 | 303 | 307 | 308),
            location,
        ) else {
            return Ok(response);
        };
        redirects += 1;
        if redirects > limits.max_redirects {
            return Err(HttpError::TooManyRedirects(format!(
                "more than {} redirects, the last to {}",
                limits.max_redirects,
                display_url(&location)
            )));
        }
        let next = url.join(&location).map_err(|e| {
            HttpError::Connection(format!(
                "{} redirected to `{}`, which is not a URL: {e}",
                display_url(url.as_str()),
                display_url(&location)
            ))
        })?;
        if response.status == 303
            || (matches!(response.status, 301 | 302) && method == hyper::Method::POST)
        {
            method = hyper::Method::GET;
            body = None;
        }
        // Credentials are for the origin they were meant for.
        if Origin::of(&next) != Some(origin) {
            headers.retain(|(n, _)| n != header::AUTHORIZATION && n != header::COOKIE);
        }
        url = next;
    }
}

/// One request to one URL: grant check, resolution, address check, then an idle
/// connection to an approved address or a new one, and the exchange.
#[allow(clippy::too_many_arguments)]
async fn hop(
    grants: &Grants,
    pool: &ConnectionPool,
    limits: &HttpLimits,
    origin: &Origin,
    method: &hyper::Method,
    url: &url::Url,
    headers: &[(HeaderName, HeaderValue)],
    body: Option<Bytes>,
) -> Result<Response, HttpError> {
    if !grants.allows_origin(origin) {
        return Err(HttpError::NotGranted(format!(
            "{origin} is not granted to this plugin; grant it in [plugin.NAME.grants] http = [\"{origin}\"]"
        )));
    }
    let addresses = resolve(grants, origin).await?;
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let host_header = match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    };
    let request = || {
        let mut builder = hyper::Request::builder()
            .method(method.clone())
            .uri(&target)
            .header(header::HOST, &host_header);
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        builder
            .body(Full::new(body.clone().unwrap_or_default()))
            .map_err(|e| HttpError::InvalidRequest(format!("cannot build the request: {e}")))
    };
    // A kept-alive connection may have been closed by the server meanwhile: then the
    // request goes out once more on a new connection.
    if let Some(connection) = pool.take(origin, &addresses) {
        match exchange_on(limits, pool, origin, connection, request()?, url).await {
            Err(Failure::BeforeAnswer(_)) => {}
            other => return other.map_err(Failure::into_error),
        }
    }
    let connection = connect(limits, origin, &addresses).await?;
    exchange_on(limits, pool, origin, connection, request()?, url)
        .await
        .map_err(Failure::into_error)
}

/// Why an exchange failed: before any answer came (a reused connection the server had
/// closed: worth one more try on a new one), or otherwise.
enum Failure {
    BeforeAnswer(HttpError),
    Other(HttpError),
}

impl Failure {
    fn into_error(self) -> HttpError {
        match self {
            Failure::BeforeAnswer(e) | Failure::Other(e) => e,
        }
    }
}

/// A new connection (TLS for https) to the first reachable of the checked `addresses`.
async fn connect(
    limits: &HttpLimits,
    origin: &Origin,
    addresses: &[SocketAddr],
) -> Result<Connection, HttpError> {
    let mut last_error = String::new();
    let mut stream = None;
    for address in addresses {
        match TcpStream::connect(address).await {
            Ok(s) => {
                stream = Some((s, *address));
                break;
            }
            Err(e) => last_error = format!("cannot connect to {address}: {e}"),
        }
    }
    let Some((stream, address)) = stream else {
        return Err(HttpError::Connection(format!("{origin}: {last_error}")));
    };
    let _ = stream.set_nodelay(true);
    if origin.scheme == "https" {
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from(origin.host.clone())
            .map_err(|e| HttpError::InvalidRequest(format!("`{}`: {e}", origin.host)))?;
        let tls = tokio_rustls::TlsConnector::from(tls())
            .connect(name, stream)
            .await
            .map_err(|e| HttpError::Connection(format!("TLS with {origin} failed: {e}")))?;
        handshake(limits, origin, hyper_util::rt::TokioIo::new(tls), address).await
    } else {
        handshake(
            limits,
            origin,
            hyper_util::rt::TokioIo::new(stream),
            address,
        )
        .await
    }
}

async fn handshake<I>(
    limits: &HttpLimits,
    origin: &Origin,
    io: I,
    address: SocketAddr,
) -> Result<Connection, HttpError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(limits.max_header_bytes.max(8192))
        .handshake::<_, Full<Bytes>>(io)
        .await
        .map_err(|e| HttpError::Connection(format!("{origin}: {e}")))?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(Connection {
        sender,
        driver,
        address,
        since: Instant::now(),
        reused: false,
    })
}

/// The addresses of `origin` the plugin may reach; refuses the name if any address is
/// refused (a name that also points inside is not trusted).
async fn resolve(grants: &Grants, origin: &Origin) -> Result<Vec<SocketAddr>, HttpError> {
    let addresses: Vec<SocketAddr> = match origin.host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, origin.port)],
        Err(_) => tokio::net::lookup_host((origin.host.as_str(), origin.port))
            .await
            .map_err(|e| HttpError::Connection(format!("cannot resolve {}: {e}", origin.host)))?
            .collect(),
    };
    if addresses.is_empty() {
        return Err(HttpError::Connection(format!(
            "{} has no addresses",
            origin.host
        )));
    }
    for address in &addresses {
        let ip = address.ip();
        if let Some(kind) = forbidden_kind(ip)
            && !grants.allows_private(ip)
        {
            let named = if origin.host.parse::<IpAddr>().is_ok() {
                format!("{ip} is a {kind} address")
            } else {
                format!("{} resolves to {ip}, a {kind} address", origin.host)
            };
            return Err(HttpError::ForbiddenAddress(format!(
                "{named}; plugins may not reach it unless [plugin.NAME.grants] private_networks names it"
            )));
        }
    }
    Ok(addresses)
}

/// One request on `connection`; puts the connection back into `pool` when it may be
/// reused (the answer was read whole and the server did not ask to close).
async fn exchange_on(
    limits: &HttpLimits,
    pool: &ConnectionPool,
    origin: &Origin,
    mut connection: Connection,
    request: hyper::Request<Full<Bytes>>,
    url: &url::Url,
) -> Result<Response, Failure> {
    let reused = connection.reused;
    let response = connection.sender.send_request(request).await.map_err(|e| {
        if e.is_parse() && e.to_string().contains("too large") {
            Failure::Other(HttpError::TooLarge(format!(
                "the response headers of {origin} are larger than {} KiB",
                limits.max_header_bytes.max(8192) >> 10
            )))
        } else if reused {
            Failure::BeforeAnswer(HttpError::Connection(format!("{origin}: {e}")))
        } else {
            Failure::Other(HttpError::Connection(format!("{origin}: {e}")))
        }
    })?;
    let close = response
        .headers()
        .get(header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("close"));
    let result = async {
        let status = response.status().as_u16();
        let headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let head_size: usize = headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
        if head_size > limits.max_header_bytes {
            return Err(HttpError::TooLarge(format!(
                "the response headers of {origin} are {head_size} bytes; the host accepts at most {}",
                limits.max_header_bytes
            )));
        }
        let declared = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let too_large = || {
            HttpError::TooLarge(format!(
                "the response body of {} is larger than {} bytes, the host's cap",
                display_url(url.as_str()),
                limits.max_response_bytes
            ))
        };
        if declared.is_some_and(|n| n > limits.max_response_bytes as u64) {
            return Err(too_large());
        }
        let body = Limited::new(response.into_body(), limits.max_response_bytes)
            .collect()
            .await
            .map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                    too_large()
                } else {
                    HttpError::Connection(format!("{origin}: reading the body failed: {e}"))
                }
            })?
            .to_bytes()
            .to_vec();
        Ok(Response {
            status,
            headers,
            body,
            url: display_url(url.as_str()),
        })
    }
    .await;
    if result.is_ok() && !close {
        pool.give(origin, connection);
    }
    result.map_err(Failure::Other)
}
