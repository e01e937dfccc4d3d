//! The customer's 360° view from the ERP: master data, contacts, products owned (serial
//! numbers, next maintenance), contracts, payment terms and open items — read through
//! the connector named in `[erp] connector`, five calls at once, and kept for
//! `[erp] overview_cache` so an agent paging through a ticket does not ask the ERP again.
//!
//! A part the connector cannot deliver (a function it does not support, a passing
//! failure) leaves that part `null` and names it in `problems`; such an answer is not
//! cached. Only the customer lookup itself decides between 404, 502 and 503.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use kontor_plugins::{CallError, Invocation, PluginRegistry};
use serde::Deserialize;
use serde_json::{Value as Json, json};

/// `[erp]` in kontor.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ErpConfig {
    /// The `erp-connector` plugin the customer overview reads through, e.g. `odata-erp`.
    pub connector: Option<String>,
    /// How long an overview is reused (`60s`; `0s` turns the cache off).
    pub overview_cache: String,
}

impl Default for ErpConfig {
    fn default() -> Self {
        ErpConfig {
            connector: None,
            overview_cache: "60s".into(),
        }
    }
}

/// Why there is no overview.
#[derive(Debug, thiserror::Error)]
pub enum OverviewError {
    #[error(
        "no ERP connector is configured: set `connector` in the [erp] table of kontor.toml (e.g. connector = \"odata-erp\")"
    )]
    NotConfigured,
    #[error("plugins are not enabled in this process")]
    NoPlugins,
    #[error("the ERP has no customer `{0}`")]
    NotFound(String),
    /// A passing failure: ask again later (after `retry_after` when the ERP said so).
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after: Option<Duration>,
    },
    /// The connector or the ERP failed for good (bad credentials, a mapping problem).
    #[error("{0}")]
    Failed(String),
}

const MAX_CACHED: usize = 10_000;

pub struct Overviews {
    connector: Option<String>,
    ttl: Duration,
    cache: Mutex<HashMap<String, (Instant, Arc<Json>)>>,
}

/// The parts besides the customer: (key in the answer, connector function).
const PARTS: [(&str, &str); 4] = [
    ("contacts", "contacts"),
    ("products", "purchases"),
    ("contracts", "contracts"),
    ("account", "customer-account"),
];

