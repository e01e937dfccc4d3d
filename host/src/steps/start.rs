//! `start`: starts child runs of another workflow — one, or one per element of a
//! `for_each` list (which each child's input sees as `item`, at `index`). The parent
//! goes on; `wait_children` waits for them.
//!
//! A large fan-out is made in chunks ([`chunk_size`]: at least 1,000 children, at most
//! 20 chunks), each committed by a job of its own ([`Flow::Again`]): a crash repeats at
//! most one chunk (whose children's keys then match), memory holds one chunk's children,
//! and each chunk reads the list straight from the run's JSON, so the work per child does
//! not grow with the list.
//!
//! ```yaml
//! - id: notify_buyers
//!   start:
//!     workflow: recall-notice
//!     for_each: steps.buyers.customers
//!     input: {customer_id: "${item.id}"}
//! ```

use std::borrow::Cow;

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
        let depth = run.run.depth + 1;
        if depth > run.max_depth {
            return Err(StepError::fatal(format!(
                "`start` would make a run {depth} levels below the first one; the limit is {} \
                 (engine.max_run_depth): does `{workflow}` start itself, directly or through others?",
                run.max_depth
            )));
        }
        let first = child
            .steps
            .first()
            .map(|s| s.id.clone())
            .ok_or_else(|| StepError::fatal("the child workflow has no steps"))?;
        // Where an earlier chunk of this fan-out stopped, and the step number its
        // children's keys were made with (so a chunk repeated after a crash makes the
        // same keys).
        let from = run
            .resumed
            .as_ref()
            .and_then(|p| p["next"].as_u64())
            .unwrap_or(0) as usize;
        let seq = run
            .resumed
            .as_ref()
            .and_then(|p| p["seq"].as_i64())
            .unwrap_or(run.seq);
        let parent = run.run.id.clone();
        let new_child = |index: usize, input: Json| NewRun {
            id: new_run_id(),
            workflow: child.name.clone(),
            version: child.version.clone(),
            domain: child.domain.map(|d| d.as_str().to_string()),
            source: child.source.clone(),
            input,
            parent_id: Some(parent.clone()),
            depth,
            trigger_key: Some(format!("child:{parent}:{seq}:{index}")),
            first_step: first.clone(),
            due_at: run.now,
        };
        let (inputs, total) = self.child_inputs(run, from)?;
        let mut children = Vec::with_capacity(inputs.len());
        for (index, input) in inputs {
            child
                .validate_input(&input)
                .map_err(|e| StepError::fatal(format!("child run {index}: {e}")))?;
            children.push(new_child(index, input));
        }
        let next = from + children.len();
        run.outcome.children.extend(children);
        if next < total {
            return Ok(Flow::Again {
                progress: json!({"next": next, "seq": seq}),
            });
        }
        Ok(Flow::Continue {
            input: None,
            output: json!({"workflow": workflow, "started": total}),
            next: run.step.next,
        })
    }
}

impl Start {
    /// The inputs of the children this job creates, by index, and how many the step
    /// creates in all: one without `for_each`; else the chunk of the list from `from` on.
    fn child_inputs(
        &self,
        run: &StepRun<'_>,
        from: usize,
    ) -> Result<(Vec<(usize, Json)>, usize), StepError> {
        let mut scope = run.scope();
        let Some(list) = &self.for_each else {
            return Ok((vec![(0, self.input.evaluate(&scope)?)], 1));
        };
        // The list is read through a scope of its own, as the children's inputs change
        // `scope` (their `item`) while they borrow from the list.
        let list_scope = run.scope();
        let items: Cow<'_, [Json]> = match list.evaluate_borrowed(&list_scope)? {
            Cow::Borrowed(Json::Array(items)) => Cow::Borrowed(items),
            Cow::Owned(Json::Array(items)) => Cow::Owned(items),
            other => {
                return Err(StepError::fatal(format!(
                    "`for_each` must give a list, but gave {}",
                    other.as_ref()
                )));
            }
        };
        if items.len() > run.max_children {
            return Err(StepError::fatal(format!(
                "`start` would create {} runs; the limit is {} (engine.max_children_per_step)",
                items.len(),
                run.max_children
            )));
        }
        let to = items.len().min(from + chunk_size(items.len()));
        let mut inputs = Vec::with_capacity(to.saturating_sub(from));
        for (index, item) in items.iter().enumerate().take(to).skip(from) {
            scope.set("item", item.clone());
            scope.set("index", json!(index));
            inputs.push((index, self.input.evaluate(&scope)?));
        }
        Ok((inputs, items.len()))
    }
}

/// The fewest child runs one job of a fan-out creates: a larger `for_each` commits in
/// chunks, each in its own job, so a crash resumes at the last committed chunk.
pub const FAN_OUT_CHUNK: usize = 1_000;

/// The most jobs a fan-out takes. Each job reads the parent's run again, whose input may
/// hold the whole list (100,000 customers are ~20 MB of JSON to parse): a fixed number of
/// chunks keeps a fan-out linear in its size, where chunks of a fixed size would make it
/// quadratic.
pub const FAN_OUT_MAX_CHUNKS: usize = 20;

/// Children per job for a list of `len` items: at least [`FAN_OUT_CHUNK`], and so many
/// that the list takes at most [`FAN_OUT_MAX_CHUNKS`] jobs.
pub fn chunk_size(len: usize) -> usize {
    len.div_ceil(FAN_OUT_MAX_CHUNKS).max(FAN_OUT_CHUNK)
}

/// A new, time-ordered run id.
pub fn new_run_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
