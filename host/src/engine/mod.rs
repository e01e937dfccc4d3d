//! The engine: claims due jobs, executes steps, commits their outcomes.
//!
//! ```text
//! trigger (API, event, cron, timer) ──▶ store: run + job ──▶ worker claims a batch
//!     ──▶ execute (pure: workflow + run + job → JobOutcome) ──▶ store.commit (one tx)
//! ```
//!
//! Workers wake on an in-process [`Notify`] when work is added, when the manual clock
//! moves, or when the next job is due; polling is only the fallback. Execution is
//! at-least-once per step: a step's result, its next jobs and its effects commit together,
//! so after a crash a step re-runs only if its commit never happened.

pub mod cron;
pub mod execute;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration as StdDuration;

use serde_json::Value as Json;
use tokio::sync::{Notify, watch};
use tracing::{Instrument, debug, info_span, warn};

use crate::clock::SharedClock;
use crate::run::{Job, NewEvent, NewRun, Started};
use crate::store::{Delivered, Store, StoreError};
use crate::workflow::compile::{Environment, compile_workflow};
use crate::workflow::{Catalog, Trigger, Workflow};
pub use execute::{Limits, new_run_id};

/// Engine settings (from `[engine]` in kontor.toml).
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub workers: usize,
    /// Jobs claimed per batch.
    pub batch_size: u32,
    /// How long a claimed job stays leased (real time); longer than any step takes.
    pub lease: chrono::Duration,
    /// Upper bound on how long an idle worker sleeps before looking again.
    pub poll_interval: StdDuration,
    pub limits: Limits,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            workers: 2,
            batch_size: 32,
            lease: chrono::Duration::seconds(60),
            poll_interval: StdDuration::from_millis(500),
            limits: Limits::default(),
        }
    }
}

