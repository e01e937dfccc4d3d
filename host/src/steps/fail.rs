//! `fail`: fails the step with a message — retried like any step when `retryable`, the
//! run failed otherwise.
//!
//! ```yaml
//! - id: no_customer
//!   fail: {message: "no customer ${input.email}"}
//! ```

use serde::Deserialize;
use serde_json::Value as Json;
use serde_saphyr::Spanned;

use super::{Flow, StepAction, StepError, StepRun, StepSite};
use crate::workflow::ComputedValue;
use crate::workflow::compile::Compiler;
use crate::workflow::compile::references::Expressions;
use crate::workflow::source::ValueSource;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailSource {
    pub message: ValueSource,
    #[serde(default)]
    pub retryable: bool,
}

#[derive(Debug)]
pub struct Fail {
    pub message: ComputedValue,
    pub retryable: bool,
}

impl StepAction for Fail {
    type Source = FailSource;
    const ENDS_RUN: bool = true;

    fn compile(
        fail: &Spanned<FailSource>,
        _site: &StepSite<'_>,
        compiler: &mut Compiler<'_>,
    ) -> Option<Self> {
        Some(Fail {
            message: compiler.value(&fail.value.message)?,
            retryable: fail.value.retryable,
        })
    }

    fn expressions(source: &FailSource, found: &mut Expressions) {
        found.value(&source.message);
    }

    fn execute(&self, run: &mut StepRun<'_>) -> Result<Flow, StepError> {
        let message = match self.message.evaluate(&run.scope())? {
            Json::String(s) => s,
            other => other.to_string(),
        };
        Err(StepError {
            message,
            retryable: self.retryable,
            retry_after: None,
        })
    }
}
