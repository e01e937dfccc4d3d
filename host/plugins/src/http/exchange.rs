//! One exchange as a plugin asked for it: the request checked (method, URL without
//! credentials, headers the host does not own, body size), then hop after hop —
//! grant, address guard, a kept-alive or new connection — following redirects up to
//! the limit, dropping credentials when a redirect leaves the origin.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderName, HeaderValue};
use std::time::Instant;

use super::address_guard::resolve;
use super::connection::{ConnectionPool, Failure, connect, exchange_on};
use super::{Hop, HttpError, HttpLimits, Request, Response, display_url};
use crate::grants::{Grants, Origin};

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

pub(super) async fn exchange(
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
