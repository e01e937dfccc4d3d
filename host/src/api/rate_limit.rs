//! Rate limits (`[http.rate_limits]`): so many requests per token on the API, and per
//! client address on the endpoints that need no token (unsubscribe pages, webhooks); over
//! the limit, 429 with `Retry-After`. GCRA from the `governor` crate, on Kontor's clock,
//! so tests drive it with the manual clock. Each process counts on its own (on PostgreSQL
//! with N processes behind a balancer, a client gets up to N times the rate).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use governor::clock::Clock as GovernorClock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};

use super::{ApiError, AppState};
use crate::clock::Clock;
use crate::config::{Rate, RateLimitConfig};

/// Kontor's clock as governor reads time: nanoseconds since the epoch.
#[derive(Debug, Clone)]
struct KontorClock(Arc<dyn Clock>);

impl GovernorClock for KontorClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        let nanos = self.0.now().timestamp_nanos_opt().unwrap_or_default();
        Nanos::from(u64::try_from(nanos).unwrap_or_default())
    }
}

type Keyed<K> = RateLimiter<K, HashMapStateStore<K>, KontorClock, NoOpMiddleware<Nanos>>;

/// The limiters of one process.
pub struct RateLimits {
    per_token: Option<Keyed<String>>,
    per_address: Option<Keyed<IpAddr>>,
    clock: KontorClock,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("per_token", &self.per_token.is_some())
            .field("per_address", &self.per_address.is_some())
            .finish()
    }
}

fn limiter<K: std::hash::Hash + Eq + Clone>(rate: Rate, clock: &KontorClock) -> Keyed<K> {
    let quota = Quota::with_period(rate.every)
        .expect("a rate's period is positive")
        .allow_burst(std::num::NonZeroU32::new(rate.burst).expect("a burst is at least 1"));
    RateLimiter::hashmap_with_clock(quota, clock.clone())
}

impl RateLimits {
    /// The limits `config` sets, counted on `clock`.
    pub fn new(config: &RateLimitConfig, clock: Arc<dyn Clock>) -> anyhow::Result<RateLimits> {
        let (api, public) = config.rates()?;
        let clock = KontorClock(clock);
        Ok(RateLimits {
            per_token: api.map(|rate| limiter(rate, &clock)),
            per_address: public.map(|rate| limiter(rate, &clock)),
            clock,
        })
    }

    /// No limits (tools and tests that are not about them).
    pub fn off() -> RateLimits {
        RateLimits {
            per_token: None,
            per_address: None,
            clock: KontorClock(Arc::new(crate::clock::SystemClock)),
        }
    }

    /// Counts one request of token `id`; how long to wait if it is over its limit.
    pub fn check_token(&self, id: &str) -> Result<(), Duration> {
        let Some(limiter) = &self.per_token else {
            return Ok(());
        };
        limiter
            .check_key(&id.to_string())
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Counts one request from `address`; how long to wait if it is over its limit.
    pub fn check_address(&self, address: IpAddr) -> Result<(), Duration> {
        let Some(limiter) = &self.per_address else {
            return Ok(());
        };
        limiter
            .check_key(&address)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Forgets tokens and addresses that are back to a full allowance, so many distinct
    /// clients over a day do not keep their entries (the server calls this every minute).
    pub fn forget_idle(&self) {
        if let Some(limiter) = &self.per_token {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(limiter) = &self.per_address {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// The 429 for a client that must wait `wait`.
pub fn too_many(who: &str, wait: Duration) -> ApiError {
    metrics::counter!("kontor_http_rate_limited_total", "by" => who.to_string()).increment(1);
    ApiError::TooManyRequests {
        message: format!(
            "too many requests from this {who}; try again in {} s (http.rate_limits)",
            wait.as_secs_f64().ceil().max(1.0) as u64
        ),
        retry_after: wait,
    }
}

/// The per-address limit of the routes that need no token. The address is the peer's
/// (behind a proxy, the proxy's); a request without one (in-process tests) counts as
/// one unknown client.
pub async fn per_address(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let address = request
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip().to_canonical())
        .unwrap_or(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED));
    state
        .rate_limits
        .check_address(address)
        .map_err(|wait| too_many("address", wait))?;
    Ok(next.run(request).await)
}
