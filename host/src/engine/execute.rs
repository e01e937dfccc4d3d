//! Executing one job of one run: a pure function from (job, run, workflow, now) to the
//! [`JobOutcome`] the store commits.
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

use chrono::{DateTime, Utc};
use serde_json::{Value as Json, json};

use super::effects::Effect;
use crate::expr::{Calendars, ExprError, Scope};
use crate::store::{
    Job, JobKind, JobOutcome, NewEvent, NewJob, NewRun, RunState, RunStatus, RunUpdate, StepRecord,
    WaitFor,
};
use crate::workflow::{Action, Catalog, Delay, Step, TIMER_EVENT_PREFIX, Workflow};

/// Steps executed inline before a continuation job is committed.
pub const MAX_INLINE_STEPS: usize = 100;

/// Limits that protect the engine from runaway workflows.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Steps one run may execute in total; a run that exceeds it fails.
    pub max_steps_per_run: i64,
    /// Child runs one `start` step may create.
    pub max_children_per_step: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_steps_per_run: 10_000,
            max_children_per_step: 100_000,
        }
    }
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
    fn fatal(message: impl Into<String>) -> Self {
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
    pub step: String,
    pub attempt: u32,
    state: RunProgress,
    cursor: usize,
    inline: usize,
}

/// Where the run goes after a step.
enum Applied {
    Next(RunProgress, Option<usize>),
    Stop(JobOutcome),
}

/// What a single step led to.
enum Flow {
    Continue {
        input: Option<Json>,
        output: Json,
        next: Option<usize>,
    },
    Park {
        input: Option<Json>,
        wait: Parking,
    },
    Finish {
        output: Json,
    },
}

enum Parking {
    Until(NewJob),
    Events(WaitFor),
    Children,
}

pub struct Executor<'a> {
    pub workflow: &'a Workflow,
    pub catalog: &'a Catalog,
    pub calendars: &'a Calendars,
    pub limits: &'a Limits,
    pub now: DateTime<Utc>,
}

