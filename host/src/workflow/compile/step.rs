//! One step: the keys every step shares (`next`, `retry`, `on_error`, and `input` where
//! its action takes one) and that it has exactly one action, which [`crate::steps`]
//! compiles.

use std::collections::HashMap;

use serde_saphyr::Spanned;

use super::Compiler;
use crate::steps::{self, ACTIONS, Action, StepSite, StepSource};
use crate::workflow::{RetryPolicy, Step};

impl Compiler<'_> {
    /// Compiles one step; returns it and the steps that can follow it.
    pub(super) fn step(
        &mut self,
        spanned: &Spanned<StepSource>,
        default_next: Option<usize>,
        index: &HashMap<String, usize>,
    ) -> Option<(Step, Vec<usize>)> {
        let step = &spanned.value;
        let present = step.actions();
        if present.len() != 1 {
            let message = if present.is_empty() {
                format!("step `{}` has no action", step.id.value)
            } else {
                format!(
                    "step `{}` has {} actions ({}); a step does exactly one thing",
                    step.id.value,
                    present.len(),
                    present.join(", ")
                )
            };
            let d = self.at.at(spanned, message).with_hint(format!(
                "give it one of: {}; to finish a run write `end: {{}}`",
                ACTIONS.join(", ")
            ));
            self.error(d);
            return None;
        }
        let action = present[0];

        let taking_input = steps::taking_input();
        if let Some(input) = &step.input
            && !taking_input.contains(&action)
        {
            let owners: Vec<String> = taking_input.iter().map(|a| format!("`{a}`")).collect();
            let d = self
                .at
                .at(
                    input,
                    format!("`input` belongs to a {} step", owners.join(" or ")),
                )
                .with_hint("to pass values to a child workflow use `start: {workflow, input}`");
            self.error(d);
        }
        steps::check_keys_of_other_actions(spanned, self);

        let explicit_next = match &step.next {
            Some(n) => Some(self.target(n, index)?),
            None => None,
        };
        let next = explicit_next.or(default_next);
        if steps::ends_run(action)
            && let Some(n) = &step.next
        {
            let d = self
                .at
                .at(n, format!("`next` has no effect after `{action}`"))
                .with_hint("the run stops at this step; remove `next`");
            self.error(d);
        }

        let site = StepSite {
            step: spanned,
            next,
            index,
        };
        if action == "end"
            && let Some(target) = &step.on_error
        {
            let d = self
                .at
                .at(
                    target,
                    "`on_error` has no effect on `end`, which cannot fail",
                )
                .with_hint("remove `on_error`");
            self.error(d);
        }
        let on_error = match &step.on_error {
            Some(target) => Some(self.target(target, index)?),
            None => None,
        };
        let action = Action::compile(&site, self)?;
        let retry = self.retry(step)?;
        let mut successors = action.successors(next);
        successors.extend(on_error);
        Some((
            Step {
                id: step.id.value.clone(),
                next,
                retry,
                on_error,
                action,
            },
            successors,
        ))
    }

    /// The step's retry policy: the defaults, overridden by what `retry:` gives.
    fn retry(&mut self, step: &StepSource) -> Option<RetryPolicy> {
        let Some(r) = &step.retry else {
            return Some(RetryPolicy::default());
        };
        let mut policy = RetryPolicy::default();
        if let Some(n) = &r.value.max_attempts {
            if n.value == 0 {
                let d = self.at.at(n, "`max_attempts` must be at least 1");
                self.error(d);
            }
            policy.max_attempts = n.value.max(1);
        }
        if let Some(b) = &r.value.backoff {
            policy.backoff = self.duration(b)?;
        }
        if let Some(b) = &r.value.max_backoff {
            policy.max_backoff = self.duration(b)?;
        }
        Some(policy)
    }
}
