//! What a plugin may use of the outside world, each only as far as it is granted in
//! `[plugin.NAME.grants]`: outbound [`http`], [`secrets`], its own [`kv`] store, and its
//! [`config`].
//!
//! Compiled natively (in `cargo test`), these talk to in-memory doubles that
//! [`crate::testing`] fills: secrets and configuration you set, a key-value map, and an
//! HTTP that answers every request with a connection error.

use crate::bindings::kontor::plugin::types::CapabilityError as WitCapabilityError;

/// Why the host refused or could not serve a capability call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapabilityError {
    /// Not granted. The host also fails the step, whatever the plugin does next.
    Denied(String),
    /// A passing problem (storage, network): worth a retry.
    Unavailable(String),
    /// Malformed or over a limit.
    Invalid(String),
}

impl std::fmt::Display for CapabilityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CapabilityError::Denied(m) => write!(f, "denied: {m}"),
            CapabilityError::Unavailable(m) => write!(f, "unavailable: {m}"),
            CapabilityError::Invalid(m) => write!(f, "invalid: {m}"),
        }
    }
}

impl std::error::Error for CapabilityError {}

impl From<CapabilityError> for crate::Error {
    /// `unavailable` is retried; a refusal or a bad request is not.
    fn from(e: CapabilityError) -> Self {
        match e {
            CapabilityError::Unavailable(_) => crate::Error::Retryable(e.to_string()),
            _ => crate::Error::Fatal(e.to_string()),
        }
    }
}

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
fn from_wit(e: WitCapabilityError) -> CapabilityError {
    match e {
        WitCapabilityError::Denied(m) => CapabilityError::Denied(m),
        WitCapabilityError::Unavailable(m) => CapabilityError::Unavailable(m),
        WitCapabilityError::Invalid(m) => CapabilityError::Invalid(m),
    }
}

/// The in-memory doubles of native builds (set through [`crate::testing`]).
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) mod native {
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    thread_local! {
        pub static CONFIG: RefCell<serde_json::Value> = RefCell::new(serde_json::json!({}));
        pub static SECRETS: RefCell<BTreeMap<String, String>> = RefCell::default();
        pub static KV: RefCell<BTreeMap<String, Vec<u8>>> = RefCell::default();
    }
}

/// The plugin's configuration (`[plugin.NAME.config]`).
pub mod config {
    /// The whole configuration as JSON (an object; `{}` when none is set).
    pub fn all() -> serde_json::Value {
        #[cfg(target_arch = "wasm32")]
        {
            serde_json::from_str(&crate::bindings::kontor::plugin::config::get_all())
                .unwrap_or_else(|_| serde_json::json!({}))
        }
        #[cfg(not(target_arch = "wasm32"))]
        super::native::CONFIG.with(|c| c.borrow().clone())
    }

    /// One top-level value: a string as it is, anything else as JSON text.
    pub fn get(key: &str) -> Option<String> {
        #[cfg(target_arch = "wasm32")]
        {
            crate::bindings::kontor::plugin::config::get(key)
        }
        #[cfg(not(target_arch = "wasm32"))]
        super::native::CONFIG.with(|c| {
            c.borrow().get(key).map(|v| match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        })
    }

    /// The configuration read into `T` (a missing configuration reads as `{}`).
    pub fn parse<T: serde::de::DeserializeOwned>() -> Result<T, crate::Error> {
        serde_json::from_value(all())
            .map_err(|e| crate::Error::fatal(format!("invalid plugin configuration: {e}")))
    }
}

/// Secrets from Kontor's encrypted store, by a name granted in `grants.secrets`.
pub mod secrets {
    use super::CapabilityError;

    /// The secret `name`. Asking for a name that is not granted fails the step.
    pub fn get(name: &str) -> Result<String, CapabilityError> {
        #[cfg(target_arch = "wasm32")]
        {
            crate::bindings::kontor::plugin::secrets::get(name).map_err(super::from_wit)
        }
        #[cfg(not(target_arch = "wasm32"))]
        super::native::SECRETS.with(|s| {
            s.borrow()
                .get(name)
                .cloned()
                .ok_or_else(|| CapabilityError::Denied(format!("secret `{name}` is not granted")))
        })
    }
}

/// The plugin installation's key-value store (`grants.kv = true`). Writes of a call
/// commit with the step's result and are discarded when the step fails.
pub mod kv {
    use super::CapabilityError;

