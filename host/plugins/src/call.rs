//! Calling a loaded plugin: a step's `run` ([`Plugin::call`]) or one connector function
//! ([`Plugin::call_connector`]), on the runtime's plugin threads, in a fresh instance,
//! and judging what came back — traps, refused capabilities, the plugin's own error,
//! output size, JSON and schema — into a [`CallReport`] or a [`CallFailure`].

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value as Json;
use wasmtime::Store;

use crate::instantiate::instantiate;
use crate::plugin::{Exports, first_problem};
use crate::sandbox::State;
use crate::{CallError, CallFailure, CallReport, LogLine, Plugin, bindings, connector};

/// The run step a call belongs to.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    /// The run, so a plugin can make its effects idempotent per run.
    pub run_id: String,
    /// The workflow the run belongs to.
    pub workflow: String,
    /// The step's id within the workflow.
    pub step: String,
    /// 1 for the first attempt; retries count up.
    pub attempt: u32,
}

/// What a call returned before the host judged it: the output text or the plugin's
/// error, or a trap.
pub(crate) type GuestAnswer =
    wasmtime::Result<Result<String, bindings::kontor::plugin::types::PluginError>>;

impl Plugin {
    /// Runs the plugin's step once, in a fresh instance with this plugin's limits, on
    /// the runtime's plugin threads.
    pub async fn call(
        self: &Arc<Self>,
        invocation: &Invocation,
        input: &Json,
    ) -> Result<CallReport, CallFailure> {
        self.on_plugin_threads(invocation, None, input).await
    }

    /// Calls connector function `function` (its WIT name, e.g. `customer-by-email`)
    /// with the arguments in `args`, on the runtime's plugin threads.
    pub async fn call_connector(
        self: &Arc<Self>,
        invocation: &Invocation,
        function: &str,
        args: &Json,
    ) -> Result<CallReport, CallFailure> {
        self.on_plugin_threads(invocation, Some(function.to_string()), args)
            .await
    }

    async fn on_plugin_threads(
        self: &Arc<Self>,
        invocation: &Invocation,
        function: Option<String>,
        input: &Json,
    ) -> Result<CallReport, CallFailure> {
        let Some(executor) = self.runtime.executor.as_ref() else {
            return match function {
                None => Box::pin(self.call_in_place(invocation, input)).await,
                Some(f) => Box::pin(self.call_connector_in_place(&f, input)).await,
            };
        };
        let plugin = self.clone();
        let invocation = invocation.clone();
        let input = input.clone();
        let started = Instant::now();
        executor
            .spawn(async move {
                match function {
                    None => plugin.call_in_place(&invocation, &input).await,
                    Some(f) => plugin.call_connector_in_place(&f, &input).await,
                }
            })
            .await
            .unwrap_or_else(|e| {
                Err(CallFailure {
                    error: CallError::Trap(format!("the call was abandoned: {e}")),
                    logs: Vec::new(),
                    duration: started.elapsed(),
                    retry_after: None,
                })
            })
    }

    /// Like [`Plugin::call`], but on the calling task: the sandbox's own cost, without the
    /// hand-off to the plugin threads (used by `kontor bench plugin`).
    pub async fn call_in_place(
        &self,
        invocation: &Invocation,
        input: &Json,
    ) -> Result<CallReport, CallFailure> {
        let started = Instant::now();
        let fail = |error: CallError| CallFailure {
            error,
            logs: Vec::new(),
            duration: started.elapsed(),
            retry_after: None,
        };
        let Exports::Step(pre) = &self.exports else {
            return Err(fail(CallError::WrongKind {
                plugin: self.name.clone(),
                world: self.world.name(),
                message: "call one of its functions with `connector:` and `call:`, not `plugin:`"
                    .into(),
            }));
        };
        let input_text = input.to_string();
        self.check_input_size(input_text.len()).map_err(fail)?;
        if let Some(problem) = self
            .input_schema
            .as_ref()
            .and_then(|s| first_problem(s, input))
        {
            return Err(fail(CallError::InvalidInput(problem)));
        }
        let mut store = self.store();
        let wit_invocation = bindings::kontor::plugin::types::Invocation {
            run_id: invocation.run_id.clone(),
            workflow: invocation.workflow.clone(),
            step: invocation.step.clone(),
            attempt: invocation.attempt,
        };
        let answer = async {
            let instance = instantiate(pre, &mut store).await?;
            instance
                .kontor_plugin_handler()
                .call_run(
                    &mut store,
                    &wit_invocation,
                    &self.context.config_text,
                    &input_text,
                )
                .await
        }
        .await;
        self.finish(store, answer, started, true)
    }

