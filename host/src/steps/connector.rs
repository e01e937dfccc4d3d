//! `connector`: calls one function of an ERP connector plugin — `call` names it,
//! `input` holds its arguments — and the answer is the step's output. `kontor check`
//! knows every function's arguments from the `erp-connector` world.
//!
//! ```yaml
//! - id: customer
//!   connector: erp-fixture
//!   call: customer-by-email
//!   input: {email: "${input.email}"}
//! ```

use serde_json::json;
use serde_saphyr::Spanned;

use super::plugin::check_plugin;
use super::{Flow, PluginCall, StepAction, StepError, StepRun, StepSite, StepSource};
use crate::diagnostics::closest;
use crate::workflow::ComputedValue;
use crate::workflow::compile::Compiler;
use crate::workflow::source::ValuesSource;

#[derive(Debug)]
pub struct Connector {
    pub name: String,
    pub function: String,
    /// The function's arguments; `None`: none.
    pub input: Option<ComputedValue>,
}

impl StepAction for Connector {
    /// The connector plugin's name; the step's `call` names the function.
    type Source = String;
    const TAKES_INPUT: bool = true;
    const CALLS_PLUGIN: bool = true;

    fn compile(
        name: &Spanned<String>,
        site: &StepSite<'_>,
        compiler: &mut Compiler<'_>,
    ) -> Option<Self> {
        let step = &site.step.value;
        let function = check_call(site.step, name, &step.call, &step.input, compiler)?;
        let input = match &step.input {
            Some(values) => Some(compiler.values(&values.value)?),
            None => None,
        };
        Some(Connector {
            name: name.value.clone(),
            function,
            input,
        })
    }

    fn check_step_without(step: &Spanned<StepSource>, compiler: &mut Compiler<'_>) {
        if let Some(call) = &step.value.call {
            let d = compiler
                .at
                .at(call, "`call` belongs to a `connector` step")
                .with_hint("name the connector plugin with `connector: NAME`");
            compiler.error(d);
        }
    }

    fn execute(&self, run: &mut StepRun<'_>) -> Result<Flow, StepError> {
        let input = match &self.input {
            Some(input) => input.evaluate(&run.scope())?,
            None => json!({}),
        };
        Ok(Flow::Call(PluginCall {
            plugin: self.name.clone(),
            function: Some(self.function.clone()),
            input,
            assign: None,
        }))
    }
}

/// Checks a `connector` step: the plugin is an ERP connector, `call` is one of its
/// functions, and the arguments are ones that function takes. Returns the function.
fn check_call(
    step: &Spanned<StepSource>,
    name: &Spanned<String>,
    call: &Option<Spanned<String>>,
    input: &Option<Spanned<ValuesSource>>,
    compiler: &mut Compiler<'_>,
) -> Option<String> {
    check_plugin(name, compiler);
    if let Some(index) = compiler.environment.plugins
        && let Some(world) = index.worlds.get(&name.value)
        && *world != kontor_plugins::World::ErpConnector
    {
        let d = compiler
            .at
            .at(
                name,
                format!(
                    "plugin `{}` is a {} plugin, not an ERP connector",
                    name.value,
                    world.name()
                ),
            )
            .with_hint(format!("call it with `plugin: {}`", name.value));
        compiler.error(d);
    }
    let names = || {
        kontor_plugins::CONNECTOR_FUNCTIONS
            .iter()
            .map(|f| f.name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(call) = call else {
        let d = compiler
            .at
            .at(
                step,
                "a `connector` step names the function it calls with `call`",
            )
            .with_hint(format!("one of: {}", names()));
        compiler.error(d);
        return None;
    };
    let Some(function) = kontor_plugins::CONNECTOR_FUNCTIONS
        .iter()
        .find(|f| f.name == call.value)
    else {
        let mut d = compiler.at.at(
            call,
            format!(
                "`{}` is not a function of the erp-connector world",
                call.value
            ),
        );
        d = match closest(
            &call.value,
            kontor_plugins::CONNECTOR_FUNCTIONS.iter().map(|f| f.name),
        ) {
            Some(close) => d.with_hint(format!("did you mean `{close}`?")),
            None => d.with_hint(format!("the functions are: {}", names())),
        };
        compiler.error(d);
        return None;
    };
    let signature = || {
        format!(
            "`{}` takes {}",
            function.name,
            function
                .arguments
                .iter()
                .map(|a| match a.strip_suffix('?') {
                    Some(optional) => format!("`{optional}` (optional)"),
                    None => format!("`{a}`"),
                })
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let given: Vec<&String> = input
        .as_ref()
        .map(|i| i.value.keys().collect())
        .unwrap_or_default();
    for (key, value) in input.iter().flat_map(|i| i.value.iter()) {
        if !function.accepts(key) {
            let d = compiler.at.at(
                value,
                format!("`{}` does not take an argument `{key}`", function.name),
            );
            let close = closest(
                key,
                function.arguments.iter().map(|a| a.trim_end_matches('?')),
            );
            let d = match close {
                Some(close) => d.with_hint(format!("did you mean `{close}`? {}", signature())),
                None => d.with_hint(signature()),
            };
            compiler.error(d);
        }
    }
    for required in function.required() {
        if !given.iter().any(|k| k.as_str() == required) {
            let d = match input {
                Some(i) => compiler
                    .at
                    .at(i, format!("`{}` needs `{required}`", function.name)),
                None => compiler.at.at(
                    call,
                    format!("`{}` needs `{required}`: give it in `input`", function.name),
                ),
            }
            .with_hint(signature());
            compiler.error(d);
        }
    }
    Some(function.name.to_string())
}
