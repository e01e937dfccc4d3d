//! The run's state while a chain of its steps runs — context, step count, the outcome
//! being built — and the [`JobOutcome`] it becomes when the chain stops.

use chrono::{DateTime, Utc};
use serde_json::{Value as Json, json};

use crate::run::StepStatus;
use crate::run::{Job, JobKind, JobOutcome, RunState, RunStatus, RunUpdate, StepRecord};
use crate::workflow::Step;

pub(super) struct RunProgress {
    pub(super) context: Json,
    pub(super) step_count: i64,
    pub(super) outcome: JobOutcome,
    /// The log of the plugin call whose result is recorded next.
    pub(super) pending_log: Option<Json>,
    /// Whether this chain already holds a plugin call's result.
    pub(super) called: bool,
    /// What a step that asked to be run again left for its next execution (the job's
    /// payload); handed to the first step of the chain.
    pub(super) resumed: Option<Json>,
}

impl RunProgress {
    /// The progress of `run` before `job` runs.
    pub(super) fn new(job: &Job, run: &RunState) -> RunProgress {
        RunProgress {
            context: normalise_context(run.context.clone()),
            step_count: run.step_count,
            outcome: JobOutcome {
                job_id: job.id,
                run_id: run.id.clone(),
                parent_id: run.parent_id.clone(),
                ends_wait: job.kind == JobKind::Timeout,
                ..JobOutcome::default()
            },
            pending_log: None,
            called: false,
            resumed: match job.kind {
                JobKind::Step => job.payload.clone(),
                _ => None,
            },
        }
    }

    /// Adds a step's record to the outcome.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn record(
        &mut self,
        step: &Step,
        attempt: u32,
        status: StepStatus,
        input: Option<Json>,
        output: Option<Json>,
        error: Option<String>,
        started: DateTime<Utc>,
    ) {
        self.outcome.steps.push(StepRecord {
            step: step.id.clone(),
            action: step.action.kind().to_string(),
            attempt,
            status,
            input,
            output,
            error,
            log: self.pending_log.take(),
            started_at: started,
            finished_at: started,
        });
    }

    /// Keeps a step's output in the context, where later steps read it as `steps.ID`.
    pub(super) fn set_step_output(&mut self, step: &str, output: Json) {
        if let Some(steps) = self.context["steps"].as_object_mut() {
            steps.insert(step.to_string(), output);
        }
    }

    /// The outcome to commit, with the run's new state.
    pub(super) fn finish(
        mut self,
        status: RunStatus,
        current_step: Option<String>,
        output: Option<Json>,
        error: Option<String>,
    ) -> JobOutcome {
        self.outcome.run = Some(RunUpdate {
            status,
            context: self.context,
            current_step,
            output,
            error,
            step_count: self.step_count,
        });
        self.outcome
    }
}

/// A context with `vars` and `steps` objects, whatever was stored.
fn normalise_context(mut context: Json) -> Json {
    if !context.is_object() {
        context = json!({});
    }
    for key in ["vars", "steps"] {
        if !context[key].is_object() {
            context[key] = json!({});
        }
    }
    context
}
