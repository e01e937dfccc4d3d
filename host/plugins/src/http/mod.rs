//! Outbound HTTP for plugins (`kontor:plugin/http`), checked at every hop.
//!
//! For each request and each redirect: the origin must be granted; the host resolves
//! the name itself and refuses loopback, private, link-local, unique-local, metadata
//! and IPv4-mapped addresses unless `private_networks` names them (any refused address
//! in the answer refuses the whole name); it connects to exactly an address it checked,
//! so a second lookup cannot swap it; TLS is verified against the Web PKI roots. Header
//! and body sizes and the total time are capped.
//!
//! This file holds what a caller sees — [`HttpLimits`], [`Request`], [`Response`],
//! [`HttpError`] and [`send`] — and the pieces behind it are one file each:
//! `exchange` (checking the request, following redirects, one hop), `address_guard`
//! (resolving a name and refusing addresses a plugin may not reach: the SSRF guard) and
//! `connection` (kept-alive connections per plugin, [`ConnectionPool`], reused only
//! for the same origin and an address the current request's resolution approved again).

mod address_guard;
mod connection;
mod exchange;

use std::time::Duration;

use crate::grants::Grants;

pub use connection::ConnectionPool;

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
    /// Most redirects one exchange follows; one more fails it.
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
    match tokio::time::timeout(
        budget,
        exchange::exchange(grants, limits, pool, request, hops),
    )
    .await
    {
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
