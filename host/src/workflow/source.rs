//! The workflow file as written: serde structs mirroring the YAML, with the line and
//! column of every value a diagnostic may need to point at.
//!
//! Nothing here is interpreted; [`super::compile`] turns a [`WorkflowFile`] into an
//! executable [`super::Workflow`] and reports what is wrong with it. A step's keys
//! ([`StepSource`]) come from [`crate::steps`], where each action defines the YAML
//! under its key.

use crate::steps::StepSource;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

/// A value that may contain `${ expression }` parts (see [`super::interpolation`]).
pub type ValueSource = Spanned<serde_json::Value>;

/// A map of names to computed values, in the order written.
pub type ValuesSource = BTreeMap<String, ValueSource>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowFile {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// What the workflow is about (`leads`, `tickets`, `campaigns`): who sees its runs.
    #[serde(default)]
    pub domain: Option<Spanned<String>>,
    /// JSON Schema of the run input.
    #[serde(default)]
    pub input: Option<Spanned<serde_json::Value>>,
    #[serde(default)]
    pub trigger: Option<Spanned<TriggerSource>>,
    pub steps: Spanned<Vec<Spanned<StepSource>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerSource {
    /// Start a run for every event of this type (`POST /api/v1/events`); the event's
    /// payload is the input.
    #[serde(default)]
    pub event: Option<Spanned<String>>,
    /// Start a run on this cron schedule (5 or 6 fields, day names allowed).
    #[serde(default)]
    pub cron: Option<Spanned<String>>,
    /// Time zone of the cron schedule (IANA name); default UTC.
    #[serde(default)]
    pub timezone: Option<Spanned<String>>,
    /// Input of cron-started runs.
    #[serde(default)]
    pub input: Option<ValuesSource>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySource {
    #[serde(default)]
    pub max_attempts: Option<Spanned<u32>>,
    /// First backoff, doubled each attempt.
    #[serde(default)]
    pub backoff: Option<Spanned<String>>,
    #[serde(default)]
    pub max_backoff: Option<Spanned<String>>,
}
