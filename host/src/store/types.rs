//! What goes in and out of the store.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value as Json;

use crate::engine::effects::{Effect, OutgoingEmail};

/// Milliseconds since the epoch, the store's time unit.
pub fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// A recipient as the outbox stores it for lookups: the lowercased address (suppressions)
/// and its domain (throttles).
pub fn recipient_address(to: &str) -> (String, String) {
    let address = to.trim().to_lowercase();
    let domain = address.rsplit('@').next().unwrap_or_default().to_string();
    (address, domain)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Waiting,
    Completed,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Waiting => "waiting",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<RunStatus> {
        Some(match s {
            "running" => RunStatus::Running,
            "waiting" => RunStatus::Waiting,
            "completed" => RunStatus::Completed,
            "failed" => RunStatus::Failed,
            "cancelled" => RunStatus::Cancelled,
            _ => return None,
        })
    }

    pub fn is_finished(self) -> bool {
        matches!(
            self,
            RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled
        )
    }
}

/// A run to create, with its first job.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub id: String,
    pub workflow: String,
    pub version: String,
    /// The workflow file's text, stored once per version.
    pub source: String,
    pub input: Json,
    pub parent_id: Option<String>,
    /// Makes the start idempotent: a second start with the same key returns the first run.
    pub trigger_key: Option<String>,
    pub first_step: String,
    pub due_at: DateTime<Utc>,
}

/// Result of starting a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Started {
    pub run_id: String,
    /// False when the trigger key matched an existing run.
    pub created: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Execute the step from the beginning.
    Step,
    /// The step was waiting; its output is in the payload; continue after it.
    Resume,
    /// A `wait_for` timed out.
    Timeout,
    /// A timer of the run is due: deliver its event.
    Timer,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Step => "step",
            JobKind::Resume => "resume",
            JobKind::Timeout => "timeout",
            JobKind::Timer => "timer",
        }
    }

    pub fn parse(s: &str) -> Option<JobKind> {
        Some(match s {
            "step" => JobKind::Step,
            "resume" => JobKind::Resume,
            "timeout" => JobKind::Timeout,
            "timer" => JobKind::Timer,
            _ => return None,
        })
    }
}

/// A job leased to a worker.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub run_id: String,
    pub kind: JobKind,
    pub step: String,
    pub timer: Option<String>,
    pub payload: Option<Json>,
    pub due_at: DateTime<Utc>,
    pub attempt: u32,
}

/// A job to schedule.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: JobKind,
    pub step: String,
    pub timer: Option<String>,
    pub payload: Option<Json>,
    pub due_at: DateTime<Utc>,
    pub attempt: u32,
}

impl NewJob {
    /// The first attempt of `step`, due at `due_at`.
    pub fn step(step: &str, due_at: DateTime<Utc>) -> NewJob {
        NewJob {
            kind: JobKind::Step,
            step: step.to_string(),
            timer: None,
            payload: None,
            due_at,
            attempt: 1,
        }
    }

    /// Resumes a parked run at `step` with what it waited for (an event, child counts).
    pub fn resume(step: &str, payload: Json, now: DateTime<Utc>) -> NewJob {
        NewJob {
            kind: JobKind::Resume,
            step: step.to_string(),
            timer: None,
            payload: Some(payload),
            due_at: now,
            attempt: 1,
        }
    }
}

/// The part of a run the engine needs to execute its next step.
#[derive(Debug, Clone)]
pub struct RunState {
    pub id: String,
    pub workflow: String,
    pub version: String,
    pub status: RunStatus,
    pub input: Json,
    pub context: Json,
    pub parent_id: Option<String>,
    pub step_count: i64,
    pub created_at: DateTime<Utc>,
}

/// One line of a run's step history.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StepRecord {
    pub step: String,
    pub action: String,
    pub attempt: u32,
    /// completed, waiting, retrying or failed
    pub status: String,
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
    pub kv_writes: Vec<kontor_plugins::KvWrite>,
}