impl Overviews {
    pub fn new(config: &ErpConfig) -> anyhow::Result<Overviews> {
        // Zero is allowed here: `0s` turns the cache off.
        let ttl = kontor_time::parse_duration(&config.overview_cache)
            .map_err(|e| e.to_string())
            .and_then(|d| d.to_std().map_err(|_| "it is negative".to_string()))
            .map_err(|e| anyhow::anyhow!("erp.overview_cache: {e}"))?;
        Ok(Overviews {
            connector: config.connector.clone(),
            ttl,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The connector's name, when one is configured.
    pub fn connector(&self) -> Option<&str> {
        self.connector.as_deref()
    }

    /// The overview of customer `id`; from the cache unless `refresh` or it expired.
    pub async fn get(
        &self,
        plugins: Option<&Arc<PluginRegistry>>,
        id: &str,
        refresh: bool,
    ) -> Result<Json, OverviewError> {
        let connector = self
            .connector
            .as_deref()
            .ok_or(OverviewError::NotConfigured)?;
        if !refresh && let Some(cached) = self.cached(id) {
            return Ok(cached);
        }
        let registry = plugins.ok_or(OverviewError::NoPlugins)?;
        let plugin = registry
            .get(connector)
            .map_err(|e| OverviewError::Failed(e.to_string()))?;
        let call = |part: &'static str, function: &'static str| {
            let plugin = plugin.clone();
            let args =
                json!({ if function == "customer-by-id" { "id" } else { "customer_id" }: id });
            async move {
                let invocation = Invocation {
                    run_id: "api".into(),
                    workflow: "customer-overview".into(),
                    step: part.into(),
                    attempt: 1,
                };
                plugin
                    .call_connector(&invocation, function, &args)
                    .await
                    .map(|report| report.output)
            }
        };
        let fetched_at: DateTime<Utc> = Utc::now();
        let customer = match call("customer", "customer-by-id").await {
            Ok(Json::Null) => return Err(OverviewError::NotFound(id.to_string())),
            Ok(customer) => customer,
            Err(failure) => {
                let message = format!(
                    "connector `{connector}` could not look the customer up ({}): {}",
                    failure.error.kind(),
                    failure.error
                );
                return Err(
                    if failure.error.is_retryable()
                        || matches!(failure.error, CallError::Timeout(_))
                    {
                        OverviewError::Unavailable {
                            message,
                            retry_after: failure.retry_after,
                        }
                    } else {
                        OverviewError::Failed(message)
                    },
                );
            }
        };
        let results = join_all(PARTS.map(|(part, function)| call(part, function))).await;
        let mut overview = json!({
            "customer": customer,
            "contacts": null,
            "products": null,
            "contracts": null,
            "account": null,
        });
        let mut problems = Vec::new();
        for ((part, function), result) in PARTS.iter().zip(results) {
            match result {
                Ok(value) => overview[*part] = value,
                Err(failure) => problems.push(json!({
                    "part": part,
                    "function": function,
                    "kind": failure.error.kind(),
                    "message": failure.error.to_string(),
                })),
            }
        }
        summarise(&mut overview);
        let cacheable = problems.is_empty() && !self.ttl.is_zero();
        overview["problems"] = Json::Array(problems);
        overview["source"] = json!({
            "connector": connector,
            "fetched_at": fetched_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "cached": false,
        });
        if cacheable {
            self.remember(id, &overview);
        }
        Ok(overview)
    }

    fn cached(&self, id: &str) -> Option<Json> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let (at, overview) = cache.get(id)?;
        if at.elapsed() >= self.ttl {
            return None;
        }
        let mut overview = (**overview).clone();
        overview["source"]["cached"] = json!(true);
        Some(overview)
    }

    fn remember(&self, id: &str, overview: &Json) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_CACHED {
            let ttl = self.ttl;
            cache.retain(|_, (at, _)| at.elapsed() < ttl);
            if cache.len() >= MAX_CACHED
                && let Some(oldest) = cache
                    .iter()
                    .min_by_key(|(_, (at, _))| *at)
                    .map(|(k, _)| k.clone())
            {
                cache.remove(&oldest);
            }
        }
        cache.insert(id.to_string(), (Instant::now(), Arc::new(overview.clone())));
    }
}

/// Adds what an agent looks for first: the total still open and the next maintenance due.
fn summarise(overview: &mut Json) {
    if let Some(items) = overview["account"]["open_items"].as_array() {
        let total: i64 = items.iter().filter_map(|i| i["open_cents"].as_i64()).sum();
        overview["account"]["open_total_cents"] = json!(total);
    }
    let next = overview["products"].as_array().and_then(|products| {
        products
            .iter()
            .filter_map(|p| p["next_maintenance_on"].as_str())
            .min()
            .map(str::to_string)
    });
    overview["next_maintenance_on"] = json!(next);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_adds_open_total_and_the_next_maintenance() {
        let mut overview = json!({
            "account": {"open_items": [{"open_cents": 1050}, {"open_cents": 250}]},
            "products": [
                {"next_maintenance_on": "2027-03-01"},
                {"next_maintenance_on": null},
                {"next_maintenance_on": "2026-12-15"}
            ]
        });
        summarise(&mut overview);
        assert_eq!(overview["account"]["open_total_cents"], 1300);
        assert_eq!(overview["next_maintenance_on"], "2026-12-15");
    }

    #[tokio::test]
    async fn without_a_connector_the_error_says_what_to_configure() {
        let overviews = Overviews::new(&ErpConfig::default()).unwrap();
        let e = overviews.get(None, "K-1", false).await.unwrap_err();
        assert!(e.to_string().contains("[erp]"), "{e}");
        let off = ErpConfig {
            connector: None,
            overview_cache: "0s".into(),
        };
        assert_eq!(Overviews::new(&off).unwrap().ttl, Duration::ZERO);
        let bad = ErpConfig {
            connector: None,
            overview_cache: "soon".into(),
        };
        assert!(
            Overviews::new(&bad)
                .err()
                .unwrap()
                .to_string()
                .contains("erp.overview_cache")
        );
    }
}
