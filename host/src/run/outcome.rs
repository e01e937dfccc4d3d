//! Everything one job produced — step history, the run's new state, next jobs, waits,
//! events, effects, plugin key-value writes — committed by the store in one transaction.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value as Json;

use super::effects::Effect;
use super::job::{NewJob, NewRun};
use super::status::{RunStatus, StepStatus};

/// Everything one job produced, committed atomically.
#[derive(Debug, Clone, Default)]
pub struct JobOutcome {
    pub job_id: i64,
    pub run_id: String,
    /// The run's parent, woken when this outcome finishes the run.
    pub parent_id: Option<String>,
    /// This job ended a wait by timing out: the wait's event keys are dropped.
    pub ends_wait: bool,
    pub steps: Vec<StepRecord>,
    pub run: Option<RunUpdate>,
    pub jobs: Vec<NewJob>,
    /// Timers to start: replaces a pending timer of the same name, and forgets fired but
    /// unconsumed events of it.
    pub start_timers: Vec<NewJob>,
    pub cancel_timers: Vec<String>,
    pub wait: Option<WaitFor>,
    pub events: Vec<NewEvent>,
    pub effects: Vec<(String, Effect)>,
    pub children: Vec<NewRun>,
    /// Key-value writes of the plugin calls that succeeded in this job.
    pub kv_writes: Vec<KvWrite>,
}

/// One line of a run's step history.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StepRecord {
    pub step: String,
    pub action: String,
    pub attempt: u32,
    pub status: StepStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub input: Option<Json>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub output: Option<Json>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What a plugin step logged: `[{level, message, fields}]`, stdout/stderr included.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub log: Option<Json>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

/// How a job changes its run.
#[derive(Debug, Clone)]
pub struct RunUpdate {
    pub status: RunStatus,
    pub context: Json,
    pub current_step: Option<String>,
    pub output: Option<Json>,
    pub error: Option<String>,
    pub step_count: i64,
}

/// What a parked run waits for.
#[derive(Debug, Clone)]
pub enum WaitFor {
    /// Any of these (event type, correlation key) pairs; events stored since the run
    /// started count too. The timeout job is scheduled only if nothing matched yet.
    Events {
        step: String,
        keys: Vec<(String, String)>,
        timeout: Option<NewJob>,
    },
    /// All child runs finished.
    Children { step: String },
}

/// An event to store and match against waiting runs.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_type: String,
    pub key: String,
    pub payload: Json,
}

/// One write to a plugin's key-value store, made by a plugin call and committed with the
/// job that made it (so a retried step never sees half of its own writes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvWrite {
    pub plugin: String,
    pub key: String,
    /// `None` deletes the key.
    pub value: Option<Vec<u8>>,
}
