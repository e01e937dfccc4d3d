//! `wait_children`: parks the run until every child run its `start` steps created has
//! finished.
//!
//! ```yaml
//! - id: until_all_notified
//!   wait_children: {}
//! ```

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{Flow, Parking, StepAction, StepError, StepRun, StepSite};
use crate::workflow::compile::Compiler;

/// `wait_children: {}` takes no settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitChildrenSource {}

#[derive(Debug)]
pub struct WaitChildren;

impl StepAction for WaitChildren {
    type Source = WaitChildrenSource;

    fn compile(
        _source: &Spanned<WaitChildrenSource>,
        _site: &StepSite<'_>,
        _compiler: &mut Compiler<'_>,
    ) -> Option<Self> {
        Some(WaitChildren)
    }

    fn execute(&self, _run: &mut StepRun<'_>) -> Result<Flow, StepError> {
        Ok(Flow::Park {
            input: None,
            wait: Parking::Children,
        })
    }
}
