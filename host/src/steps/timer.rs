//! `timer`: starts (or restarts) a named timer of the run; when it is due, the run gets
//! a `timer.NAME` event, which a `wait_for` can wait for. The run itself goes on.
//!
//! ```yaml
//! - id: arm_warning
//!   timer: {name: sla_warning, duration: 4h, calendar: office}
//! ```

use serde::Deserialize;
use serde_json::json;
use serde_saphyr::Spanned;

use super::delay::Delay;
use super::{Flow, StepAction, StepError, StepRun, StepSite};
use crate::run::{JobKind, NewJob};
use crate::workflow::compile::Compiler;
use crate::workflow::compile::references::Expressions;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimerSource {
    pub name: Spanned<String>,
    #[serde(default)]
    pub duration: Option<Spanned<String>>,
    #[serde(default)]
    pub calendar: Option<Spanned<String>>,
    #[serde(default)]
    pub until: Option<Spanned<String>>,
}

#[derive(Debug)]
pub struct Timer {
    pub name: String,
    pub delay: Delay,
}

impl StepAction for Timer {
    type Source = TimerSource;

    fn compile(
        timer: &Spanned<TimerSource>,
        _site: &StepSite<'_>,
        compiler: &mut Compiler<'_>,
    ) -> Option<Self> {
        let t = &timer.value;
        let delay = Delay::compile_parts(timer, &t.duration, &t.calendar, &t.until, compiler)?;
        Some(Timer {
            name: t.name.value.clone(),
            delay,
        })
    }

    fn expressions(source: &TimerSource, found: &mut Expressions) {
        if let Some(until) = &source.until {
            found.condition(until);
        }
    }

    fn execute(&self, run: &mut StepRun<'_>) -> Result<Flow, StepError> {
        let name = &self.name;
        let due = self.delay.due(run, &run.scope())?;
        let outcome = &mut *run.outcome;
        outcome.cancel_timers.retain(|n| n != name);
        outcome
            .start_timers
            .retain(|t| t.timer.as_deref() != Some(name));
        outcome.start_timers.push(NewJob {
            kind: JobKind::Timer,
            step: run.step.id.clone(),
            timer: Some(name.clone()),
            payload: None,
            due_at: due,
            attempt: 1,
        });
        Ok(Flow::Continue {
            input: None,
            output: json!({"timer": name, "due_at": due}),
            next: run.step.next,
        })
    }
}
