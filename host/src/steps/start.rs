//! `start`: starts child runs of another workflow — one, or one per element of a
//! `for_each` list (which each child's input sees as `item`, at `index`). The parent
//! goes on; `wait_children` waits for them.
//!
//! ```yaml
//! - id: notify_buyers
//!   start:
//!     workflow: recall-notice
//!     for_each: steps.buyers.customers
//!     input: {customer_id: "${item.id}"}
//! ```

use serde::Deserialize;
use serde_json::{Value as Json, json};
use serde_saphyr::Spanned;

use super::{Flow, StepAction, StepError, StepRun, StepSite};
use crate::diagnostics::closest;
use crate::expr::Expression;
use crate::run::NewRun;
use crate::workflow::ComputedValue;
use crate::workflow::compile::Compiler;
use crate::workflow::compile::references::Expressions;
use crate::workflow::source::ValuesSource;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartSource {
    pub workflow: Spanned<String>,
    /// A list expression: one child run per element, which the input sees as `item`.
    #[serde(default)]
    pub for_each: Option<Spanned<String>>,
    #[serde(default)]
    pub input: Option<ValuesSource>,
}

#[derive(Debug)]
pub struct Start {
    pub workflow: String,
    /// Line and column of the child workflow's name, for the catalog's cycle check.
    pub workflow_at: (u32, u32),
    pub for_each: Option<Expression>,
    pub input: ComputedValue,
}

impl StepAction for Start {
    type Source = StartSource;

    fn compile(
        start: &Spanned<StartSource>,
        _site: &StepSite<'_>,
        compiler: &mut Compiler<'_>,
    ) -> Option<Self> {
        let s = &start.value;
        let names = compiler.environment.workflow_names;
        if !names.contains(&s.workflow.value) {
            let mut d = compiler.at.at(
                &s.workflow,
                format!("there is no workflow `{}`", s.workflow.value),
            );
            if let Some(close) = closest(&s.workflow.value, names.iter().map(String::as_str)) {
                d = d.with_hint(format!("did you mean `{close}`?"));
            } else {
                d = d.with_hint(
                    "child workflows are files in the same folder, named without `.yaml`",
                );
            }
            compiler.error(d);
        }
        let for_each = match &s.for_each {
            Some(e) => Some(compiler.expression(e)?),
            None => None,
        };
        let input = match &s.input {
            Some(values) => compiler.values(values)?,
            None => ComputedValue::Object(Vec::new()),
        };
        Some(Start {
            workflow: s.workflow.value.clone(),
            workflow_at: (
                s.workflow.referenced.line() as u32,
                s.workflow.referenced.column() as u32,
            ),
            for_each,
            input,
        })
    }

    fn expressions(source: &StartSource, found: &mut Expressions) {
        if let Some(list) = &source.for_each {
            found.condition(list);
        }
        if let Some(input) = &source.input {
            if source.for_each.is_some() {
                found.fan_out_values(input);
            } else {
                found.values(input);
            }
        }
    }

    fn execute(&self, run: &mut StepRun<'_>) -> Result<Flow, StepError> {
        let workflow = &self.workflow;
        let catalog = run.catalog;
        let child = catalog.get(workflow).ok_or_else(|| {
            StepError::fatal(format!("workflow `{workflow}` is not loaded or is invalid"))
        })?;
        let items: Vec<Option<Json>> = match &self.for_each {
            None => vec![None],
            Some(list) => match list.evaluate(&run.scope())? {
                Json::Array(items) => items.into_iter().map(Some).collect(),
                other => {
                    return Err(StepError::fatal(format!(
                        "`for_each` must give a list, but gave {other}"
                    )));
                }
            },
        };
        let depth = run.run.depth + 1;
        if depth > run.max_depth {
            return Err(StepError::fatal(format!(
                "`start` would make a run {depth} levels below the first one; the limit is {} \
                 (engine.max_run_depth): does `{workflow}` start itself, directly or through others?",
                run.max_depth
            )));
        }
        if items.len() > run.max_children {
            return Err(StepError::fatal(format!(
                "`start` would create {} runs; the limit is {} (engine.max_children_per_step)",
                items.len(),
                run.max_children
            )));
        }
        let first = child
            .steps
            .first()
            .map(|s| s.id.clone())
            .ok_or_else(|| StepError::fatal("the child workflow has no steps"))?;
        let parent = &run.run.id;
        for (index, item) in items.iter().enumerate() {
            let mut child_scope = run.scope();
            if let Some(item) = item {
                child_scope.set("item", item.clone());
                child_scope.set("index", json!(index));
            }
            let child_input = self.input.evaluate(&child_scope)?;
            child
                .validate_input(&child_input)
                .map_err(|e| StepError::fatal(format!("child run {index}: {e}")))?;
            run.outcome.children.push(NewRun {
                id: new_run_id(),
                workflow: child.name.clone(),
                version: child.version.clone(),
                domain: child.domain.map(|d| d.as_str().to_string()),
                source: child.source.clone(),
                input: child_input,
                parent_id: Some(parent.clone()),
                depth,
                trigger_key: Some(format!("child:{parent}:{}:{index}", run.seq)),
                first_step: first.clone(),
                due_at: run.now,
            });
        }
        Ok(Flow::Continue {
            input: None,
            output: json!({"workflow": workflow, "started": items.len()}),
            next: run.step.next,
        })
    }
}

/// A new, time-ordered run id.
pub fn new_run_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
