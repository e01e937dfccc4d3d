//! Workflows: the declarative files under `workflows/`, compiled into something the engine
//! can run.
//!
//! ```text
//! workflows/
//!   *.yaml            one workflow each (this module)
//!   calendars/*.yaml  business calendars (kontor-time), referenced by name
//!   templates/        email templates (email issue)
//!   territories/, sla/  routing tables and SLA policies (later issues)
//! ```
//!
//! Loading goes file → [`source::WorkflowFile`] (serde, with line/column spans) →
//! [`compile::compile_workflow`] (checks, resolves step ids, compiles expressions; each
//! step's action is compiled by its file in [`crate::steps`]) → [`Workflow`]. A file with
//! problems yields [`Diagnostic`](crate::diagnostics::Diagnostic)s instead; the
//! [`Catalog`] keeps both so the server can list invalid workflows while running the
//! valid ones. Values written as `${…}` are compiled by [`interpolation`].

pub mod catalog;
pub mod compile;
pub mod interpolation;
pub mod source;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::Duration;
use kontor_time::CronSchedule;

/// The plugins a catalog's workflows may call: every `*.wasm` found in the plugins
/// folder, with the reason it cannot be loaded, if any.
#[derive(Debug, Clone, Default)]
pub struct PluginIndex {
    pub dir: PathBuf,
    pub plugins: std::collections::BTreeMap<String, Option<String>>,
    /// The world of each plugin that loads.
    pub worlds: std::collections::BTreeMap<String, kontor_plugins::World>,
}

impl PluginIndex {
    pub fn from_registry(registry: &kontor_plugins::PluginRegistry) -> PluginIndex {
        PluginIndex {
            dir: registry.dir().to_path_buf(),
            worlds: registry
                .all()
                .into_iter()
                .filter_map(|(name, plugin)| plugin.ok().map(|p| (name, p.world())))
                .collect(),
            plugins: registry
                .all()
                .into_iter()
                .map(|(name, plugin)| (name, plugin.err()))
                .collect(),
        }
    }
}
pub use crate::steps::Action;
pub use catalog::{Catalog, DEFAULT_MAX_FILE_SIZE, WorkflowEntry};
pub use interpolation::ComputedValue;

/// A compiled, valid workflow: one version of one file, identified by its content hash.
#[derive(Debug)]
pub struct Workflow {
    pub name: String,
    pub description: Option<String>,
    /// What the workflow is about: the roles owning it see its runs
    /// ([`crate::access::sees`]).
    pub domain: Option<crate::access::Domain>,
    /// SHA-256 of the file's bytes; runs pin the version they started with.
    pub version: String,
    /// The file's text, stored with each new version so old runs can resume after the
    /// file changed.
    pub source: String,
    pub file: PathBuf,
    pub input_schema: Option<Arc<jsonschema::Validator>>,
    pub input_schema_json: Option<serde_json::Value>,
    pub trigger: Trigger,
    pub steps: Vec<Step>,
    pub step_index: HashMap<String, usize>,
}

impl Workflow {
    pub fn step(&self, id: &str) -> Option<(usize, &Step)> {
        self.step_index.get(id).map(|&i| (i, &self.steps[i]))
    }

    /// Validates a run's input against the workflow's input schema; the error names the
    /// failing field by JSON pointer.
    pub fn validate_input(&self, input: &serde_json::Value) -> Result<(), String> {
        self.validate_as(input, "input")
    }

    /// [`Workflow::validate_input`] for a document the caller knows as `name` (an event's
    /// `payload`): its errors read `payload/postal_code: …`.
    pub fn validate_as(&self, input: &serde_json::Value, name: &str) -> Result<(), String> {
        let Some(validator) = &self.input_schema else {
            return Ok(());
        };
        let errors: Vec<String> = validator
            .iter_errors(input)
            .map(|e| {
                let path = e.instance_path().to_string();
                if path.is_empty() {
                    format!("{name}: {e}")
                } else {
                    format!("{name}{path}: {e}")
                }
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

/// How runs of a workflow start (besides the API, which can start any workflow).
#[derive(Debug, Clone)]
pub enum Trigger {
    Api,
    Event(String),
    Cron {
        expression: String,
        schedule: Arc<CronSchedule>,
        input: Option<ComputedValue>,
    },
}

#[derive(Debug)]
pub struct Step {
    pub id: String,
    /// Index of the step that follows; `None` ends the run.
    pub next: Option<usize>,
    pub retry: RetryPolicy,
    /// Index of the step to continue with when this one fails for good; `None`: the run
    /// fails.
    pub on_error: Option<usize>,
    /// What the step does: one of the actions in [`crate::steps`].
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            backoff: Duration::seconds(1),
            max_backoff: Duration::hours(1),
        }
    }
}

impl RetryPolicy {
    /// Backoff before attempt `attempt + 1` (attempts count from 1): exponential, capped.
    pub fn backoff_after(&self, attempt: u32) -> Duration {
        let factor = 2i32.saturating_pow(attempt.saturating_sub(1).min(30));
        let millis = self
            .backoff
            .num_milliseconds()
            .saturating_mul(i64::from(factor));
        Duration::milliseconds(millis).min(self.max_backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let policy = RetryPolicy {
            max_attempts: 10,
            backoff: Duration::seconds(2),
            max_backoff: Duration::seconds(30),
        };
        let got: Vec<i64> = (1..=6)
            .map(|a| policy.backoff_after(a).num_seconds())
            .collect();
        assert_eq!(got, [2, 4, 8, 16, 30, 30]);
    }
}
