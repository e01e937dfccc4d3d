//! `route`: routes the run's lead by a territory file and assigns it to a member of the
//! winning team — or, with `reassign: true`, passes it on to the next member who has not
//! had it. The territory decision is made here (pure); the assignment needs the team's
//! counters, so the engine makes it in the store, in one transaction keyed by the step,
//! and the step's output is the result: `team`, `owner` (null: the team's overflow
//! queue, `overflow` says why), `stage`, `rule`, `team_lead`, `locale`, `calendar`,
//! `reassignments`, `reason`, `owner_name`/`owner_email` and `team_lead_name`/`team_lead_email`
//! (from the users whose id or rep id they are; null without one) and `previous_owner`.
//! The whole decision (every rule and candidate) is kept with the lead. A lead the
//! score leaves `unqualified` is routed but not assigned: it stays with marketing.
//!
//! ```yaml
//! - id: route
//!   route:
//!     territories: sales                 # workflows/territories/sales.yaml
//!     score: ${steps.score}              # {score, grade, explanation}: qualifies the lead
//!     account_owner: ${steps.erp.owner}  # for `strategy: account-owner`
//! ```

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value as Json;
use serde_saphyr::Spanned;

use super::{Flow, PluginCall, StepAction, StepError, StepRun, StepSite};
use crate::crm::assignment::AssignCall;
use crate::crm::territory::LeadFacts;
use crate::workflow::ComputedValue;
use crate::workflow::compile::Compiler;
use crate::workflow::compile::references::Expressions;
use crate::workflow::source::ValueSource;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSource {
    /// The territory file, without `.yaml`.
    pub territories: Spanned<String>,
    #[serde(default)]
    pub score: Option<ValueSource>,
    #[serde(default)]
    pub account_owner: Option<ValueSource>,
    #[serde(default)]
    pub reassign: Option<Spanned<bool>>,
}

#[derive(Debug)]
pub struct Route {
    pub territories: String,
    pub score: Option<ComputedValue>,
    pub account_owner: Option<ComputedValue>,
    pub reassign: bool,
}

impl StepAction for Route {
    type Source = RouteSource;
    const CALLS_PLUGIN: bool = true;
    const CALL_COMMITS_ITSELF: bool = true;

    fn compile(
        source: &Spanned<RouteSource>,
        _site: &StepSite<'_>,
        compiler: &mut Compiler<'_>,
    ) -> Option<Self> {
        let route = &source.value;
        if let Some(territories) = compiler.environment.territories
            && !territories.sets.contains_key(&route.territories.value)
        {
            let known: Vec<&str> = territories.sets.keys().map(String::as_str).collect();
            let problem = territories.diagnostics.iter().any(|d| {
                d.file.file_stem().and_then(|s| s.to_str())
                    == Some(route.territories.value.as_str())
            });
            let d = compiler.at.at(
                &route.territories,
                if problem {
                    format!(
                        "the territory file `{}` has problems (see them above)",
                        route.territories.value
                    )
                } else {
                    format!("there is no territory file `{}`", route.territories.value)
                },
            );
            let d = if known.is_empty() || problem {
                d.with_hint("territory files are `workflows/territories/NAME.yaml` with `teams`, `rules` and `fallback`")
            } else {
                d.with_hint(format!("territory files: {}", known.join(", ")))
            };
            compiler.error(d);
        }
        let score = match &route.score {
            Some(v) => Some(compiler.value(v)?),
            None => None,
        };
        let account_owner = match &route.account_owner {
            Some(v) => Some(compiler.value(v)?),
            None => None,
        };
        Some(Route {
            territories: route.territories.value.clone(),
            score,
            account_owner,
            reassign: route.reassign.as_ref().is_some_and(|r| r.value),
        })
    }

    fn expressions(source: &RouteSource, found: &mut Expressions) {
        for value in [&source.score, &source.account_owner].into_iter().flatten() {
            found.value(value);
        }
    }

    fn execute(&self, run: &mut StepRun<'_>) -> Result<Flow, StepError> {
        let territories = &run.catalog.territories;
        let set = territories.sets.get(&self.territories).ok_or_else(|| {
            StepError::fatal(format!(
                "the territory file `{}` is not loaded (it has problems, or is gone)",
                self.territories
            ))
        })?;
        let lead = &run.run.input;
        let routing = set.route(&LeadFacts::from_json(lead), lead, run.now, run.calendars);
        let team = territories.team(&routing.team).cloned().ok_or_else(|| {
            StepError::fatal(format!(
                "team `{}` is not declared in any territory file",
                routing.team
            ))
        })?;
        let scope = run.scope();
        let score = self
            .score
            .as_ref()
            .map(|v| v.evaluate(&scope))
            .transpose()?;
        let account_owner = self
            .account_owner
            .as_ref()
            .map(|v| v.evaluate(&scope))
            .transpose()?
            .and_then(|v| v.as_str().map(str::to_string));
        let assign = AssignCall {
            key: run.effect_key(),
            lead: lead.clone(),
            team: Arc::clone(&team),
            routing: Some(routing),
            score: score.filter(|s| !s.is_null()),
            account_owner,
            reassign: self.reassign,
        };
        Ok(Flow::Call(PluginCall {
            plugin: String::new(),
            function: None,
            input: Json::Null,
            assign: Some(Box::new(assign)),
        }))
    }
}
