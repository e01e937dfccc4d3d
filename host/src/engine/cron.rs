//! Cron triggers: start a run for every firing of a workflow's schedule, exactly once.
//!
//! Each firing is identified by (workflow, scheduled local time) and recorded in the same
//! transaction that starts its run, so a restart, a second scheduler or an October
//! daylight-saving hour that repeats cannot fire it twice. A cursor per workflow records
//! how far the schedule has been handled; after downtime, missed firings are caught up.
//! A workflow seen for the first time starts from now (no backfill). With several
//! processes on one PostgreSQL database, one of them leads cron (an advisory lock held on
//! its own connection); the others take over when it dies.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tracing::{info, warn};

use super::Engine;
use crate::store::StoreError;
use crate::workflow::Trigger;

/// At most this many firings of one schedule are caught up in one pass.
const MAX_CATCH_UP: usize = 1000;

/// Firings missed by more than this (the server was down) are skipped, not fired late:
/// a nightly report should not run 200 times after a long outage.
fn catch_up_window() -> chrono::Duration {
    chrono::Duration::hours(1)
}

impl Engine {
    /// Fires every cron firing due up to now. Returns the number of runs started.
    pub async fn fire_due_cron(&self) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let catalog = self.catalog();
        let mut started = 0;
        for workflow in catalog.valid() {
            let Trigger::Cron {
                schedule, input, ..
            } = &workflow.trigger
            else {
                continue;
            };
            let Some(mut cursor) = self.store.cron().cursor(&workflow.name).await? else {
                self.store
                    .cron()
                    .fire(&workflow.name, "", None, now, now)
                    .await?;
                continue;
            };
            let handled_from = cursor;
            for _ in 0..MAX_CATCH_UP {
                let Some(firing) = schedule.next_after(cursor) else {
                    break;
                };
                if firing.at > now {
                    break;
                }
                let local = firing.local.format("%Y-%m-%dT%H:%M:%S").to_string();
                if firing.at < now - catch_up_window() {
                    warn!(workflow = %workflow.name, local = %local, "missed cron firing skipped (older than the catch-up window)");
                    cursor = firing.at;
                    continue;
                }
                let input = match input {
                    Some(template) => {
                        let scope = crate::expr::Scope::new(firing.at, &catalog.calendars)
                            .with_budget(self.settings.limits.expression_budget);
                        match template.evaluate(&scope) {
                            Ok(v) => v,
                            Err(e) => {
                                warn!(workflow = %workflow.name, error = %e, "cron input failed; firing skipped");
                                self.store
                                    .cron()
                                    .fire(&workflow.name, &local, None, firing.at, now)
                                    .await?;
                                cursor = firing.at;
                                continue;
                            }
                        }
                    }
                    None => serde_json::json!({}),
                };
                let mut input = input;
                if let Some(object) = input.as_object_mut() {
                    object
                        .entry("scheduled_at")
                        .or_insert_with(|| serde_json::json!(firing.at));
                }
                let run = match self.new_run(
                    workflow,
                    input,
                    Some(format!("cron:{}:{local}", workflow.name)),
                ) {
                    Ok(mut run) => {
                        run.due_at = firing.at.max(run.due_at.min(now));
                        Some(run)
                    }
                    Err(e) => {
                        warn!(workflow = %workflow.name, error = %e, "cron run input is invalid; firing skipped");
                        None
                    }
                };
                if self
                    .store
                    .cron()
                    .fire(&workflow.name, &local, run.as_ref(), firing.at, now)
                    .await?
                {
                    info!(workflow = %workflow.name, local = %local, "cron fired");
                    metrics::counter!("kontor_runs_started_total", "workflow" => workflow.name.clone()).increment(1);
                    started += 1;
                }
                cursor = firing.at;
            }
            if cursor > handled_from {
                // Skipped firings move the cursor too, so they are not reconsidered.
                self.store
                    .cron()
                    .fire(&workflow.name, "", None, cursor, now)
                    .await?;
            }
        }
        if started > 0 {
            self.wake();
        }
        Ok(started)
    }

    /// The next time any cron schedule fires after `after`.
    fn next_cron_firing(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.catalog()
            .valid()
            .filter_map(|w| match &w.trigger {
                Trigger::Cron { schedule, .. } => schedule.next_after(after).map(|f| f.at),
                _ => None,
            })
            .min()
    }

    /// The cron loop of `kontor serve`.
    pub fn spawn_cron(
        self: &Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let engine = self.clone();
        tokio::spawn(async move {
            // Several processes on one database: only the holder of the cron lease fires.
            // Firings are idempotent by (workflow, local time) and the cursor only moves
            // forward, so a new leader continues where the old one stopped.
            let mut leader = crate::store::Leadership::new(crate::store::Role::Cron);
            while !*shutdown.borrow() {
                let clock_moved = engine.clock.changed().map(|n| n.notified());
                if leader.holds(&engine.store).await
                    && let Err(e) = engine.fire_due_cron().await
                {
                    warn!(error = %e, "cron pass failed");
                }
                let poll = engine.settings.poll_interval.max(StdDuration::from_secs(1));
                let now = engine.clock.now();
                let sleep = if engine.clock.is_manual() {
                    poll
                } else {
                    engine
                        .next_cron_firing(now)
                        .and_then(|t| (t - now).to_std().ok())
                        .unwrap_or(poll)
                        .min(poll)
                };
                match clock_moved {
                    Some(moved) => tokio::select! {
                        _ = moved => {}
                        _ = tokio::time::sleep(sleep) => {}
                        _ = shutdown.changed() => {}
                    },
                    None => tokio::select! {
                        _ = tokio::time::sleep(sleep) => {}
                        _ = shutdown.changed() => {}
                    },
                }
            }
        })
    }
}