    /// The value of `key`: this call's own write if there is one, else the committed
    /// value; `None` when it is not set.
    pub fn get(key: &str) -> Result<Option<Vec<u8>>, CapabilityError> {
        #[cfg(target_arch = "wasm32")]
        {
            crate::bindings::kontor::plugin::kv::get(key).map_err(super::from_wit)
        }
        #[cfg(not(target_arch = "wasm32"))]
        Ok(super::native::KV.with(|kv| kv.borrow().get(key).cloned()))
    }

    /// Sets `key` (1 to 256 bytes) to `value` (at most 256 KiB), committed with the step.
    pub fn set(key: &str, value: &[u8]) -> Result<(), CapabilityError> {
        #[cfg(target_arch = "wasm32")]
        {
            crate::bindings::kontor::plugin::kv::set(key, value).map_err(super::from_wit)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            super::native::KV.with(|kv| kv.borrow_mut().insert(key.into(), value.to_vec()));
            Ok(())
        }
    }

    /// Deletes `key`, committed with the step.
    pub fn delete(key: &str) -> Result<(), CapabilityError> {
        #[cfg(target_arch = "wasm32")]
        {
            crate::bindings::kontor::plugin::kv::delete(key).map_err(super::from_wit)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            super::native::KV.with(|kv| kv.borrow_mut().remove(key));
            Ok(())
        }
    }

    /// A JSON value stored under `key`.
    pub fn get_json<T: serde::de::DeserializeOwned>(
        key: &str,
    ) -> Result<Option<T>, CapabilityError> {
        match get(key)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                CapabilityError::Invalid(format!(
                    "the value of `{key}` is not the JSON expected: {e}"
                ))
            }),
        }
    }

    /// Stores `value` as JSON under `key` (read it back with [`get_json`]).
    pub fn set_json<T: serde::Serialize>(key: &str, value: &T) -> Result<(), CapabilityError> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| CapabilityError::Invalid(format!("cannot write `{key}` as JSON: {e}")))?;
        set(key, &bytes)
    }
}

/// Outbound HTTP to the origins granted in `grants.http`.
pub mod http {
    use crate::bindings::kontor::plugin::http as wit;

    /// A request; build it with [`Request::get`] or [`Request::new`].
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Request {
        /// GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS.
        pub method: String,
        /// An absolute http or https URL on a granted origin, without credentials.
        pub url: String,
        /// Headers as (name, value); the host sets `host`, `content-length` and the
        /// other framing headers itself and refuses them here.
        pub headers: Vec<(String, String)>,
        /// The request body, if any.
        pub body: Option<Vec<u8>>,
        /// Time for the whole exchange, redirects included; the host caps it.
        pub timeout_ms: Option<u32>,
    }

    impl Request {
        /// A request with `method` to `url`, without headers or body.
        pub fn new(method: &str, url: impl Into<String>) -> Request {
            Request {
                method: method.to_string(),
                url: url.into(),
                headers: Vec::new(),
                body: None,
                timeout_ms: None,
            }
        }

        /// A GET request to `url`.
        pub fn get(url: impl Into<String>) -> Request {
            Request::new("GET", url)
        }

        /// A POST request to `url`; add a body with [`Request::body`] or [`Request::json`].
        pub fn post(url: impl Into<String>) -> Request {
            Request::new("POST", url)
        }

        /// Adds a header; read credentials for it from [`crate::secrets`].
        pub fn header(mut self, name: &str, value: impl Into<String>) -> Request {
            self.headers.push((name.to_string(), value.into()));
            self
        }

        /// Sets the body, as it is sent.
        pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
            self.body = Some(body.into());
            self
        }

        /// A JSON body with its content type.
        pub fn json(self, value: &serde_json::Value) -> Request {
            self.header("content-type", "application/json")
                .body(value.to_string())
        }