    /// Like [`Plugin::call_connector`], on the calling task.
    pub async fn call_connector_in_place(
        &self,
        function: &str,
        args: &Json,
    ) -> Result<CallReport, CallFailure> {
        let started = Instant::now();
        let fail = |error: CallError| CallFailure {
            error,
            logs: Vec::new(),
            duration: started.elapsed(),
            retry_after: None,
        };
        let Exports::Connector(pre) = &self.exports else {
            return Err(fail(CallError::WrongKind {
                plugin: self.name.clone(),
                world: self.world.name(),
                message: format!(
                    "it has no connector functions; call it with `plugin: {}`",
                    self.name
                ),
            }));
        };
        self.check_input_size(args.to_string().len())
            .map_err(fail)?;
        let call = connector::ConnectorCall::parse(function, args)
            .map_err(|m| fail(CallError::InvalidInput(m)))?;
        let mut store = self.store();
        let answer = async {
            let instance = instantiate(pre, &mut store).await?;
            call.invoke(instance.kontor_plugin_connector(), &mut store)
                .await
        }
        .await;
        self.finish(store, answer, started, false)
    }

    /// Refuses an input document larger than the plugin's `max_input`.
    fn check_input_size(&self, size: usize) -> Result<(), CallError> {
        if size > self.settings.max_input {
            return Err(CallError::InputTooLarge {
                size,
                limit: self.settings.max_input,
            });
        }
        Ok(())
    }

    /// Judges what a call returned: traps, refusals, the plugin's error, output size,
    /// JSON and schema; collects its log (secrets redacted) and key-value writes.
    fn finish(
        &self,
        mut store: Store<State>,
        answer: GuestAnswer,
        started: Instant,
        check_schema: bool,
    ) -> Result<CallReport, CallFailure> {
        let fuel_used = self.settings.fuel.unwrap_or(u64::MAX) - store.get_fuel().unwrap_or(0);
        let answer = answer.map_err(|e| self.classify(e, store.data()));
        let state = store.data_mut();
        let peak_memory = state.peak_memory;
        let logs = state.take_logs();
        for line in &logs {
            // At the plugin's own level: a debug line per call stays out of an info log.
            match line.level.as_str() {
                "trace" => {
                    tracing::trace!(plugin = %self.name, fields = ?line.fields, "{}", line.message)
                }
                "debug" => {
                    tracing::debug!(plugin = %self.name, fields = ?line.fields, "{}", line.message)
                }
                "warn" | "stderr" => {
                    tracing::warn!(plugin = %self.name, level = %line.level, fields = ?line.fields, "{}", line.message)
                }
                "error" => {
                    tracing::error!(plugin = %self.name, fields = ?line.fields, "{}", line.message)
                }
                _ => {
                    tracing::info!(plugin = %self.name, level = %line.level, fields = ?line.fields, "{}", line.message)
                }
            }
        }
        let denials = std::mem::take(&mut state.denials);
        let retry_after = state.retry_after;
        let redact = |m: String| state.redact(&m);
        let fail = |error: CallError, logs: Vec<LogLine>| CallFailure {
            retry_after: retry_after.filter(|_| error.is_retryable()),
            error,
            logs,
            duration: started.elapsed(),
        };
        if !denials.is_empty() {
            return Err(fail(CallError::Denied(redact(denials.join("; "))), logs));
        }
        use bindings::kontor::plugin::types::PluginError;
        let text = match answer {
            Err(CallError::Trap(m)) => return Err(fail(CallError::Trap(redact(m)), logs)),
            Err(error) => return Err(fail(error, logs)),
            Ok(Err(PluginError::Retryable(m))) => {
                return Err(fail(CallError::Retryable(redact(m)), logs));
            }
            Ok(Err(PluginError::Fatal(m))) => return Err(fail(CallError::Fatal(redact(m)), logs)),
            Ok(Err(PluginError::InvalidInput(m))) => {
                return Err(fail(CallError::InvalidInput(redact(m)), logs));
            }
            Ok(Ok(text)) => text,
        };
        if text.len() > self.settings.max_output {
            return Err(fail(
                CallError::OutputTooLarge {
                    size: text.len(),
                    limit: self.settings.max_output,
                },
                logs,
            ));
        }
        let output: Json = match serde_json::from_str(&text) {
            Ok(o) => o,
            Err(e) => {
                return Err(fail(
                    CallError::BadOutput(format!("it is not JSON: {e}")),
                    logs,
                ));
            }
        };
        if check_schema
            && let Some(problem) = self
                .output_schema
                .as_ref()
                .and_then(|s| first_problem(s, &output))
        {
            return Err(fail(
                CallError::BadOutput(format!(
                    "it does not fit the plugin's output schema: {problem}"
                )),
                logs,
            ));
        }
        let kv_writes = state.take_kv_writes();
        Ok(CallReport {
            output,
            logs,
            duration: started.elapsed(),
            fuel_used,
            peak_memory,
            kv_writes,
        })
    }
}
