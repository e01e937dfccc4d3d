//! Retention: finished runs, events, idempotency keys and outbox messages in a final
//! state (sent, failed, suppressed; after the `finished_runs` period) are deleted after
//! configurable periods, in transactions of at most 500 rows so the workers are never blocked for long.
//! Completed and cancelled runs are pruned; failed runs are kept until someone handles
//! them (a retry makes them run again, a cancel makes them prunable).

use std::sync::Arc;

use chrono::Duration;
use serde::Serialize;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::engine::Engine;
use crate::store::StoreError;

/// Rows deleted per transaction.
const BATCH: u32 = 500;

#[derive(Debug, Clone)]
pub struct RetentionSettings {
    pub finished_runs: Duration,
    pub events: Duration,
    pub idempotency_keys: Duration,
    /// How often the pruning pass runs.
    pub interval: std::time::Duration,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct Pruned {
    pub runs: u64,
    pub events: u64,
    pub idempotency_keys: u64,
    pub messages: u64,
}

/// One pruning pass, batch after batch until nothing is left to delete.
pub async fn prune(engine: &Engine, settings: &RetentionSettings) -> Result<Pruned, StoreError> {
    let now = engine.clock().now();
    let store = engine.store();
    Ok(Pruned {
        runs: until_done(|| {
            store
                .retention()
                .prune_runs(now - settings.finished_runs, BATCH)
        })
        .await?,
        events: until_done(|| store.retention().prune_events(now - settings.events, BATCH)).await?,
        idempotency_keys: until_done(|| {
            store
                .retention()
                .prune_idempotency_keys(now - settings.idempotency_keys, BATCH)
        })
        .await?,
        messages: until_done(|| {
            store
                .retention()
                .prune_outbox(now - settings.finished_runs, BATCH)
        })
        .await?,
    })
}

/// Runs one pruning batch after another, letting the workers in between, until a batch
/// deletes nothing; returns the total.
async fn until_done<F, Fut>(mut batch: F) -> Result<u64, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64, StoreError>>,
{
    let mut total = 0;
    loop {
        let n = batch().await?;
        if n == 0 {
            return Ok(total);
        }
        total += n;
        tokio::task::yield_now().await;
    }
}

/// The pruning loop of `kontor serve`.
pub fn spawn(
    engine: Arc<Engine>,
    settings: RetentionSettings,
    mut stopped: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match prune(&engine, &settings).await {
                Ok(p) if p != Pruned::default() => info!(
                    runs = p.runs,
                    events = p.events,
                    keys = p.idempotency_keys,
                    messages = p.messages,
                    "retention: pruned"
                ),
                Ok(_) => {}
                Err(e) => warn!(error = %e, "retention pass failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(settings.interval) => {}
                _ = stopped.changed() => return,
            }
        }
    })
}
