//! `end`: completes the run, with `output` or, without it, the run's variables as its
//! output.
//!
//! ```yaml
//! - id: done
//!   end: {output: {team: "${vars.team}"}}
//! ```

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{Flow, StepAction, StepError, StepRun, StepSite};
use crate::workflow::ComputedValue;
use crate::workflow::compile::Compiler;
use crate::workflow::compile::references::Expressions;
use crate::workflow::source::ValuesSource;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndSource {
    #[serde(default)]
    pub output: Option<ValuesSource>,
}

#[derive(Debug)]
pub struct End {
    /// `None`: the run's variables.
    pub output: Option<ComputedValue>,
}

impl StepAction for End {
    type Source = EndSource;
    const ENDS_RUN: bool = true;

    fn compile(
        end: &Spanned<EndSource>,
        _site: &StepSite<'_>,
        compiler: &mut Compiler<'_>,
    ) -> Option<Self> {
        let output = match &end.value.output {
            Some(values) => Some(compiler.values(values)?),
            None => None,
        };
        Some(End { output })
    }

    fn expressions(source: &EndSource, found: &mut Expressions) {
        if let Some(output) = &source.output {
            found.values(output);
        }
    }

    fn execute(&self, run: &mut StepRun<'_>) -> Result<Flow, StepError> {
        let output = match &self.output {
            Some(o) => o.evaluate(&run.scope())?,
            None => run.context["vars"].clone(),
        };
        Ok(Flow::Finish { output })
    }
}
