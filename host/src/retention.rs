//! Retention: finished runs, events and idempotency keys are deleted after configurable
//! periods, in transactions of at most 500 rows so the workers are never blocked for long.
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
}

/// One pruning pass, batch after batch until nothing is left to delete.
pub async fn prune(engine: &Engine, settings: &RetentionSettings) -> Result<Pruned, StoreError> {
    let now = engine.clock().now();
    let store = engine.store();
    let mut pruned = Pruned::default();
    loop {
        let n = store
            .prune_runs(now - settings.finished_runs, BATCH)
            .await?;
        pruned.runs += n;
        if n == 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    loop {
        let n = store.prune_events(now - settings.events, BATCH).await?;
        pruned.events += n;
        if n == 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    loop {
        let n = store
            .prune_idempotency_keys(now - settings.idempotency_keys, BATCH)
            .await?;
        pruned.idempotency_keys += n;
        if n == 0 {
            break;
        }
    }
    Ok(pruned)
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