impl Executor<'_> {
    /// Runs `job` against `run`. Never panics on bad workflow data: errors fail the step.
    pub fn execute(&self, job: &Job, run: &RunState) -> Execution {
        let mut state = RunProgress {
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
        };

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
                    "completed",
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
                    "completed",
                    None,
                    Some(output.clone()),
                    None,
                    self.now,
                );
                state.set_step_output(&step.id, output);
                match &step.action {
                    Action::WaitFor { on_timeout, .. } => on_timeout.or(step.next),
                    _ => step.next,
                }
            }
            JobKind::Timer => unreachable!("handled above"),
        };
        self.run_from(
            state,
            run,
            cursor,
            if job.kind == JobKind::Step {
                job.attempt
            } else {
                1
            },
        )
    }

    /// Continues a run after its plugin call finished with `result`; `log` is what the
    /// plugin logged, kept with the step's record.
    pub fn resume(
        &self,
        run: &RunState,
        call: Box<PendingCall>,
        result: Result<Json, StepError>,
        log: Option<Json>,
        kv_writes: Vec<kontor_plugins::KvWrite>,
    ) -> Execution {
        let mut call = *call;
        call.state.pending_log = log;
        call.state.called = true;
        if result.is_ok() {
            call.state.outcome.kv_writes.extend(kv_writes);
        }
        let step = &self.workflow.steps[call.cursor];
        let flow = result.map(|output| Flow::Continue {
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

    fn run_from(
        &self,
        state: RunProgress,
        run: &RunState,
        cursor: Option<usize>,
        attempt: u32,
    ) -> Execution {
        self.drive(state, run, cursor, attempt, 0, None)
    }

    /// Runs steps from `cursor` on; `resolved` is the result of the step at `cursor` when
    /// it was computed outside (a plugin call).
    fn drive(
        &self,
        mut state: RunProgress,
        run: &RunState,
        mut cursor: Option<usize>,
        mut attempt: u32,
        mut inline: usize,
        mut resolved: Option<Result<Flow, StepError>>,
    ) -> Execution {
        while let Some(i) = cursor {
            let step = &self.workflow.steps[i];
            let started = self.now;
            let result = match resolved.take() {
                Some(result) => result,
                None => match self.next_step(state, run, step, i, attempt, &mut inline) {
                    Ok((s, result)) => {
                        state = s;
                        result
                    }
                    Err(execution) => return execution,
                },
            };
            match self.apply(state, step, attempt, started, result) {
                Applied::Next(s, next) => {
                    state = s;
                    cursor = next;
                    attempt = 1;
                }
                Applied::Stop(outcome) => return Execution::Done(outcome),
            }
        }
        // Fell off the end: the run's output is its variables.
        let output = state.context["vars"].clone();
        Execution::Done(state.finish(RunStatus::Completed, None, Some(output), None))
    }

    /// Executes the step at `cursor`, or stops the run before it (continuation, limit,
    /// plugin call) by returning `Err` with the execution to hand back.
    #[allow(clippy::too_many_arguments, clippy::result_large_err)]
    fn next_step(
        &self,
        mut state: RunProgress,
        run: &RunState,
        step: &Step,
        cursor: usize,
        attempt: u32,
        inline: &mut usize,
    ) -> Result<(RunProgress, Result<Flow, StepError>), Execution> {
        let call = match &step.action {
            Action::Plugin { name, input } => Some((name, None, input)),
            Action::Connector {
                name,
                function,
                input,
            } => Some((name, Some(function), input)),
            _ => None,
        };
        if *inline >= MAX_INLINE_STEPS || (call.is_some() && state.called) {
            state.outcome.jobs.push(NewJob {
                kind: JobKind::Step,
                step: step.id.clone(),
                timer: None,
                payload: None,
                due_at: self.now,
                attempt: 1,
            });
            return Err(Execution::Done(state.finish(
                RunStatus::Running,
                Some(step.id.clone()),
                None,
                None,
            )));
        }
        if state.step_count >= self.limits.max_steps_per_run {
            return Err(Execution::Done(self.fail_run(
                state,
                &step.id,
                format!(
                    "the run executed {} steps, the limit; is there a loop without a wait?",
                    self.limits.max_steps_per_run
                ),
            )));
        }
        *inline += 1;
        if let Some((name, function, input)) = call {
            state.step_count += 1;
            let scope = self.scope(run, &state);
            let input = match input {
                Some(template) => template.evaluate(&scope),
                None if function.is_some() => Ok(json!({})),
                None => Ok(run.input.clone()),
            };
            return match input {
                Ok(input) => Err(Execution::Call(Box::new(PendingCall {
                    plugin: name.clone(),
                    function: function.cloned(),
                    input,
                    step: step.id.clone(),
                    attempt,
                    state,
                    cursor,
                    inline: *inline,
                }))),
                Err(e) => Ok((state, Err(e.into()))),
            };
        }
        let span =
            tracing::debug_span!("step", step = %step.id, action = step.action.kind(), attempt);
        let timer = std::time::Instant::now();
        let result = span.in_scope(|| self.step(step, run, &mut state));
        metrics::histogram!("kontor_step_duration_seconds", "action" => step.action.kind())
            .record(timer.elapsed().as_secs_f64());
        Ok((state, result))
    }

    /// Records a step's result and decides what comes next.
    fn apply(
        &self,
        mut state: RunProgress,
        step: &Step,
        attempt: u32,
        started: DateTime<Utc>,
        result: Result<Flow, StepError>,
    ) -> Applied {
        match result {
            Ok(Flow::Continue {
                input,
                output,
                next,
            }) => {
                state.record(
                    step,
                    attempt,
                    "completed",
                    input,
                    Some(output.clone()),
                    None,
                    started,
                );
                state.set_step_output(&step.id, output);
                Applied::Next(state, next)
            }
            Ok(Flow::Park { input, wait }) => {
                state.record(step, attempt, "waiting", input, None, None, started);
                match wait {
                    Parking::Until(job) => state.outcome.jobs.push(job),
                    Parking::Events(wait) => state.outcome.wait = Some(wait),
                    Parking::Children => {
                        state.outcome.wait = Some(WaitFor::Children {
                            step: step.id.clone(),
                        })
                    }
                }
                Applied::Stop(state.finish(RunStatus::Waiting, Some(step.id.clone()), None, None))
            }
            Ok(Flow::Finish { output }) => {
                state.record(
                    step,
                    attempt,
                    "completed",
                    None,
                    Some(output.clone()),
                    None,
                    started,
                );
                Applied::Stop(state.finish(RunStatus::Completed, None, Some(output), None))
            }
            Err(error) => {
                if error.retryable && attempt < step.retry.max_attempts {
                    state.record(
                        step,
                        attempt,
                        "retrying",
                        None,
                        None,
                        Some(error.message.clone()),
                        started,
                    );
                    state.outcome.jobs.push(NewJob {
                        kind: JobKind::Step,
                        step: step.id.clone(),
                        timer: None,
                        payload: None,
                        due_at: self.now
                            + step.retry.backoff_after(attempt).max(
                                error
                                    .retry_after
                                    .and_then(|d| chrono::Duration::from_std(d).ok())
                                    .unwrap_or_default(),
                            ),
                        attempt: attempt + 1,
                    });
                    return Applied::Stop(state.finish(
                        RunStatus::Running,
                        Some(step.id.clone()),
                        None,
                        None,
                    ));
                }
                let message = if error.retryable {
                    format!("{} (gave up after {attempt} attempts)", error.message)
                } else {
                    error.message
                };
                state.record(
                    step,
                    attempt,
                    "failed",
                    None,
                    None,
                    Some(message.clone()),
                    started,
                );
                let error = format!("step `{}` failed: {message}", step.id);
                Applied::Stop(state.finish(
                    RunStatus::Failed,
                    Some(step.id.clone()),
                    None,
                    Some(error),
                ))
            }
        }
    }

    fn fail_run(&self, mut state: RunProgress, step: &str, message: String) -> JobOutcome {
        state.outcome.steps.push(StepRecord {
            step: step.to_string(),
            action: "engine".into(),
            attempt: 1,
            status: "failed".into(),
            input: None,
            output: None,
            error: Some(message.clone()),
            log: None,
            started_at: self.now,
            finished_at: self.now,
        });
        state.finish(
            RunStatus::Failed,
            Some(step.to_string()),
            None,
            Some(message),
        )
    }

    fn scope(&self, run: &RunState, state: &RunProgress) -> Scope<'_> {
        Scope::new(self.now, self.calendars)
            .with("input", run.input.clone())
            .with("vars", state.context["vars"].clone())
            .with("steps", state.context["steps"].clone())
            .with(
                "run",
                json!({
                    "id": run.id,
                    "workflow": run.workflow,
                    "started_at": run.created_at,
                    "parent_id": run.parent_id,
                }),
            )
    }

    fn due(&self, delay: &Delay, scope: &Scope<'_>) -> Result<DateTime<Utc>, StepError> {
        match delay {
            Delay::Duration(d) => Ok(self.now + *d),
            Delay::Business { duration, calendar } => {
                let calendar = self.calendars.get(calendar).ok_or_else(|| {
                    StepError::fatal(format!("calendar `{calendar}` is not loaded"))
                })?;
                calendar
                    .add_business_duration(self.now, *duration)
                    .map_err(|e| StepError::fatal(e.to_string()))
            }
            Delay::Until(expression) => Ok(expression.evaluate_time(scope)?),
        }
    }

    fn step(
        &self,
        step: &Step,
        run: &RunState,
        state: &mut RunProgress,
    ) -> Result<Flow, StepError> {
        state.step_count += 1;
        let seq = state.step_count;
        let scope = self.scope(run, state);
        match &step.action {
            Action::Set(values) => {
                let mut output = serde_json::Map::new();
                for (name, value) in values {
                    output.insert(name.clone(), value.evaluate(&scope)?);
                }
                if let Some(vars) = state.context["vars"].as_object_mut() {
                    vars.extend(output.clone());
                }
                Ok(Flow::Continue {
                    input: None,
                    output: Json::Object(output),
                    next: step.next,
                })
            }
            Action::Branch { cases, otherwise } => {
                for (i, (condition, target)) in cases.iter().enumerate() {
                    if condition.evaluate_bool(&scope)? {
                        let goto = &self.workflow.steps[*target].id;
                        return Ok(Flow::Continue {
                            input: None,
                            output: json!({"case": i, "goto": goto}),
                            next: Some(*target),
                        });
                    }
                }
                let goto = otherwise.map(|o| self.workflow.steps[o].id.clone());
                Ok(Flow::Continue {
                    input: None,
                    output: json!({"case": null, "goto": goto}),
                    next: *otherwise,
                })
            }
            Action::Wait(delay) => {
                let due = self.due(delay, &scope)?;
                Ok(Flow::Park {
                    input: Some(json!({"until": due})),
                    wait: Parking::Until(NewJob {
                        kind: JobKind::Resume,
                        step: step.id.clone(),
                        timer: None,
                        payload: Some(json!({"waited_until": due})),
                        due_at: due,
                        attempt: 1,
                    }),
                })
            }
            Action::WaitFor {
                events,
                key,
                timeout,
                ..
            } => {
                let key = match key {
                    Some(k) => Some(key_text(k.evaluate(&scope)?)),
                    None => None,
                };
                let keys = events
                    .iter()
                    .map(|t| {
                        let k = if t.starts_with(TIMER_EVENT_PREFIX) {
                            run.id.clone()
                        } else {
                            key.clone().unwrap_or_default()
                        };
                        (t.clone(), k)
                    })
                    .collect();
                let timeout_at = match timeout {
                    Some(t) => Some(self.due(t, &scope)?),
                    None => None,
                };
                Ok(Flow::Park {
                    input: Some(json!({"events": events, "key": key, "timeout_at": timeout_at})),
                    wait: Parking::Events(WaitFor::Events {
                        step: step.id.clone(),
                        keys,
                        timeout: timeout_at.map(|due| NewJob {
                            kind: JobKind::Timeout,
                            step: step.id.clone(),
                            timer: None,
                            payload: None,
                            due_at: due,
                            attempt: 1,
                        }),
                    }),
                })
            }
            Action::Timer { name, delay } => {
                let due = self.due(delay, &scope)?;
                state.outcome.cancel_timers.retain(|n| n != name);
                state
                    .outcome
                    .start_timers
                    .retain(|t| t.timer.as_deref() != Some(name));
                state.outcome.start_timers.push(NewJob {
                    kind: JobKind::Timer,
                    step: step.id.clone(),
                    timer: Some(name.clone()),
                    payload: None,
                    due_at: due,
                    attempt: 1,
                });
                Ok(Flow::Continue {
                    input: None,
                    output: json!({"timer": name, "due_at": due}),
                    next: step.next,
                })
            }
            Action::CancelTimer(name) => {
                state
                    .outcome
                    .start_timers
                    .retain(|t| t.timer.as_deref() != Some(name));
                state.outcome.cancel_timers.push(name.clone());
                Ok(Flow::Continue {
                    input: None,
                    output: json!({"cancelled": name}),
                    next: step.next,
                })
            }
            Action::Start {
                workflow,
                for_each,
                input,
            } => {
                let child = self.catalog.get(workflow).ok_or_else(|| {
                    StepError::fatal(format!("workflow `{workflow}` is not loaded or is invalid"))
                })?;
                let items: Vec<Option<Json>> = match for_each {
                    None => vec![None],
                    Some(list) => match list.evaluate(&scope)? {
                        Json::Array(items) => items.into_iter().map(Some).collect(),
                        other => {
                            return Err(StepError::fatal(format!(
                                "`for_each` must give a list, but gave {other}"
                            )));
                        }
                    },
                };
                if items.len() > self.limits.max_children_per_step {
                    return Err(StepError::fatal(format!(
                        "`start` would create {} runs; the limit is {}",
                        items.len(),
                        self.limits.max_children_per_step
                    )));
                }
                let first = child
                    .steps
                    .first()
                    .map(|s| s.id.clone())
                    .ok_or_else(|| StepError::fatal("the child workflow has no steps"))?;
                for (index, item) in items.iter().enumerate() {
                    let mut child_scope = self.scope(run, state);
                    if let Some(item) = item {
                        child_scope.set("item", item.clone());
                        child_scope.set("index", json!(index));
                    }
                    let child_input = input.evaluate(&child_scope)?;
                    child
                        .validate_input(&child_input)
                        .map_err(|e| StepError::fatal(format!("child run {index}: {e}")))?;
                    state.outcome.children.push(NewRun {
                        id: new_run_id(),
                        workflow: child.name.clone(),
                        version: child.version.clone(),
                        source: child.source.clone(),
                        input: child_input,
                        parent_id: Some(run.id.clone()),
                        trigger_key: Some(format!("child:{}:{seq}:{index}", run.id)),
                        first_step: first.clone(),
                        due_at: self.now,
                    });
                }
                Ok(Flow::Continue {
                    input: None,
                    output: json!({"workflow": workflow, "started": items.len()}),
                    next: step.next,
                })
            }
            Action::WaitChildren => Ok(Flow::Park {
                input: None,
                wait: Parking::Children,
            }),
            Action::Record {
                collection,
                key,
                data,
            } => {
                let key = key_text(key.evaluate(&scope)?);
                let data = data.evaluate(&scope)?;
                state.outcome.effects.push((
                    format!("{}:{seq}:{}:0", run.id, step.id),
                    Effect::Record {
                        collection: collection.clone(),
                        key: key.clone(),
                        data: data.clone(),
                    },
                ));
                Ok(Flow::Continue {
                    input: None,
                    output: json!({"collection": collection, "key": key, "data": data}),
                    next: step.next,
                })
            }
            Action::SendEmail(email) => {
                let text = |value: Json, field: &str| match value {
                    Json::String(s) => Ok(s),
                    Json::Null => Ok(String::new()),
                    Json::Number(n) => Ok(n.to_string()),
                    other => Err(StepError::fatal(format!(
                        "send_email `{field}` must be text, not {other}"
                    ))),
                };
                let to = text(email.to.evaluate(&scope)?, "to")?.trim().to_string();
                crate::email::parse_address(&to)
                    .map_err(|e| StepError::fatal(format!("send_email `to`: {e}")))?;
                let optional = |v: &Option<crate::workflow::ComputedValue>, field: &str| match v {
                    Some(v) => {
                        text(v.evaluate(&scope)?, field).map(|s| Some(s).filter(|s| !s.is_empty()))
                    }
                    None => Ok(None),
                };
                let name = optional(&email.name, "name")?;
                if name.as_ref().is_some_and(|n| n.contains(['\r', '\n'])) {
                    return Err(StepError::fatal(
                        "send_email `name` contains a line break; a header value may not",
                    ));
                }
                let locale = optional(&email.locale, "locale")?;
                let campaign =
                    optional(&email.campaign, "campaign")?.unwrap_or_else(|| run.workflow.clone());
                let data = email.data.evaluate(&scope)?;
                let id = uuid::Uuid::now_v7().to_string();
                let output = json!({
                    "message": id, "channel": email.channel, "template": email.template,
                    "to": to, "purpose": email.purpose, "campaign": campaign,
                });
                state.outcome.effects.push((
                    format!("{}:{seq}:{}:0", run.id, step.id),
                    Effect::Email(Box::new(super::effects::OutgoingEmail {
                        id,
                        workflow: run.workflow.clone(),
                        campaign,
                        channel: email.channel.clone(),
                        template: email.template.clone(),
                        locale,
                        to,
                        name,
                        purpose: email.purpose.clone(),
                        data,
                    })),
                ));
                Ok(Flow::Continue {
                    input: None,
                    output,
                    next: step.next,
                })
            }
            Action::Fail { message, retryable } => {
                let message = match message.evaluate(&scope)? {
                    Json::String(s) => s,
                    other => other.to_string(),
                };
                Err(StepError {
                    message,
                    retryable: *retryable,
                    retry_after: None,
                })
            }
            Action::Plugin { .. } | Action::Connector { .. } => Err(StepError::fatal(
                "a plugin step reached the pure executor; the engine calls plugins",
            )),
            Action::End { output } => {
                let output = match output {
                    Some(o) => o.evaluate(&scope)?,
                    None => state.context["vars"].clone(),
                };
                Ok(Flow::Finish { output })
            }
        }
    }
}

/// A correlation key as text: strings as they are, other values as JSON.
fn key_text(value: Json) -> String {
    match value {
        Json::String(s) => s,
        other => other.to_string(),
    }
}

/// A new, time-ordered run id.
pub fn new_run_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

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

struct RunProgress {
    context: Json,
    step_count: i64,
    outcome: JobOutcome,
    /// The log of the plugin call whose result is recorded next.
    pending_log: Option<Json>,
    /// Whether this chain already holds a plugin call's result.
    called: bool,
}

impl RunProgress {
    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        step: &Step,
        attempt: u32,
        status: &str,
        input: Option<Json>,
        output: Option<Json>,
        error: Option<String>,
        started: DateTime<Utc>,
    ) {
        self.outcome.steps.push(StepRecord {
            step: step.id.clone(),
            action: step.action.kind().to_string(),
            attempt,
            status: status.to_string(),
            input,
            output,
            error,
            log: self.pending_log.take(),
            started_at: started,
            finished_at: started,
        });
    }

    fn set_step_output(&mut self, step: &str, output: Json) {
        if let Some(steps) = self.context["steps"].as_object_mut() {
            steps.insert(step.to_string(), output);
        }
    }

    fn finish(
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
