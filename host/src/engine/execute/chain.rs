//! Running a chain of steps inline: each step's result is recorded and decides the next,
//! until one waits, the run ends, a step fails, a plugin must be called, or the chain
//! is long enough to commit (a continuation job carries on).

use chrono::{DateTime, Utc};

use super::progress::RunProgress;
use super::{Execution, Executor, MAX_INLINE_STEPS, PendingCall};
use crate::run::StepStatus;
use crate::run::{JobKind, JobOutcome, NewJob, RunState, RunStatus, StepRecord, WaitFor};
use crate::steps::{Flow, Parking, StepError, StepRun};
use crate::workflow::Step;

/// Where the run goes after a step.
enum Applied {
    Next(RunProgress, Option<usize>),
    Stop(JobOutcome),
}

impl Executor<'_> {
    /// Runs steps from `cursor` on; `resolved` is the result of the step at `cursor` when
    /// it was computed outside (a plugin call).
    pub(super) fn drive(
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
        let calls_plugin = step.action.calls_plugin();
        // One plugin call per job, so each call's result is committed before the next;
        // a call that commits its own result needs no commit of the job before it.
        let commit_first = calls_plugin && state.called && !step.action.call_commits_itself();
        if *inline >= MAX_INLINE_STEPS || commit_first {
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
        state.step_count += 1;
        if calls_plugin {
            return match self.run_step(step, run, &mut state) {
                Ok(Flow::Call(call)) => Err(Execution::Call(Box::new(PendingCall {
                    plugin: call.plugin,
                    function: call.function,
                    input: call.input,
                    assign: call.assign,
                    step: step.id.clone(),
                    attempt,
                    state,
                    cursor,
                    inline: *inline,
                }))),
                other => Ok((state, other)),
            };
        }
        let span =
            tracing::debug_span!("step", step = %step.id, action = step.action.kind(), attempt);
        let timer = std::time::Instant::now();
        let result = span.in_scope(|| self.run_step(step, run, &mut state));
        metrics::histogram!("kontor_step_duration_seconds", "action" => step.action.kind())
            .record(timer.elapsed().as_secs_f64());
        Ok((state, result))
    }

    /// Lets the step's action run against the run's progress.
    fn run_step(
        &self,
        step: &Step,
        run: &RunState,
        state: &mut RunProgress,
    ) -> Result<Flow, StepError> {
        let mut step_run = StepRun {
            run,
            workflow: self.workflow,
            catalog: self.catalog,
            calendars: self.calendars,
            now: self.now,
            max_children: self.limits.max_children_per_step,
            max_depth: self.limits.max_run_depth,
            expression_budget: self.limits.expression_budget,
            cancel: self.cancel,
            step,
            seq: state.step_count,
            resumed: state.resumed.take(),
            context: &mut state.context,
            outcome: &mut state.outcome,
        };
        step.action.execute(&mut step_run)
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
                    StepStatus::Completed,
                    input,
                    Some(output.clone()),
                    None,
                    started,
                );
                state.set_step_output(&step.id, output);
                Applied::Next(state, next)
            }
            Ok(Flow::Park { input, wait }) => {
                state.record(
                    step,
                    attempt,
                    StepStatus::Waiting,
                    input,
                    None,
                    None,
                    started,
                );
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
                    StepStatus::Completed,
                    None,
                    Some(output.clone()),
                    None,
                    started,
                );
                Applied::Stop(state.finish(RunStatus::Completed, None, Some(output), None))
            }
            Ok(Flow::Again { progress }) => {
                // No record yet: the step's one record comes when it has done all its work.
                state.outcome.jobs.push(NewJob {
                    payload: Some(progress),
                    attempt,
                    ..NewJob::step(&step.id, self.now)
                });
                Applied::Stop(state.finish(RunStatus::Running, Some(step.id.clone()), None, None))
            }
            // Only the engine makes plugin calls; `next_step` hands them to it.
            Ok(Flow::Call(_)) => {
                let error = StepError::fatal(
                    "a plugin step reached the pure executor; the engine calls plugins",
                );
                self.failed(state, step, attempt, started, error)
            }
            Err(error) => self.failed(state, step, attempt, started, error),
        }
    }

    /// A failed step: retried after its backoff while attempts are left and the error is
    /// retryable, else the run goes on at the step's `on_error` with the error as the
    /// step's output, or fails.
    fn failed(
        &self,
        mut state: RunProgress,
        step: &Step,
        attempt: u32,
        started: DateTime<Utc>,
        error: StepError,
    ) -> Applied {
        if error.retryable && attempt < step.retry.max_attempts {
            state.record(
                step,
                attempt,
                StepStatus::Retrying,
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
            StepStatus::Failed,
            None,
            None,
            Some(message.clone()),
            started,
        );
        if let Some(recovery) = step.on_error {
            state.set_step_output(&step.id, serde_json::json!({ "error": message }));
            return Applied::Next(state, Some(recovery));
        }
        let error = format!("step `{}` failed: {message}", step.id);
        Applied::Stop(state.finish(RunStatus::Failed, Some(step.id.clone()), None, Some(error)))
    }

    /// Fails the run for a reason of the engine's, not of a step's action.
    pub(super) fn fail_run(
        &self,
        mut state: RunProgress,
        step: &str,
        message: String,
    ) -> JobOutcome {
        state.outcome.steps.push(StepRecord {
            step: step.to_string(),
            action: "engine".into(),
            attempt: 1,
            status: StepStatus::Failed,
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
}
