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

mod cancel;
pub mod cron;
pub mod execute;
mod worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration as StdDuration;

use serde_json::Value as Json;
use tokio::sync::Notify;

use crate::clock::SharedClock;
use crate::run::{NewEvent, NewRun, Started};
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
    /// The largest workflow or calendar file a (re)load accepts, in bytes.
    pub max_workflow_file: u64,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            workers: 2,
            batch_size: 32,
            lease: chrono::Duration::seconds(60),
            poll_interval: StdDuration::from_millis(500),
            limits: Limits::default(),
            max_workflow_file: crate::workflow::DEFAULT_MAX_FILE_SIZE,
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
    /// An event's payload does not fit the input of a workflow it triggers.
    #[error(
        "the event starts workflow `{workflow}`, whose input it does not fit: {problems}; nothing was stored"
    )]
    InvalidPayload { workflow: String, problems: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How executing a job began: finished, or stopped at a plugin call.
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
    plugins: Option<Arc<kontor_plugins::PluginRegistry>>,
    /// Email channel names `send_email` steps are checked against.
    channels: Option<std::collections::BTreeSet<String>>,
    /// Runs whose jobs execute in this process now, to stop their expressions on cancel.
    in_flight: cancel::InFlight,
}

/// What steps reach outside the engine, handed over when the engine is made: the plugin
/// registry `plugin` and `connector` steps call, and the email channels `send_email` steps
/// may name. Either may be absent (tests, benchmarks): such steps then fail clearly.
#[derive(Default)]
pub struct EngineServices {
    pub plugins: Option<Arc<kontor_plugins::PluginRegistry>>,
    pub channels: Option<std::collections::BTreeSet<String>>,
}

impl Engine {
    pub fn new(
        store: Store,
        clock: SharedClock,
        catalog: Catalog,
        settings: EngineSettings,
        services: EngineServices,
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
            plugins: services.plugins,
            channels: services.channels,
            in_flight: cancel::InFlight::default(),
        })
    }

    pub fn plugins(&self) -> Option<&Arc<kontor_plugins::PluginRegistry>> {
        self.plugins.as_ref()
    }

    /// What workflows are checked against when the catalog is (re)loaded.
    pub fn plugin_index(&self) -> Option<crate::workflow::PluginIndex> {
        self.plugins
            .as_ref()
            .map(|r| crate::workflow::PluginIndex::from_registry(r))
    }

    /// Loads the catalog under `dir`, checked against this engine's plugins and channels.
    pub fn load_catalog(&self, dir: &std::path::Path) -> Catalog {
        Catalog::load_within(
            dir,
            self.plugin_index().as_ref(),
            self.channels.as_ref(),
            self.settings.max_workflow_file,
        )
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
            domain: workflow.domain.map(|d| d.as_str().to_string()),
            source: workflow.source.clone(),
            input,
            parent_id: None,
            depth: 0,
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
    /// Delivers an event: resumes the runs waiting for it and starts the workflows it
    /// triggers, atomically. A payload that does not fit a triggered workflow's input
    /// schema refuses the whole event ([`EngineError::InvalidPayload`]): nothing is
    /// stored, so the sender learns of it and can send it again, fixed. With a
    /// `delivery_id` seen before, nothing happens again.
    pub async fn deliver_event(
        &self,
        event: NewEvent,
        delivery_id: Option<&str>,
    ) -> Result<Delivered, EngineError> {
        let starts = self.triggered_runs(&event.event_type, &event.payload)?;
        let delivered = self
            .store
            .events()
            .deliver(&event, delivery_id, &starts, self.clock.now())
            .await?;
        for run in &starts {
            metrics::counter!("kontor_runs_started_total", "workflow" => run.workflow.clone())
                .increment(1);
        }
        self.wake();
        Ok(delivered)
    }

    /// The runs an event of `event_type` with `payload` starts: one per workflow it
    /// triggers. A payload that does not fit one's input schema refuses them all.
    pub fn triggered_runs(
        &self,
        event_type: &str,
        payload: &Json,
    ) -> Result<Vec<NewRun>, EngineError> {
        let catalog = self.catalog();
        let mut starts = Vec::new();
        for workflow in catalog.valid() {
            if matches!(&workflow.trigger, Trigger::Event(t) if t == event_type) {
                if let Err(problems) = workflow.validate_as(payload, "payload") {
                    return Err(EngineError::InvalidPayload {
                        workflow: workflow.name.clone(),
                        problems,
                    });
                }
                starts.push(self.new_run(workflow, payload.clone(), None)?);
            }
        }
        Ok(starts)
    }

    /// Runs were added to the store by another part (a lead's intake): counted, and the
    /// workers woken.
    pub fn runs_added(&self, runs: &[NewRun]) {
        for run in runs {
            metrics::counter!("kontor_runs_started_total", "workflow" => run.workflow.clone())
                .increment(1);
        }
        self.wake();
    }

    /// Cancels a run and its descendants. `None` if there is no such run; the list is
    /// empty if it had finished already.
    pub async fn cancel_run(&self, id: &str) -> Result<Option<Vec<String>>, EngineError> {
        let cancelled = self.store.runs().cancel(id, self.clock.now()).await?;
        if let Some(ids) = cancelled.as_ref().filter(|ids| !ids.is_empty()) {
            self.in_flight.cancel(ids);
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
                    territories: None,
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
}
