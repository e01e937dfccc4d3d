//! `plugin`: calls a Wasm step plugin (`NAME.wasm` in the plugins folder) with `input`
//! (default: the run's input); its answer is the step's output. The engine makes the
//! call, in the sandbox, and commits its result with the steps around it.
//!
//! ```yaml
//! - id: score
//!   plugin: lead-scoring
//!   input: {employees: "${input.employees}"}
//! ```

use serde_saphyr::Spanned;

use super::{Flow, PluginCall, StepAction, StepError, StepRun, StepSite};
use crate::diagnostics::closest;
use crate::workflow::ComputedValue;
use crate::workflow::compile::Compiler;

#[derive(Debug)]
pub struct Plugin {
    pub name: String,
    /// `None`: the run's input.
    pub input: Option<ComputedValue>,
}

impl StepAction for Plugin {
    /// The plugin's name.
    type Source = String;
    const TAKES_INPUT: bool = true;
    const CALLS_PLUGIN: bool = true;

    fn compile(
        name: &Spanned<String>,
        site: &StepSite<'_>,
        compiler: &mut Compiler<'_>,
    ) -> Option<Self> {
        check_plugin(name, compiler);
        let input = match &site.step.value.input {
            Some(values) => Some(compiler.values(&values.value)?),
            None => None,
        };
        Some(Plugin {
            name: name.value.clone(),
            input,
        })
    }

    fn execute(&self, run: &mut StepRun<'_>) -> Result<Flow, StepError> {
        let input = match &self.input {
            Some(input) => input.evaluate(&run.scope())?,
            None => run.run.input.clone(),
        };
        Ok(Flow::Call(PluginCall {
            plugin: self.name.clone(),
            function: None,
            input,
            assign: None,
        }))
    }
}

/// Checks that plugin `name` exists and loads (for `plugin` and `connector` steps).
pub fn check_plugin(name: &Spanned<String>, compiler: &mut Compiler<'_>) {
    let Some(index) = compiler.environment.plugins else {
        return;
    };
    match index.plugins.get(&name.value) {
        Some(None) => {}
        Some(Some(problem)) => {
            let d = compiler.at.at(
                name,
                format!("plugin `{}` cannot be loaded: {problem}", name.value),
            );
            compiler.error(d);
        }
        None => {
            let mut d = compiler.at.at(
                name,
                format!(
                    "there is no plugin `{}` ({} does not exist)",
                    name.value,
                    index.dir.join(format!("{}.wasm", name.value)).display()
                ),
            );
            if let Some(close) = closest(&name.value, index.plugins.keys().map(String::as_str)) {
                d = d.with_hint(format!("did you mean `{close}`?"));
            } else {
                d = d.with_hint(format!(
                    "build it with `kontor plugin build {}`",
                    name.value
                ));
            }
            compiler.error(d);
        }
    }
}
