//! `set`: computes values and keeps them as the run's variables, which later steps read
//! as `vars.NAME`.
//!
//! ```yaml
//! - id: score
//!   set:
//!     points: ${input.employees > 100 ? 20 : 5}
//! ```

use serde_json::Value as Json;
use serde_saphyr::Spanned;

use super::{Flow, StepAction, StepError, StepRun, StepSite};
use crate::workflow::ComputedValue;
use crate::workflow::compile::Compiler;
use crate::workflow::compile::references::Expressions;
use crate::workflow::source::ValuesSource;

#[derive(Debug)]
pub struct Set {
    /// In the order written.
    pub values: Vec<(String, ComputedValue)>,
}

impl StepAction for Set {
    /// The variables to set and their values.
    type Source = ValuesSource;

    fn compile(
        source: &Spanned<ValuesSource>,
        _site: &StepSite<'_>,
        compiler: &mut Compiler<'_>,
    ) -> Option<Self> {
        Some(Set {
            values: compiler.values_ordered(&source.value)?,
        })
    }

    fn expressions(source: &ValuesSource, found: &mut Expressions) {
        found.values(source);
    }

    fn variables(source: &ValuesSource) -> Vec<String> {
        source.keys().cloned().collect()
    }

    fn execute(&self, run: &mut StepRun<'_>) -> Result<Flow, StepError> {
        let scope = run.scope();
        let mut output = serde_json::Map::new();
        for (name, value) in &self.values {
            output.insert(name.clone(), value.evaluate(&scope)?);
        }
        if let Some(vars) = run.context["vars"].as_object_mut() {
            vars.extend(output.clone());
        }
        Ok(Flow::Continue {
            input: None,
            output: Json::Object(output),
            next: run.step.next,
        })
    }
}
