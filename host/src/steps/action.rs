//! The contract between the step dispatcher and each action file: the [`StepAction`]
//! trait, and what an action is given when its step is compiled ([`StepSite`]).
//!
//! Every hook has a default except the three an action always has — its YAML shape, its
//! compilation and its execution — so an action file states only what makes it special
//! (`fail` ends the run, `branch` jumps, `plugin` calls out of the process).

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde_saphyr::Spanned;

use super::StepSource;
use super::execution::{Flow, StepError, StepRun};
use crate::workflow::compile::Compiler;
use crate::workflow::compile::references::Expressions;

/// One kind of step action, from its YAML to what it does when its step runs.
pub trait StepAction: Sized + std::fmt::Debug {
    /// The YAML under the action's key (`set: {...}`, `wait: {duration: 2d}`, ...).
    type Source: DeserializeOwned + std::fmt::Debug;

    /// Whether a run stops at this action, so `next` has no effect after it.
    const ENDS_RUN: bool = false;
    /// Whether a step with this action may have `input:`.
    const TAKES_INPUT: bool = false;
    /// Whether the engine carries the action out by calling a plugin (async, in the
    /// sandbox) instead of inline; [`StepAction::execute`] then answers [`Flow::Call`].
    const CALLS_PLUGIN: bool = false;
    /// Whether the call commits its own result (a lead's assignment in the store, keyed
    /// by the step) instead of leaving it to the job's commit: such a call may follow
    /// another call in the same job — repeated after a crash, it answers the same.
    const CALL_COMMITS_ITSELF: bool = false;

    /// Checks the source and compiles it. Problems go to `compiler`; `None` when one of
    /// them leaves nothing to run.
    fn compile(
        source: &Spanned<Self::Source>,
        site: &StepSite<'_>,
        compiler: &mut Compiler<'_>,
    ) -> Option<Self>;

    /// Checks keys this action owns on a step that has another action (a `call:`
    /// without `connector:`).
    fn check_step_without(_step: &Spanned<StepSource>, _compiler: &mut Compiler<'_>) {}

    /// The expressions in the source, for the check that every variable they read can
    /// exist when the step runs.
    fn expressions(_source: &Self::Source, _found: &mut Expressions) {}

    /// The variables (`vars.NAME`) the action sets.
    fn variables(_source: &Self::Source) -> Vec<String> {
        Vec::new()
    }

    /// The steps that can run after this one, given the step it continues with.
    fn successors(&self, next: Option<usize>) -> Vec<usize> {
        if Self::ENDS_RUN {
            Vec::new()
        } else {
            next.into_iter().collect()
        }
    }

    /// Where the run goes when the step's wait times out; `None`: the step's `next`.
    fn on_timeout(&self) -> Option<usize> {
        None
    }

    /// Runs the step: computes its output and the effects, timers and child runs it
    /// adds to `run`'s outcome.
    fn execute(&self, run: &mut StepRun<'_>) -> Result<Flow, StepError>;
}

/// Where an action is compiled: its step and the steps around it.
pub struct StepSite<'s> {
    /// The whole step, for diagnostics that point at it and for keys the action reads
    /// beside its own (`input`, `call`).
    pub step: &'s Spanned<StepSource>,
    /// The step the run continues with: the one `next` names, else the one below.
    pub next: Option<usize>,
    /// Step ids and their positions, for the steps an action jumps to.
    pub index: &'s HashMap<String, usize>,
}
