//! The workflow file as written: serde structs mirroring the YAML, with the line and
//! column of every value a diagnostic may need to point at.
//!
//! Nothing here is interpreted; [`super::compile`] turns a [`WorkflowFile`] into an
//! executable [`super::Workflow`] and reports what is wrong with it.

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
pub struct StepSource {
    pub id: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// The step to continue with; default: the next one in the list (or the end).
    #[serde(default)]
    pub next: Option<Spanned<String>>,
    #[serde(default)]
    pub retry: Option<Spanned<RetrySource>>,

    // The action: exactly one of these.
    #[serde(default)]
    pub set: Option<Spanned<ValuesSource>>,
    #[serde(default)]
    pub branch: Option<Spanned<BranchSource>>,
    #[serde(default)]
    pub wait: Option<Spanned<DelaySource>>,
    #[serde(default)]
    pub wait_for: Option<Spanned<WaitForSource>>,
    #[serde(default)]
    pub timer: Option<Spanned<TimerSource>>,
    #[serde(default)]
    pub cancel_timer: Option<Spanned<String>>,
    #[serde(default)]
    pub start: Option<Spanned<StartSource>>,
    #[serde(default)]
    pub wait_children: Option<Spanned<WaitChildrenSource>>,
    #[serde(default)]
    pub record: Option<Spanned<RecordSource>>,
    #[serde(default)]
    pub fail: Option<Spanned<FailSource>>,
    #[serde(default)]
    pub end: Option<Spanned<EndSource>>,
    /// A plugin step: the plugin's name (`NAME.wasm` in the plugins folder).
    #[serde(default)]
    pub plugin: Option<Spanned<String>>,
    /// A connector step: the ERP connector plugin's name; `call` names its function.
    #[serde(default)]
    pub connector: Option<Spanned<String>>,
    /// The connector function a `connector` step calls, e.g. `customer-by-email`.
    #[serde(default)]
    pub call: Option<Spanned<String>>,
    /// Queues an email in the outbox, committed with the step.
    #[serde(default)]
    pub send_email: Option<Spanned<SendEmailSource>>,
    /// The input of a `plugin` step (default: the run's input), or the arguments of a
    /// `connector` step (default: none).
    #[serde(default)]
    pub input: Option<Spanned<ValuesSource>>,
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

/// How long to wait: a `duration` (business time if a `calendar` is named) or `until` a time.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelaySource {
    #[serde(default)]
    pub duration: Option<Spanned<String>>,
    #[serde(default)]
    pub calendar: Option<Spanned<String>>,
    #[serde(default)]
    pub until: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitForSource {
    pub events: Spanned<Vec<Spanned<String>>>,
    /// Correlation key (CEL); events of the run's own timers need none.
    #[serde(default)]
    pub key: Option<Spanned<String>>,
    #[serde(default)]
    pub timeout: Option<Spanned<DelaySource>>,
    #[serde(default)]
    pub on_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimerSource {
    pub name: Spanned<String>,
    #[serde(default)]
    pub duration: Option<Spanned<String>>,
    #[serde(default)]
    pub calendar: Option<Spanned<String>>,
    #[serde(default)]
    pub until: Option<Spanned<String>>,
}

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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitChildrenSource {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordSource {
    pub collection: Spanned<String>,
    pub key: Spanned<String>,
    pub data: ValuesSource,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailSource {
    pub message: ValueSource,
    #[serde(default)]
    pub retryable: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndSource {
    #[serde(default)]
    pub output: Option<ValuesSource>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendEmailSource {
    /// A channel of `kontor.toml` (`[channel.NAME]`); default `default`.
    #[serde(default)]
    pub channel: Option<Spanned<String>>,
    /// A folder in `workflows/templates/`.
    pub template: Spanned<String>,
    /// The recipient's address.
    pub to: ValueSource,
    /// The recipient's display name.
    #[serde(default)]
    pub name: Option<ValueSource>,
    /// `de`, `en`, ...; default: the template's fallback locale.
    #[serde(default)]
    pub locale: Option<ValueSource>,
    /// What the template sees.
    #[serde(default)]
    pub data: Option<Spanned<ValuesSource>>,
    /// Why the mail is sent: `marketing`, `service`, `safety`, `transactional`, ...
    pub purpose: Spanned<String>,
    /// Groups messages for reports; default: the workflow's name.
    #[serde(default)]
    pub campaign: Option<ValueSource>,
}
