//! Executing one job of one run: a pure function from (job, run, workflow, now) to the
//! [`JobOutcome`] the store commits. What each action does is in [`crate::steps`]; this
//! is the driver around them.
//!
//! Pure steps (`set`, `branch`, `timer`, `record`, ...) run one after another inline, so
//! a chain of them costs one commit. The chain stops at a step that must wait (`wait`,
//! `wait_for`, `wait_children`), at the end of the run, at an error, or after
//! [`MAX_INLINE_STEPS`] (then a continuation job is scheduled, so a loop without waits
//! cannot hold a worker forever).
//!
//! A `plugin` step is the one step that is not pure: the executor stops before it and
//! hands back an [`Execution::Call`]; the engine makes the call (async, in the sandbox)
//! and [`Executor::resume`]s with its result, so the step's output, the steps after it
//! and their effects still commit together. A chain holds at most one plugin call: at
//! the next one it stops and schedules a continuation, so each call's result is
//! committed before the next call is made (a crash repeats at most one call) and a loop
//! over pages of an ERP never keeps more than one page in memory.
//!
//! | file | part |
//! |---|---|
//! | `execute.rs` | what a claimed job becomes: a step, a resume, a timeout, a timer's event |
//! | `execute/chain.rs` | running a chain of steps: limits, continuations, retries, recording results |
//! | `execute/progress.rs` | the run's state while a chain runs, and the outcome it becomes |

mod chain;
mod progress;

use crate::steps::StepError;
use chrono::{DateTime, Utc};
use serde_json::{Value as Json, json};

use crate::expr::Calendars;
use crate::run::StepStatus;
use crate::run::TIMER_EVENT_PREFIX;
use crate::run::{Job, JobKind, JobOutcome, NewEvent, RunState};
use crate::workflow::{Catalog, Workflow};
use progress::RunProgress;

pub use crate::steps::start::new_run_id;

/// Steps executed inline before a continuation job is committed.
pub const MAX_INLINE_STEPS: usize = 100;

/// Limits that protect the engine from runaway workflows.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Steps one run may execute in total; a run that exceeds it fails.
    pub max_steps_per_run: i64,
    /// Child runs one `start` step may create.
    pub max_children_per_step: usize,
    /// How many parents a run may have (child of a child of …).
    pub max_run_depth: i64,
    /// Cost units one expression evaluation may spend before it is stopped.
    pub expression_budget: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_steps_per_run: 10_000,
            max_children_per_step: 100_000,
            max_run_depth: 10,
            expression_budget: crate::expr::DEFAULT_BUDGET,
        }
    }
}

/// What executing a job led to.
#[allow(clippy::large_enum_variant)]
pub enum Execution {
    /// The outcome to commit.
    Done(JobOutcome),
    /// A plugin must be called before the run can go on.
    Call(Box<PendingCall>),
}

/// A plugin call a run is waiting for, with the run's progress up to it.
pub struct PendingCall {
    pub plugin: String,
    /// The connector function, for a `connector` step; `None` for a `plugin` step.
    pub function: Option<String>,
    pub input: Json,
    /// Instead of a plugin call: a lead's assignment in the store (`route` steps).
    pub assign: Option<Box<crate::crm::assignment::AssignCall>>,
    pub step: String,
    pub attempt: u32,
    state: RunProgress,
    cursor: usize,
    inline: usize,
}

pub struct Executor<'a> {
    pub workflow: &'a Workflow,
    pub catalog: &'a Catalog,
    pub calendars: &'a Calendars,
    pub limits: &'a Limits,
    pub now: DateTime<Utc>,
    /// Set when the run is cancelled meanwhile (in this process): evaluations stop.
    pub cancel: Option<&'a std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl Executor<'_> {
    /// Runs `job` against `run`. Never panics on bad workflow data: errors fail the step.
    pub fn execute(&self, job: &Job, run: &RunState) -> Execution {
        let mut state = RunProgress::new(job, run);

        if job.kind == JobKind::Timer {
            let name = job.timer.clone().unwrap_or_default();
            state.outcome.events.push(NewEvent {
                event_type: format!("{TIMER_EVENT_PREFIX}{name}"),
                key: run.id.clone(),
                payload: json!({"timer": name, "due_at": job.due_at}),
            });
            return Execution::Done(state.outcome);
        }

        let Some((index, step)) = self.workflow.step(&job.step) else {
            return Execution::Done(self.fail_run(
                state,
                &job.step,
                format!(
                    "step `{}` does not exist in this workflow version",
                    job.step
                ),
            ));
        };

        let cursor = match job.kind {
            JobKind::Step => Some(index),
            JobKind::Resume => {
                let output = job.payload.clone().unwrap_or(Json::Null);
                state.record(
                    step,
                    1,
                    StepStatus::Completed,
                    None,
                    Some(output.clone()),
                    None,
                    self.now,
                );
                state.set_step_output(&step.id, output);
                step.next
            }
            JobKind::Timeout => {
                let output = json!({"timed_out": true});
                state.record(
                    step,
                    1,
                    StepStatus::Completed,
                    None,
                    Some(output.clone()),
                    None,
                    self.now,
                );
                state.set_step_output(&step.id, output);
                step.action.on_timeout().or(step.next)
            }
            JobKind::Timer => unreachable!("handled above"),
        };
        let attempt = if job.kind == JobKind::Step {
            job.attempt
        } else {
            1
        };
        self.drive(state, run, cursor, attempt, 0, None)
    }

    /// Continues a run after its plugin call finished with `result`; `log` is what the
    /// plugin logged, kept with the step's record.
    pub fn resume(
        &self,
        run: &RunState,
        call: Box<PendingCall>,
        result: Result<Json, StepError>,
        log: Option<Json>,
        kv_writes: Vec<crate::run::KvWrite>,
    ) -> Execution {
        let mut call = *call;
        call.state.pending_log = log;
        call.state.called = true;
        if result.is_ok() {
            call.state.outcome.kv_writes.extend(kv_writes);
        }
        let step = &self.workflow.steps[call.cursor];
        let flow = result.map(|output| crate::steps::Flow::Continue {
            input: Some(call.input),
            output,
            next: step.next,
        });
        self.drive(
            call.state,
            run,
            Some(call.cursor),
            call.attempt,
            call.inline,
            Some(flow),
        )
    }
}
