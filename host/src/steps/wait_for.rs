//! `wait_for`: parks the run until an event of one of the named types arrives with the
//! run's correlation key, or until the timeout, after which it goes to `on_timeout`.
//! Events of the run's own timers (`timer.NAME`) need no key.
//!
//! ```yaml
//! - id: await_acceptance
//!   wait_for:
//!     events: [lead.accepted]
//!     key: input.lead_id
//!     timeout: {duration: 3d}
//!     on_timeout: escalate
//! ```

use serde::Deserialize;
use serde_json::json;
use serde_saphyr::Spanned;

use super::delay::{Delay, DelaySource};
use super::execution::key_text;
use super::{Flow, Parking, StepAction, StepError, StepRun, StepSite};
use crate::expr::Expression;
use crate::run::TIMER_EVENT_PREFIX;
use crate::run::{JobKind, NewJob, WaitFor as Waiting};
use crate::workflow::compile::Compiler;
use crate::workflow::compile::references::Expressions;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitForSource {
    pub events: Spanned<Vec<Spanned<String>>>,
    /// Correlation key (CEL); events of the run's own timers need none.
    #[serde(default)]
    pub key: Option<Spanned<String>>,
    #[serde(default)]
    pub timeout: Option<Spanned<DelaySource>>,
    #[serde(default)]
    pub on_timeout: Option<Spanned<String>>,
}

#[derive(Debug)]
pub struct WaitFor {
    pub events: Vec<String>,
    pub key: Option<Expression>,
    pub timeout: Option<Delay>,
    /// Where the run goes after a timeout; `None`: the step's `next`.
    pub on_timeout: Option<usize>,
}

impl StepAction for WaitFor {
    type Source = WaitForSource;

    fn compile(
        wait_for: &Spanned<WaitForSource>,
        site: &StepSite<'_>,
        compiler: &mut Compiler<'_>,
    ) -> Option<Self> {
        let w = &wait_for.value;
        if w.events.value.is_empty() {
            let d = compiler
                .at
                .at(&w.events, "`events` lists no event type")
                .with_hint("name at least one event type, e.g. `[lead.accepted]`");
            compiler.error(d);
        }
        let needs_key = w
            .events
            .value
            .iter()
            .any(|e| !e.value.starts_with(TIMER_EVENT_PREFIX));
        let key = match &w.key {
            Some(k) => Some(compiler.expression(k)?),
            None if needs_key => {
                let d = compiler
                    .at
                    .at(
                        wait_for,
                        "`wait_for` needs a correlation `key` to match events to this run",
                    )
                    .with_hint("e.g. `key: input.lead_id`; only `timer.*` events need none");
                compiler.error(d);
                return None;
            }
            None => None,
        };
        let timeout = match &w.timeout {
            Some(t) => Some(Delay::compile(t, compiler)?),
            None => None,
        };
        let on_timeout = match &w.on_timeout {
            Some(t) => {
                if timeout.is_none() {
                    let d = compiler
                        .at
                        .at(t, "`on_timeout` without a `timeout`")
                        .with_hint("add `timeout: {duration: 3d}`");
                    compiler.error(d);
                }
                Some(compiler.target(t, site.index)?)
            }
            None => None,
        };
        Some(WaitFor {
            events: w.events.value.iter().map(|e| e.value.clone()).collect(),
            key,
            timeout,
            on_timeout,
        })
    }

    fn expressions(source: &WaitForSource, found: &mut Expressions) {
        if let Some(key) = &source.key {
            found.condition(key);
        }
        if let Some(until) = source.timeout.as_ref().and_then(|t| t.value.until.as_ref()) {
            found.condition(until);
        }
    }

    fn successors(&self, next: Option<usize>) -> Vec<usize> {
        next.into_iter().chain(self.on_timeout).collect()
    }

    fn on_timeout(&self) -> Option<usize> {
        self.on_timeout
    }

    fn execute(&self, run: &mut StepRun<'_>) -> Result<Flow, StepError> {
        let scope = run.scope();
        let key = match &self.key {
            Some(k) => Some(key_text(k.evaluate(&scope)?)),
            None => None,
        };
        let keys = self
            .events
            .iter()
            .map(|t| {
                let k = if t.starts_with(TIMER_EVENT_PREFIX) {
                    run.run.id.clone()
                } else {
                    key.clone().unwrap_or_default()
                };
                (t.clone(), k)
            })
            .collect();
        let timeout_at = match &self.timeout {
            Some(t) => Some(t.due(run, &scope)?),
            None => None,
        };
        let step = &run.step.id;
        Ok(Flow::Park {
            input: Some(json!({"events": self.events, "key": key, "timeout_at": timeout_at})),
            wait: Parking::Events(Waiting::Events {
                step: step.clone(),
                keys,
                timeout: timeout_at.map(|due| NewJob {
                    kind: JobKind::Timeout,
                    step: step.clone(),
                    timer: None,
                    payload: None,
                    due_at: due,
                    attempt: 1,
                }),
            }),
        })
    }
}
