//! Where a run, a step or a job stands, and the names under which the store keeps it.
//!
//! The stored names are part of the database's format and of the API's JSON: a rename
//! here needs a migration.

use serde::Serialize;

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Has a job to execute (or is executing one).
    Running,
    /// Parked: waits for an event, a timer or its child runs.
    Waiting,
    /// Reached its end.
    Completed,
    /// A step failed for good; `kontor` can retry it from that step.
    Failed,
    /// Cancelled through the API (with its descendants).
    Cancelled,
}

impl RunStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Waiting => "waiting",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// The status of a stored name.
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

    /// Completed, failed or cancelled: nothing more happens to the run by itself.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled
        )
    }
}

/// How one execution of a step ended, as its line in the run's step history says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// The step finished; the run went on.
    Completed,
    /// The step parked the run (an event, a timer, child runs).
    Waiting,
    /// The step failed and is tried again after its backoff.
    Retrying,
    /// The step failed for good, and so did the run.
    Failed,
}

impl StepStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Completed => "completed",
            StepStatus::Waiting => "waiting",
            StepStatus::Retrying => "retrying",
            StepStatus::Failed => "failed",
        }
    }

    /// The status of a stored name.
    pub fn parse(s: &str) -> Option<StepStatus> {
        Some(match s {
            "completed" => StepStatus::Completed,
            "waiting" => StepStatus::Waiting,
            "retrying" => StepStatus::Retrying,
            "failed" => StepStatus::Failed,
            _ => return None,
        })
    }
}

/// What a job does when it is executed.
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
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Step => "step",
            JobKind::Resume => "resume",
            JobKind::Timeout => "timeout",
            JobKind::Timer => "timer",
        }
    }

    /// The kind of a stored name.
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
