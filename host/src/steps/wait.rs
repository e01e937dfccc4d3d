//! `wait`: parks the run for a duration — working time when a calendar is named — or
//! until a computed time; a resume job wakes it.
//!
//! ```yaml
//! - id: follow_up_later
//!   wait: {duration: 2d, calendar: office}
//! ```

use serde_json::json;
use serde_saphyr::Spanned;

use super::delay::{Delay, DelaySource};
use super::{Flow, Parking, StepAction, StepError, StepRun, StepSite};
use crate::run::{JobKind, NewJob};
use crate::workflow::compile::Compiler;
use crate::workflow::compile::references::Expressions;

#[derive(Debug)]
pub struct Wait {
    pub delay: Delay,
}

impl StepAction for Wait {
    type Source = DelaySource;

    fn compile(
        source: &Spanned<DelaySource>,
        _site: &StepSite<'_>,
        compiler: &mut Compiler<'_>,
    ) -> Option<Self> {
        Some(Wait {
            delay: Delay::compile(source, compiler)?,
        })
    }

    fn expressions(source: &DelaySource, found: &mut Expressions) {
        if let Some(until) = &source.until {
            found.condition(until);
        }
    }

    fn execute(&self, run: &mut StepRun<'_>) -> Result<Flow, StepError> {
        let due = self.delay.due(run, &run.scope())?;
        Ok(Flow::Park {
            input: Some(json!({"until": due})),
            wait: Parking::Until(NewJob {
                kind: JobKind::Resume,
                step: run.step.id.clone(),
                timer: None,
                payload: Some(json!({"waited_until": due})),
                due_at: due,
                attempt: 1,
            }),
        })
    }
}