/// Why the engine refused a request.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("there is no workflow `{0}`")]
    UnknownWorkflow(String),
    #[error("workflow `{name}` is invalid: {first}")]
    InvalidWorkflow { name: String, first: String },
    #[error("{0}")]
    InvalidInput(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How executing a job began: finished, or stopped at a plugin call.
#[allow(clippy::large_enum_variant)] // the common case is `Done`; boxing it costs more
enum Begun {
    Done(crate::run::JobOutcome),
    Call(Box<Calling>),
}

/// A job waiting for a plugin call, with what it needs to resume.
struct Calling {
    call: Box<execute::PendingCall>,
    workflow: Arc<Workflow>,
    catalog: Arc<Catalog>,
    now: chrono::DateTime<chrono::Utc>,
}

pub struct Engine {
    store: Store,
    clock: SharedClock,
    catalog: RwLock<Arc<Catalog>>,
    /// The catalog's email templates, shared with the email dispatcher (which renders
    /// with whatever set is in force, and knows nothing of the engine).
    templates: crate::templates::CurrentTemplates,
    /// Compiled workflow versions by hash, including versions no longer on disk.
    versions: Mutex<HashMap<String, Arc<Workflow>>>,
    wake: Notify,
    /// Ids of runs whose completion (or failure) was just committed.
    finished: tokio::sync::broadcast::Sender<String>,
    /// Lease owner name of this process.
    owner: String,
    settings: EngineSettings,
    /// The plugins `plugin` steps call; without them such steps fail.
    plugins: std::sync::OnceLock<Arc<kontor_plugins::PluginRegistry>>,
    /// Email channel names `send_email` steps are checked against.
    channels: std::sync::OnceLock<std::collections::BTreeSet<String>>,
}

impl Engine {
    pub fn new(
        store: Store,
        clock: SharedClock,
        catalog: Catalog,
        settings: EngineSettings,
    ) -> Arc<Engine> {
        Arc::new(Engine {
            store,
            clock,
            templates: crate::templates::CurrentTemplates::new(catalog.templates.clone()),
            catalog: RwLock::new(Arc::new(catalog)),
            versions: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            finished: tokio::sync::broadcast::channel(1024).0,
            owner: format!(
                "kontor-{}-{}",
                std::process::id(),
                uuid::Uuid::now_v7().simple()
            ),
            settings,
            plugins: std::sync::OnceLock::new(),
            channels: std::sync::OnceLock::new(),
        })
    }

    /// Lets `plugin` steps call the plugins of `registry` (once, at startup).
    pub fn attach_plugins(&self, registry: Arc<kontor_plugins::PluginRegistry>) {
        let _ = self.plugins.set(registry);
    }

    pub fn plugins(&self) -> Option<&Arc<kontor_plugins::PluginRegistry>> {
        self.plugins.get()
    }

    /// What workflows are checked against when the catalog is (re)loaded.
    pub fn plugin_index(&self) -> Option<crate::workflow::PluginIndex> {
        self.plugins
            .get()
            .map(|r| crate::workflow::PluginIndex::from_registry(r))
    }

    /// The email channels workflows may name (once, at startup).
    pub fn set_channels(&self, channels: std::collections::BTreeSet<String>) {
        let _ = self.channels.set(channels);
    }

    /// Loads the catalog under `dir`, checked against this engine's plugins and channels.
    pub fn load_catalog(&self, dir: &std::path::Path) -> Catalog {
        Catalog::load_with(dir, self.plugin_index().as_ref(), self.channels.get())
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// The email templates in force, updated with every catalog reload.
    pub fn templates(&self) -> &crate::templates::CurrentTemplates {
        &self.templates
    }

    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Swaps in a reloaded catalog; new runs use it, running ones keep their version.
    pub fn set_catalog(&self, catalog: Catalog) {
        self.templates.replace(catalog.templates.clone());
        *self.catalog.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(catalog);
        self.wake.notify_waiters();
    }

    /// A feed of run ids, sent when a run's completion or failure has been committed.
    pub fn subscribe_finished(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.finished.subscribe()
    }

    /// Wakes idle workers: new jobs exist or the clock moved.
    pub fn wake(&self) {
        self.wake.notify_waiters();
    }

    fn workflow(&self, name: &str) -> Result<Arc<Workflow>, EngineError> {
        let catalog = self.catalog();
        match catalog.workflows.get(name) {
            None => Err(EngineError::UnknownWorkflow(name.to_string())),
            Some(crate::workflow::WorkflowEntry::Invalid { diagnostics, .. }) => {
                Err(EngineError::InvalidWorkflow {
                    name: name.to_string(),
                    first: diagnostics
                        .first()
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                })
            }
            Some(crate::workflow::WorkflowEntry::Valid(w)) => Ok(w.clone()),
        }
    }

    /// A run to start `workflow` with `input`, validated against its input schema.
    pub fn new_run(
        &self,
        workflow: &Workflow,
        input: Json,
        trigger_key: Option<String>,
    ) -> Result<NewRun, EngineError> {
        workflow
            .validate_input(&input)
            .map_err(EngineError::InvalidInput)?;
        Ok(NewRun {
            id: new_run_id(),
            workflow: workflow.name.clone(),
            version: workflow.version.clone(),
            source: workflow.source.clone(),
            input,
            parent_id: None,
            trigger_key,
            first_step: workflow.steps[0].id.clone(),
            due_at: self.clock.now(),
        })
    }

    /// Starts a run of the current version of `workflow`.
    pub async fn start_run(&self, workflow: &str, input: Json) -> Result<Started, EngineError> {
        let workflow = self.workflow(workflow)?;
        let run = self.new_run(&workflow, input, None)?;
        let started = self.store.runs().start(&[run], self.clock.now()).await?;
        if started.iter().any(|s| s.created) {
            metrics::counter!("kontor_runs_started_total", "workflow" => workflow.name.clone())
                .increment(1);
        }
        self.wake();
        Ok(started.into_iter().next().expect("one run in, one out"))
    }

    /// Starts a run at most once per `key`: a repeated key gets the first answer back.
    /// `answer` builds the answer to store from the new run's id.
    pub async fn start_run_once(
        &self,
        workflow: &str,
        input: Json,
        key: &str,
        request_hash: &str,
        answer: impl FnOnce(&str) -> crate::store::StoredAnswer,
    ) -> Result<(crate::store::IdempotentStart, crate::store::StoredAnswer), EngineError> {
        let workflow = self.workflow(workflow)?;
        let run = self.new_run(&workflow, input, None)?;
        let stored = answer(&run.id);
        let once = self
            .store
            .runs()
            .start_once(
                &run,
                &format!("{}:{key}", workflow.name),
                request_hash,
                &stored,
                self.clock.now(),
            )
            .await?;
        if once == crate::store::IdempotentStart::Started {
            metrics::counter!("kontor_runs_started_total", "workflow" => workflow.name.clone())
                .increment(1);
            self.wake();
        }
        Ok((once, stored))
    }

    /// Stores an event, resumes the runs waiting for it and starts the workflows it
    /// triggers.
    pub async fn deliver_event(&self, event: NewEvent) -> Result<Delivered, EngineError> {
        let catalog = self.catalog();
        let mut starts = Vec::new();
        for workflow in catalog.valid() {
            if matches!(&workflow.trigger, Trigger::Event(t) if *t == event.event_type) {
                match self.new_run(workflow, event.payload.clone(), None) {
                    Ok(run) => starts.push(run),
                    Err(e) => {
                        warn!(workflow = %workflow.name, error = %e, "event does not fit the workflow's input; no run started")
                    }
                }
            }
        }
        let delivered = self
            .store
            .events()
            .deliver(&event, &starts, self.clock.now())
            .await?;
        for run in &starts {
            metrics::counter!("kontor_runs_started_total", "workflow" => run.workflow.clone())
                .increment(1);
        }
        self.wake();
        Ok(delivered)
    }

    /// Cancels a run and its descendants. `None` if there is no such run; the list is
    /// empty if it had finished already.
    pub async fn cancel_run(&self, id: &str) -> Result<Option<Vec<String>>, EngineError> {
        let cancelled = self.store.runs().cancel(id, self.clock.now()).await?;
        if let Some(ids) = cancelled.as_ref().filter(|ids| !ids.is_empty()) {
            metrics::counter!("kontor_runs_cancelled_total").increment(ids.len() as u64);
        }
        self.wake();
        Ok(cancelled)
    }

    /// Retries a failed run from its failed step, on the version it started with.
    pub async fn retry_run(
        &self,
        id: &str,
    ) -> Result<Result<String, crate::store::RetryRefused>, EngineError> {
        let retried = self.store.runs().retry(id, self.clock.now()).await?;
        self.wake();
        Ok(retried)
    }

    /// The compiled workflow of a pinned version: from the cache, the catalog, or the
    /// source stored with the version.
    async fn version(&self, version: &str) -> Result<Arc<Workflow>, String> {
        if let Some(w) = self
            .versions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(version)
        {
            return Ok(w.clone());
        }
        let catalog = self.catalog();
        let workflow = match catalog.valid().find(|w| w.version == version) {
            Some(w) => w.clone(),
            None => {
                let (name, source) = self
                    .store
                    .runs()
                    .workflow_source(version)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("workflow version {version} is not stored"))?;
                let names = catalog.workflows.keys().cloned().collect();
                let environment = Environment {
                    calendars: &catalog.calendars,
                    workflow_names: &names,
                    plugins: None,
                    channels: None,
                    templates: None,
                };
                let path = catalog.root.join(format!("{name}.yaml"));
                let compiled = compile_workflow(&path, &source, &environment).map_err(|d| {
                    format!(
                        "stored version {version} of `{name}` no longer compiles: {}",
                        d.first().map(ToString::to_string).unwrap_or_default()
                    )
                })?;
                Arc::new(compiled)
            }
        };
        self.versions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(version.to_string(), workflow.clone());
        Ok(workflow)
    }

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
        let runs: HashMap<String, crate::run::RunState> = self
            .store
            .runs()
            .load(&ids)
            .await?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        // Pure steps run job by job; jobs that stopped at a plugin call then make their
        // calls concurrently, so one slow plugin does not hold up the others.
        let mut outcomes: Vec<Option<crate::run::JobOutcome>> = Vec::with_capacity(jobs.len());
        let mut calls = Vec::new();
        for (i, job) in jobs.iter().enumerate() {
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
            match self.execute(job, run).instrument(span.clone()).await {
                Begun::Done(outcome) => outcomes.push(Some(outcome)),
                Begun::Call(calling) => {
                    outcomes.push(None);
                    if let Some(run) = run {
                        calls.push((i, calling, run, span));
                    }
                }
            }
            metrics::histogram!("kontor_job_duration_seconds")
                .record(started.elapsed().as_secs_f64());
        }
        if !calls.is_empty() {
            let done =
                futures_util::future::join_all(calls.into_iter().map(|(i, calling, run, span)| {
                    async move { (i, self.complete(calling, run).await) }.instrument(span)
                }))
                .await;
            for (i, outcome) in done {
                outcomes[i] = Some(outcome);
            }
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

    async fn execute(&self, job: &Job, run: Option<&crate::run::RunState>) -> Begun {
        let drop_job = crate::run::JobOutcome {
            job_id: job.id,
            run_id: job.run_id.clone(),
            ..Default::default()
        };
        let Some(run) = run else {
            warn!("job of a missing run; dropping it");
            return Begun::Done(drop_job);
        };
        if run.status.is_finished() {
            debug!("run already finished; dropping a stale job");
            return Begun::Done(drop_job);
        }
        let workflow = match self.version(&run.version).await {
            Ok(w) => w,
            Err(message) => {
                warn!(%message, "cannot load the run's workflow version");
                // Fail the run rather than retry forever.
                return Begun::Done(crate::run::JobOutcome {
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
                });
            }
        };
        let catalog = self.catalog();
        let executor = execute::Executor {
            workflow: &workflow,
            catalog: &catalog,
            calendars: &catalog.calendars,
            limits: &self.settings.limits,
            now: self.clock.now(),
        };
        match executor.execute(job, run) {
            execute::Execution::Done(outcome) => Begun::Done(outcome),
            execute::Execution::Call(call) => Begun::Call(Box::new(Calling {
                call,
                now: executor.now,
                workflow: workflow.clone(),
                catalog: catalog.clone(),
            })),
        }
    }

    /// Makes the plugin calls a job stopped at and finishes executing it.
    async fn complete(
        &self,
        calling: Box<Calling>,
        run: &crate::run::RunState,
    ) -> crate::run::JobOutcome {
        let Calling {
            mut call,
            workflow,
            catalog,
            now,
        } = *calling;
        let executor = execute::Executor {
            workflow: &workflow,
            catalog: &catalog,
            calendars: &catalog.calendars,
            limits: &self.settings.limits,
            now,
        };
        loop {
            let (result, log, kv_writes) = self.call_plugin(&call, run).await;
            match executor.resume(run, call, result, log, kv_writes) {
                execute::Execution::Done(outcome) => return outcome,
                execute::Execution::Call(next) => call = next,
            }
        }
    }

    /// Calls the plugin a `plugin` step names, in the sandbox; returns its result and
    /// what it logged.
    async fn call_plugin(
        &self,
        call: &execute::PendingCall,
        run: &crate::run::RunState,
    ) -> (
        Result<Json, crate::steps::StepError>,
        Option<Json>,
        Vec<crate::run::KvWrite>,
    ) {
        let plugin = match self
            .plugins
            .get()
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