        /// Asks for less time than the host's limit.
        pub fn timeout_ms(mut self, ms: u32) -> Request {
            self.timeout_ms = Some(ms);
            self
        }

        /// Sends the request through the host.
        pub fn send(self) -> Result<Response, HttpError> {
            send(self)
        }
    }

    /// An answer from the server (any status: a 404 or a 500 is an answer, not an
    /// [`HttpError`]).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Response {
        /// The HTTP status code.
        pub status: u16,
        /// Headers as (lowercase name, value); see [`Response::header`].
        pub headers: Vec<(String, String)>,
        /// The body, whole (the host caps its size).
        pub body: Vec<u8>,
        /// The URL that answered, after redirects.
        pub url: String,
    }

    impl Response {
        /// The first header of that name (case-insensitive).
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }

        /// The body as text (invalid UTF-8 replaced).
        pub fn text(&self) -> String {
            String::from_utf8_lossy(&self.body).into_owned()
        }

        /// The body read as JSON into `T`; a body that does not fit fails the step.
        pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, crate::Error> {
            serde_json::from_slice(&self.body).map_err(|e| {
                crate::Error::fatal(format!(
                    "the answer of {} is not the JSON expected: {e}",
                    self.url
                ))
            })
        }
    }

    /// Why a request got no answer. [`HttpError::NotGranted`] and
    /// [`HttpError::ForbiddenAddress`] are refusals: the host fails the step.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum HttpError {
        /// The origin (scheme, host, port) is not among the plugin's grants.
        NotGranted(String),
        /// The URL names, or its name resolves to, an address the plugin may not reach
        /// (loopback, private, link-local, unique-local, metadata, IPv4-mapped).
        ForbiddenAddress(String),
        /// The request body, or the response's headers or body, are over the host's cap.
        TooLarge(String),
        /// No complete answer within the time.
        Timeout(String),
        /// DNS, connection or TLS failed.
        Connection(String),
        /// The request itself is malformed (method, URL, headers).
        InvalidRequest(String),
        /// More redirects than the host follows.
        TooManyRedirects(String),
    }

    impl HttpError {
        /// The WIT name of the error (`not-granted`, `timeout`, …), for logs and metrics.
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

        fn message(&self) -> &str {
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

    impl std::error::Error for HttpError {}

    impl From<HttpError> for crate::Error {
        /// Timeouts and connection failures are retried; the rest fail the step.
        fn from(e: HttpError) -> Self {
            match e {
                HttpError::Timeout(_) | HttpError::Connection(_) => {
                    crate::Error::Retryable(e.to_string())
                }
                _ => crate::Error::Fatal(e.to_string()),
            }
        }
    }

    /// Sends `request` through the host, which follows redirects and checks every hop
    /// against the grants. Natively (in `cargo test`) every request fails with
    /// [`HttpError::Connection`].
    pub fn send(request: Request) -> Result<Response, HttpError> {
        let request = wit::Request {
            method: request.method,
            url: request.url,
            headers: request.headers,
            body: request.body,
            timeout_ms: request.timeout_ms,
        };
        #[cfg(target_arch = "wasm32")]
        let result = wit::send(&request);
        #[cfg(not(target_arch = "wasm32"))]
        let result: Result<wit::Response, wit::HttpError> = Err(wit::HttpError::Connection(
            format!("no network outside the host ({})", request.url),
        ));
        result
            .map(|r| Response {
                status: r.status,
                headers: r.headers,
                body: r.body,
                url: r.url,
            })
            .map_err(|e| match e {
                wit::HttpError::NotGranted(m) => HttpError::NotGranted(m),
                wit::HttpError::ForbiddenAddress(m) => HttpError::ForbiddenAddress(m),
                wit::HttpError::TooLarge(m) => HttpError::TooLarge(m),
                wit::HttpError::Timeout(m) => HttpError::Timeout(m),
                wit::HttpError::Connection(m) => HttpError::Connection(m),
                wit::HttpError::InvalidRequest(m) => HttpError::InvalidRequest(m),
                wit::HttpError::TooManyRedirects(m) => HttpError::TooManyRedirects(m),
            })
    }
}
