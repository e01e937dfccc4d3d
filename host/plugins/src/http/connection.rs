//! The connections behind a plugin's HTTP: new ones (TCP to a checked address, TLS
//! against the Web PKI roots for https, an HTTP/1.1 handshake), kept-alive ones in a
//! per-plugin [`ConnectionPool`], and one request on a connection with the response's
//! header and body caps.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header;
use tokio::net::TcpStream;

use super::{HttpError, HttpLimits, Response, display_url};
use crate::grants::Origin;

/// How long an idle connection is kept, and how many per origin and address.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_IDLE: usize = 4;

/// Idle keep-alive connections of one plugin, by origin and the address connected to.
#[derive(Default)]
pub struct ConnectionPool {
    idle: Mutex<HashMap<(Origin, SocketAddr), Vec<Connection>>>,
}

/// An open HTTP/1.1 connection; its driver task ends when it is dropped.
pub(super) struct Connection {
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
    pub(super) fn take(&self, origin: &Origin, addresses: &[SocketAddr]) -> Option<Connection> {
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

/// Why an exchange failed: before any answer came (a reused connection the server had
/// closed: worth one more try on a new one), or otherwise.
pub(super) enum Failure {
    BeforeAnswer(HttpError),
    Other(HttpError),
}

impl Failure {
    pub(super) fn into_error(self) -> HttpError {
        match self {
            Failure::BeforeAnswer(e) | Failure::Other(e) => e,
        }
    }
}

/// A new connection (TLS for https) to the first reachable of the checked `addresses`.
pub(super) async fn connect(
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

/// One request on `connection`; puts the connection back into `pool` when it may be
/// reused (the answer was read whole and the server did not ask to close).
pub(super) async fn exchange_on(
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
