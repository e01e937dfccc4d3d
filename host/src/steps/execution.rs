//! What an action works with when its step runs ([`StepRun`]) and what it answers
//! ([`Flow`] or a [`StepError`]).
//!
//! Actions are pure: they read the run, compute, and add what they want done — effects,
//! timers, child runs — to the job's outcome, which the store commits with the step's
//! result. They never wait, write SQL or call out; a step that needs a plugin answers
//! [`Flow::Call`] and the engine makes the call.

use chrono::{DateTime, Utc};
use serde_json::{Value as Json, json};

use crate::expr::{Calendars, ExprError, Scope};
use crate::run::{JobOutcome, NewJob, RunState, WaitFor};
use crate::workflow::{Catalog, Step, Workflow};

/// The run a step belongs to, as the step sees and changes it.
pub struct StepRun<'a> {
    pub run: &'a RunState,
    /// The workflow version the run executes.
    pub workflow: &'a Workflow,
    /// The current workflows, which `start` starts children of.
    pub catalog: &'a Catalog,
    pub calendars: &'a Calendars,
    pub now: DateTime<Utc>,
    /// Child runs one `start` step may create.
    pub max_children: usize,
    /// How many parents a run may have: a `start` step below that fails.
    pub max_depth: i64,
    /// Cost units one expression evaluation may spend (`engine.expression_budget`).
    pub expression_budget: u64,
    /// Set when the run is cancelled while the step runs: expressions stop at once.
    pub cancel: Option<&'a std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// The step being run.
    pub step: &'a Step,
    /// The step's number in the run, part of the idempotency keys of its effects.
    pub seq: i64,
    /// The run's context: `vars` and the outputs of earlier `steps`.
    pub context: &'a mut Json,
    /// What this step's previous execution left for this one when it asked to be run
    /// again ([`Flow::Again`]): how far a chunked fan-out got.
    pub resumed: Option<Json>,
    /// What the job commits: effects, timers, child runs.
    pub outcome: &'a mut JobOutcome,
}

impl<'a> StepRun<'a> {
    /// The variables expressions read: `input`, `vars`, `steps`, `run` and `now`,
    /// borrowed from the run (an expression converts only what it names, so a step does
    /// not copy the run's whole context to evaluate one field).
    pub fn scope(&self) -> Scope<'_> {
        Scope::new(self.now, self.calendars)
            .with_budget(self.expression_budget)
            .with_cancel(self.cancel.cloned())
            .with_borrowed("input", &self.run.input)
            .with_borrowed("vars", &self.context["vars"])
            .with_borrowed("steps", &self.context["steps"])
            .with("run", self.run_variable())
    }

    /// What `run` shows an expression.
    fn run_variable(&self) -> Json {
        json!({
            "id": self.run.id,
            "workflow": self.run.workflow,
            "started_at": self.run.created_at,
            "parent_id": self.run.parent_id,
        })
    }

    /// The idempotency key of the step's effect: a step that runs again after a crash
    /// produces the same key, so the store keeps one effect.
    pub fn effect_key(&self) -> String {
        format!("{}:{}:{}:0", self.run.id, self.seq, self.step.id)
    }
}

/// A key as text: strings as they are, other values as JSON (correlation keys, record
/// keys).
pub(super) fn key_text(value: Json) -> String {
    match value {
        Json::String(s) => s,
        other => other.to_string(),
    }
}

/// What a step led to.
pub enum Flow {
    /// The run goes on with `next` (or ends when there is none).
    Continue {
        /// What the step's record shows as its input, if anything.
        input: Option<Json>,
        output: Json,
        next: Option<usize>,
    },
    /// The run waits; a job, an event or its children wake it.
    Park { input: Option<Json>, wait: Parking },
    /// The run ends with `output`.
    Finish { output: Json },
    /// A plugin must be called before the run can go on.
    Call(PluginCall),
    /// The step did part of its work (a chunk of a large fan-out): commit that, then run
    /// the step again in a job of its own, which hands it `progress` as
    /// [`StepRun::resumed`]. A crash in between repeats at most the uncommitted part.
    Again { progress: Json },
}

/// What a parked run waits for.
pub enum Parking {
    /// A job that resumes the run at its due time.
    Until(NewJob),
    /// Events matching a correlation key (or a timeout).
    Events(WaitFor),
    /// Every child run to finish.
    Children,
}

/// A call a step asks the engine to make: a plugin's, or (for a `route` step) an
/// assignment in the store.
pub struct PluginCall {
    pub plugin: String,
    /// The connector function, for a `connector` step; `None` for a `plugin` step.
    pub function: Option<String>,
    pub input: Json,
    /// Instead of a plugin: assign a lead (`plugin` is empty then).
    pub assign: Option<Box<crate::crm::assignment::AssignCall>>,
}

/// Why a step failed.
#[derive(Debug, Clone)]
pub struct StepError {
    pub message: String,
    /// Retryable errors are tried again with backoff up to the step's `max_attempts`;
    /// fatal ones fail the run at once.
    pub retryable: bool,
    /// The earliest a retry may come, when the ERP or API said so (`Retry-After`); the
    /// retry waits for the longer of this and the step's backoff.
    pub retry_after: Option<std::time::Duration>,
}

impl StepError {
    pub fn fatal(message: impl Into<String>) -> Self {
        StepError {
            message: message.into(),
            retryable: false,
            retry_after: None,
        }
    }
}

impl From<ExprError> for StepError {
    fn from(e: ExprError) -> Self {
        StepError::fatal(e.to_string())
    }
}
