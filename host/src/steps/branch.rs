//! `branch`: jumps to the first case whose condition holds, else to `otherwise` (or the
//! next step).
//!
//! ```yaml
//! - id: route
//!   branch:
//!     cases:
//!       - when: vars.points >= 50
//!         goto: hot_lead
//!     otherwise: nurture
//! ```

use serde::Deserialize;
use serde_json::json;
use serde_saphyr::Spanned;

use super::{Flow, StepAction, StepError, StepRun, StepSite};
use crate::expr::Expression;
use crate::workflow::compile::Compiler;
use crate::workflow::compile::references::Expressions;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BranchSource {
    pub cases: Vec<Spanned<CaseSource>>,
    /// Where to go when no case matches; default: the next step.
    #[serde(default)]
    pub otherwise: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseSource {
    pub when: Spanned<String>,
    pub goto: Spanned<String>,
}

#[derive(Debug)]
pub struct Branch {
    /// Conditions and the positions of the steps they jump to, in order.
    pub cases: Vec<(Expression, usize)>,
    pub otherwise: Option<usize>,
}

impl StepAction for Branch {
    type Source = BranchSource;

    fn compile(
        branch: &Spanned<BranchSource>,
        site: &StepSite<'_>,
        compiler: &mut Compiler<'_>,
    ) -> Option<Self> {
        let mut cases = Vec::new();
        let mut ok = true;
        for case in &branch.value.cases {
            let condition = compiler.expression(&case.value.when);
            let target = compiler.target(&case.value.goto, site.index);
            match (condition, target) {
                (Some(c), Some(t)) => cases.push((c, t)),
                _ => ok = false,
            }
        }
        if branch.value.cases.is_empty() {
            let d = compiler
                .at
                .at(branch, "a branch needs at least one case")
                .with_hint("add `cases: [{when: \"...\", goto: step}]`");
            compiler.error(d);
        }
        let otherwise = match &branch.value.otherwise {
            Some(o) => Some(compiler.target(o, site.index)?),
            None => site.next,
        };
        if !ok {
            return None;
        }
        Some(Branch { cases, otherwise })
    }

    fn expressions(source: &BranchSource, found: &mut Expressions) {
        for case in &source.cases {
            found.condition(&case.value.when);
        }
    }

    fn successors(&self, _next: Option<usize>) -> Vec<usize> {
        self.cases
            .iter()
            .map(|(_, target)| *target)
            .chain(self.otherwise)
            .collect()
    }

    fn execute(&self, run: &mut StepRun<'_>) -> Result<Flow, StepError> {
        let scope = run.scope();
        for (i, (condition, target)) in self.cases.iter().enumerate() {
            if condition.evaluate_bool(&scope)? {
                let goto = &run.workflow.steps[*target].id;
                return Ok(Flow::Continue {
                    input: None,
                    output: json!({"case": i, "goto": goto}),
                    next: Some(*target),
                });
            }
        }
        let goto = self.otherwise.map(|o| run.workflow.steps[o].id.clone());
        Ok(Flow::Continue {
            input: None,
            output: json!({"case": null, "goto": goto}),
            next: self.otherwise,
        })
    }
}
