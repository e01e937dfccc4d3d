//! Runs to start and jobs to schedule, as the engine asks for them, and a claimed job with
//! the state of its run, as the store hands them back.

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use super::status::{JobKind, RunStatus};

/// A run to create, with its first job.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub id: String,
    pub workflow: String,
    pub version: String,
    /// The workflow's domain (`leads`, …), kept with the run: who may see it.
    pub domain: Option<String>,
    /// The workflow file's text, stored once per version.
    pub source: String,
    pub input: Json,
    pub parent_id: Option<String>,
    /// How many parents the run has (0 without one).
    pub depth: i64,
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
    /// How many parents the run has (0 without one).
    pub depth: i64,
    pub step_count: i64,
    pub created_at: DateTime<Utc>,
}