/// Result of delivering an event.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Delivered {
    pub event_id: i64,
    /// Runs that were waiting for it and now continue.
    pub resumed_runs: Vec<String>,
    /// Runs started because their workflow is triggered by this event type.
    pub started_runs: Vec<String>,
}

/// A run as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RunView {
    pub id: String,
    pub workflow: String,
    /// SHA-256 of the workflow file the run started with.
    pub version: String,
    pub status: RunStatus,
    #[schema(value_type = Object)]
    pub input: Json,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub output: Option<Json>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_step: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// `{"vars": {...}, "steps": {...}}`
    #[schema(value_type = Object)]
    pub context: Json,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
}

/// Filters and a cursor for listing runs (newest first).
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub workflow: Option<String>,
    pub status: Option<RunStatus>,
    pub parent_id: Option<String>,
    /// Only runs created before this run (the previous page's last id).
    pub before: Option<String>,
    /// Only runs created at or after this time.
    pub created_after: Option<DateTime<Utc>>,
    /// Only runs created before this time.
    pub created_before: Option<DateTime<Utc>>,
    pub limit: u32,
}

/// Child runs of a parent, counted by status.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ChildCounts {
    pub total: i64,
    pub completed: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub running: i64,
}

/// Why a run cannot be retried.
#[derive(Debug, Clone, PartialEq)]
pub enum RetryRefused {
    NotFound,
    /// Only failed runs are retried; this is the run's status.
    NotFailed(String),
}

/// An answer kept for an idempotency key: status code and exact body.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAnswer {
    pub status: u16,
    pub body: String,
}

/// What a start with an idempotency key did.
#[derive(Debug, Clone, PartialEq)]
pub enum Once {
    /// The run was started now; the given answer was stored.
    Started,
    /// The key was used before, for a request with this body hash and this answer.
    Replay {
        request_hash: String,
        answer: StoredAnswer,
    },
}

/// A stored secret as listed: never its value.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SecretInfo {
    pub name: String,
    /// Fingerprint of the master key that sealed it.
    pub key_id: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A queued message as the dispatcher sees it: what the step queued, and its history.
#[derive(Debug, Clone)]
pub struct OutboxMessage {
    pub email: OutgoingEmail,
    /// The recipient's domain, lowercased (throttles count per domain).
    pub domain: String,
    pub run_id: Option<String>,
    /// Sends tried before this one.
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
}

/// A message as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MessageView {
    /// The outbox id; the message's `Message-ID` is `<id@from-domain>`.
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    pub campaign: String,
    pub channel: String,
    pub template: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    pub to: String,
    pub purpose: String,
    /// queued, sending, sent, failed or suppressed
    pub status: String,
    pub attempts: u32,
    /// When a queued message is sent next (throttles and retries move it).
    pub due_at: DateTime<Utc>,
    /// The SMTP server's last reply, the error, or why the message was suppressed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<DateTime<Utc>>,
}

/// Filters and a cursor for listing messages (newest first).
#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    pub run_id: Option<String>,
    pub campaign: Option<String>,
    pub recipient: Option<String>,
    pub status: Option<String>,
    /// Only messages older than this id (the previous page's last).
    pub before: Option<String>,
    pub limit: u32,
}

/// Why mail does not go to an address.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Suppression {
    pub address: String,
    /// `*` (every purpose) or the purpose unsubscribed from.
    pub purpose: String,
    /// hard_bounce, complaint, soft_bounces or unsubscribed
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// How a dispatched message's outbox row changes.
#[derive(Debug, Clone, PartialEq)]
pub enum OutboxUpdate {
    /// A throttle holds it: back to the queue, due at `until`, attempts unchanged.
    Hold { id: String, until: DateTime<Utc> },
    /// Accepted by the transport; counts for the channel's day.
    Sent {
        id: String,
        channel: String,
        reply: String,
        at: DateTime<Utc>,
    },
    /// A temporary failure: queued again, due at `due`.
    Retry {
        id: String,
        reply: String,
        due: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// `failed` or `suppressed`, with the reply or the reason.
    Finished {
        id: String,
        status: &'static str,
        reply: String,
        attempted: bool,
        at: DateTime<Utc>,
    },
}
