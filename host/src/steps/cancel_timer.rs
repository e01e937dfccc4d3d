//! `cancel_timer`: stops a named timer of the run (one started in this chain of steps
//! never starts).
//!
//! ```yaml
//! - id: disarm
//!   cancel_timer: sla_warning
//! ```

use serde_json::json;
use serde_saphyr::Spanned;

use super::{Flow, StepAction, StepError, StepRun, StepSite};
use crate::workflow::compile::Compiler;

#[derive(Debug)]
pub struct CancelTimer {
    pub name: String,
}

impl StepAction for CancelTimer {
    /// The timer's name.
    type Source = String;

    fn compile(
        name: &Spanned<String>,
        _site: &StepSite<'_>,
        _compiler: &mut Compiler<'_>,
    ) -> Option<Self> {
        Some(CancelTimer {
            name: name.value.clone(),
        })
    }

    fn execute(&self, run: &mut StepRun<'_>) -> Result<Flow, StepError> {
        let name = &self.name;
        run.outcome
            .start_timers
            .retain(|t| t.timer.as_deref() != Some(name));
        run.outcome.cancel_timers.push(name.clone());
        Ok(Flow::Continue {
            input: None,
            output: json!({"cancelled": name}),
            next: run.step.next,
        })
    }
}
