//! The worker side of the engine: claim a batch of due jobs, execute each step (calling
//! plugins outside the transaction), commit the outcomes, and sleep until the next job
//! is due or new work is announced.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use serde_json::Value as Json;
use tokio::sync::watch;
use tracing::{Instrument, debug, info_span, warn};

use super::{Engine, execute};
use crate::run::Job;
use crate::store::StoreError;
use crate::workflow::{Catalog, Workflow};

#[allow(clippy::large_enum_variant)] // the common case is `Done`; boxing it costs more
enum Begun {
    Done(crate::run::JobOutcome),
    Call(Box<Calling>),
}

/// What a plugin call gave: its result, what it logged, its key-value writes.
type PluginResult = (
    Result<Json, crate::steps::StepError>,
    Option<Json>,
    Vec<crate::run::KvWrite>,
);

/// A job waiting for a plugin call, with what it needs to resume.
struct Calling {
    call: Box<execute::PendingCall>,
    workflow: Arc<Workflow>,
    catalog: Arc<Catalog>,
    now: chrono::DateTime<chrono::Utc>,
    cancel: Option<Arc<std::sync::atomic::AtomicBool>>,
}

/// Runs pure step execution — expressions, templates — without starving the async
/// threads: on the multi-threaded runtime `kontor serve` uses, `block_in_place` first
/// hands this thread's other tasks (the API's, other workers') to a fresh thread, so a
/// chain of costly expressions never holds up `/healthz`. On a current-thread runtime
/// (tests, benches) it runs in place.
fn off_async_threads<T>(work: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|handle| handle.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

impl Engine {
    /// Claims one batch of due jobs, executes them and commits their outcomes in one
    /// transaction. Returns how many jobs were handled.
    pub async fn run_batch(&self) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let jobs = self
            .store
            .jobs()
            .claim(
                &self.owner,
                now,
                chrono::Utc::now(),
                self.settings.lease,
                self.settings.batch_size,
            )
            .await?;
        if jobs.is_empty() {
            return Ok(0);
        }
        let ids: Vec<&str> = jobs.iter().map(|j| j.run_id.as_str()).collect();
        let in_flight = self.in_flight.enter(&ids);
        let runs: HashMap<String, crate::run::RunState> = self
            .store
            .runs()
            .load(&ids)
            .await?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        // The jobs' workflow versions first (loaded once per version); then the pure steps
        // of every job in one stretch off the async threads (each hand-off costs thread
        // switches); jobs that stopped at a plugin call then make their calls
        // concurrently, so one slow plugin does not hold up the others.
        let mut prepared = Vec::with_capacity(jobs.len());
        for job in &jobs {
            prepared.push(self.prepare(job, runs.get(&job.run_id)).await);
        }
        let catalog = self.catalog();
        let now = self.clock.now();
        let begun: Vec<(Begun, tracing::Span)> = off_async_threads(|| {
            jobs.iter()
                .zip(prepared)
                .map(|(job, prepared)| {
                    let run = runs.get(&job.run_id);
                    let span = info_span!(
                        "job",
                        run_id = %job.run_id,
                        workflow = run.map(|r| r.workflow.as_str()).unwrap_or_default(),
                        step = %job.step,
                        kind = job.kind.as_str(),
                        attempt = job.attempt
                    );
                    let started = std::time::Instant::now();
                    let begun = span.in_scope(|| match (prepared, run) {
                        (Ok(workflow), Some(run)) => {
                            let cancel = in_flight.flag(&job.run_id).cloned();
                            self.execute(job, run, workflow, &catalog, now, cancel)
                        }
                        (Err(outcome), _) => Begun::Done(outcome),
                        (Ok(_), None) => Begun::Done(dropped(job)),
                    });
                    metrics::histogram!("kontor_job_duration_seconds")
                        .record(started.elapsed().as_secs_f64());
                    (begun, span)
                })
                .collect()
        });
        let mut outcomes: Vec<Option<crate::run::JobOutcome>> = Vec::with_capacity(jobs.len());
        let mut calls = Vec::new();
        for (i, (begun, span)) in begun.into_iter().enumerate() {
            match begun {
                Begun::Done(outcome) => outcomes.push(Some(outcome)),
                Begun::Call(calling) => {
                    outcomes.push(None);
                    if let Some(run) = runs.get(&jobs[i].run_id) {
                        calls.push((i, calling, run, span));
                    }
                }
            }
        }
        // The calls of the batch at once; then the steps after them, all in one stretch
        // off the async threads; a chain that reaches another call goes round again.
        while !calls.is_empty() {
            let results =
                futures_util::future::join_all(calls.iter().map(|(_, calling, run, span)| {
                    self.call_plugin(&calling.call, run)
                        .instrument(span.clone())
                }))
                .await;
            calls = off_async_threads(|| {
                let mut again = Vec::new();
                for ((i, calling, run, span), result) in calls.into_iter().zip(results) {
                    match span.in_scope(|| self.resume(*calling, run, result)) {
                        Ok(outcome) => outcomes[i] = Some(outcome),
                        Err(next) => again.push((i, next, run, span)),
                    }
                }
                again
            });
        }
        let outcomes: Vec<crate::run::JobOutcome> = outcomes
            .into_iter()
            .map(|o| o.expect("every job has an outcome"))
            .collect();
        let started = std::time::Instant::now();
        let outcomes: std::sync::Arc<[crate::run::JobOutcome]> = outcomes.into();
        let applied = self
            .store
            .commit(&self.owner, outcomes.clone(), self.clock.now())
            .await?;
        metrics::histogram!("kontor_commit_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        for (outcome, applied) in outcomes.iter().zip(&applied) {
            if !*applied {
                continue;
            }
            let workflow = runs
                .get(&outcome.run_id)
                .map(|r| r.workflow.clone())
                .unwrap_or_default();
            let retries = outcome
                .steps
                .iter()
                .filter(|s| s.status == crate::run::StepStatus::Retrying)
                .count();
            if retries > 0 {
                metrics::counter!("kontor_step_retries_total", "workflow" => workflow.clone())
                    .increment(retries as u64);
            }
            for child in &outcome.children {
                metrics::counter!("kontor_runs_started_total", "workflow" => child.workflow.clone()).increment(1);
            }
            if let Some(update) = outcome.run.as_ref().filter(|r| r.status.is_finished()) {
                metrics::counter!("kontor_runs_finished_total", "workflow" => workflow, "status" => update.status.as_str())
                    .increment(1);
                let _ = self.finished.send(outcome.run_id.clone());
            }
        }
        let lost = applied.iter().filter(|a| !**a).count();
        if lost > 0 {
            warn!(
                lost,
                "jobs were taken over by another worker before their commit"
            );
        }
        self.wake();
        Ok(jobs.len())
    }

    /// The workflow version a job runs on; or, for a job that will not run (its run is
    /// gone or finished, or its version cannot be loaded), the outcome that ends it.
    async fn prepare(
        &self,
        job: &Job,
        run: Option<&crate::run::RunState>,
    ) -> Result<Arc<Workflow>, crate::run::JobOutcome> {
        let Some(run) = run else {
            warn!("job of a missing run; dropping it");
            return Err(dropped(job));
        };
        if run.status.is_finished() {
            debug!("run already finished; dropping a stale job");
            return Err(dropped(job));
        }
        self.version(&run.version).await.map_err(|message| {
            warn!(%message, "cannot load the run's workflow version");
            // Fail the run rather than retry forever.
            crate::run::JobOutcome {
                job_id: job.id,
                run_id: job.run_id.clone(),
                parent_id: run.parent_id.clone(),
                run: Some(crate::run::RunUpdate {
                    status: crate::run::RunStatus::Failed,
                    context: run.context.clone(),
                    current_step: Some(job.step.clone()),
                    output: None,
                    error: Some(message),
                    step_count: run.step_count,
                }),
                ..Default::default()
            }
        })
    }

    /// Executes a job's pure steps, up to the end of the chain or a plugin call.
    fn execute(
        &self,
        job: &Job,
        run: &crate::run::RunState,
        workflow: Arc<Workflow>,
        catalog: &Arc<Catalog>,
        now: chrono::DateTime<chrono::Utc>,
        cancel: Option<Arc<std::sync::atomic::AtomicBool>>,
    ) -> Begun {
        let executor = execute::Executor {
            workflow: &workflow,
            catalog,
            calendars: &catalog.calendars,
            limits: &self.settings.limits,
            now,
            cancel: cancel.as_ref(),
        };
        match executor.execute(job, run) {
            execute::Execution::Done(outcome) => Begun::Done(outcome),
            execute::Execution::Call(call) => Begun::Call(Box::new(Calling {
                call,
                now,
                workflow: workflow.clone(),
                catalog: catalog.clone(),
                cancel: cancel.clone(),
            })),
        }
    }

    /// Goes on with a job after its plugin call: its outcome, or the next call its chain
    /// stopped at.
    fn resume(
        &self,
        calling: Calling,
        run: &crate::run::RunState,
        (result, log, kv_writes): PluginResult,
    ) -> Result<crate::run::JobOutcome, Box<Calling>> {
        let Calling {
            call,
            workflow,
            catalog,
            now,
            cancel,
        } = calling;
        let executor = execute::Executor {
            workflow: &workflow,
            catalog: &catalog,
            calendars: &catalog.calendars,
            limits: &self.settings.limits,
            now,
            cancel: cancel.as_ref(),
        };
        match executor.resume(run, call, result, log, kv_writes) {
            execute::Execution::Done(outcome) => Ok(outcome),
            execute::Execution::Call(next) => Err(Box::new(Calling {
                call: next,
                workflow: workflow.clone(),
                catalog: catalog.clone(),
                now,
                cancel: cancel.clone(),
            })),
        }
    }

    /// Calls the plugin a `plugin` step names, in the sandbox; returns its result and
    /// what it logged.
    async fn call_plugin(
        &self,
        call: &execute::PendingCall,
        run: &crate::run::RunState,
    ) -> PluginResult {
        if let Some(assign) = &call.assign {
            return (self.assign(assign, run).await, None, Vec::new());
        }
        let plugin = match self
            .plugins
            .as_ref()
            .ok_or_else(|| "plugins are not enabled in this process".to_string())
            .and_then(|registry| registry.get(&call.plugin).map_err(|e| e.to_string()))
        {
            Ok(plugin) => plugin,
            Err(message) => {
                let error = crate::steps::StepError {
                    message,
                    retryable: false,
                    retry_after: None,
                };
                return (Err(error), None, Vec::new());
            }
        };
        let invocation = kontor_plugins::Invocation {
            run_id: run.id.clone(),
            workflow: run.workflow.clone(),
            step: call.step.clone(),
            attempt: call.attempt,
        };
        let span = tracing::debug_span!("plugin", plugin = %call.plugin, step = %call.step);
        let result = match &call.function {
            None => plugin.call(&invocation, &call.input).instrument(span).await,
            Some(function) => {
                plugin
                    .call_connector(&invocation, function, &call.input)
                    .instrument(span)
                    .await
            }
        };
        let log = |lines: &[kontor_plugins::LogLine]| {
            (!lines.is_empty()).then(|| serde_json::to_value(lines).unwrap_or_default())
        };
        match result {
            Ok(report) => {
                metrics::histogram!("kontor_plugin_call_duration_seconds", "plugin" => call.plugin.clone())
                    .record(report.duration.as_secs_f64());
                let kv_writes = report
                    .kv_writes
                    .into_iter()
                    .map(|w| crate::run::KvWrite {
                        plugin: w.plugin,
                        key: w.key,
                        value: w.value,
                    })
                    .collect();
                (Ok(report.output), log(&report.logs), kv_writes)
            }
            Err(failure) => {
                metrics::histogram!("kontor_plugin_call_duration_seconds", "plugin" => call.plugin.clone())
                    .record(failure.duration.as_secs_f64());
                metrics::counter!("kontor_plugin_failures_total", "plugin" => call.plugin.clone(), "kind" => failure.error.kind())
                    .increment(1);
                warn!(plugin = %call.plugin, kind = failure.error.kind(), error = %failure.error, "plugin call failed");
                let what = match &call.function {
                    Some(f) => format!("connector `{}` call `{f}`", call.plugin),
                    None => format!("plugin `{}`", call.plugin),
                };
                let error = crate::steps::StepError {
                    message: format!(
                        "{what} failed ({}): {}",
                        failure.error.kind(),
                        failure.error
                    ),
                    retryable: failure.error.is_retryable(),
                    retry_after: failure.retry_after,
                };
                (Err(error), log(&failure.logs), Vec::new())
            }
        }
    }

    /// Assigns a lead for a `route` step, in the store (see [`crate::store::leads`]).
    async fn assign(
        &self,
        call: &crate::crm::assignment::AssignCall,
        run: &crate::run::RunState,
    ) -> Result<Json, crate::steps::StepError> {
        let request = crate::store::leads::RouteRequest {
            key: &call.key,
            lead: &call.lead,
            team: &call.team,
            routing: call.routing.as_ref(),
            score: call.score.as_ref(),
            account_owner: call.account_owner.as_deref(),
            reassign: call.reassign,
            run_id: &run.id,
            now: self.clock.now(),
        };
        self.store.leads().route(&request).await.map_err(|e| {
            let retryable = !matches!(e, StoreError::Invalid(_));
            crate::steps::StepError {
                message: format!("assigning the lead failed: {e}"),
                retryable,
                retry_after: None,
            }
        })
    }

    /// Runs `settings.workers` workers until `shutdown` turns true.
    pub fn spawn_workers(
        self: &Arc<Self>,
        shutdown: watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        (0..self.settings.workers.max(1))
            .map(|i| {
                let engine = self.clone();
                let mut shutdown = shutdown.clone();
                tokio::spawn(async move {
                    engine.work(i, &mut shutdown).await;
                })
            })
            .collect()
    }

    async fn work(&self, worker: usize, shutdown: &mut watch::Receiver<bool>) {
        let mut failures = 0u32;
        while !*shutdown.borrow() {
            // Register for wakeups before looking, so a notification in between is kept.
            let woken = self.wake.notified();
            let clock_moved = self.clock.changed().map(|n| n.notified());
            tokio::pin!(woken);
            woken.as_mut().enable();
            // Work added by other processes (PostgreSQL NOTIFY), registered before looking.
            let mut added = self.store.work_added().map(|n| Box::pin(n.notified()));
            if let Some(added) = added.as_mut() {
                added.as_mut().enable();
            }
            let added = async move {
                match added {
                    Some(added) => added.await,
                    None => std::future::pending().await,
                }
            };
            tokio::pin!(added);
            let handled = match self.run_batch().await {
                Ok(n) => {
                    failures = 0;
                    n
                }
                Err(e) => {
                    failures += 1;
                    warn!(worker, error = %e, "engine batch failed; retrying");
                    tokio::time::sleep(StdDuration::from_millis(100 * u64::from(failures.min(50))))
                        .await;
                    continue;
                }
            };
            if handled > 0 {
                continue;
            }
            let sleep = self.idle_sleep().await;
            match clock_moved {
                Some(moved) => tokio::select! {
                    _ = &mut woken => {}
                    _ = &mut added => {}
                    _ = moved => {}
                    _ = tokio::time::sleep(sleep) => {}
                    _ = shutdown.changed() => {}
                },
                None => tokio::select! {
                    _ = &mut woken => {}
                    _ = &mut added => {}
                    _ = tokio::time::sleep(sleep) => {}
                    _ = shutdown.changed() => {}
                },
            }
        }
    }

    /// How long an idle worker may sleep: until the next job is due, at most the poll
    /// interval.
    async fn idle_sleep(&self) -> StdDuration {
        let poll = self.settings.poll_interval;
        if self.clock.is_manual() {
            return poll;
        }
        match self.store.jobs().next_due().await {
            Ok(Some(due)) => (due - self.clock.now())
                .to_std()
                .unwrap_or(StdDuration::ZERO)
                .min(poll),
            _ => poll,
        }
    }

    /// Runs batches until no job is due now (tests and `kontor bench`).
    pub async fn drain(&self) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let n = self.run_batch().await?;
            if n == 0 {
                return Ok(total);
            }
            total += n;
        }
    }
}

/// The outcome of a job that is dropped without running: only its deletion.
fn dropped(job: &Job) -> crate::run::JobOutcome {
    crate::run::JobOutcome {
        job_id: job.id,
        run_id: job.run_id.clone(),
        ..Default::default()
    }
}
