//! The data path's vocabulary: what the engine hands the store and what it gets back.
//!
//! A run's life is a stream of jobs; executing one yields a [`JobOutcome`] (step records,
//! the run's new state, next jobs, waits, events, [`Effect`]s, plugin key-value writes)
//! that the store commits in one transaction. Both sides speak these types and nothing
//! else of each other: the store never imports the engine, the workflow compiler or the
//! plugin runtime, and the engine never sees SQL. (Spin's `locked-app` plays the same role
//! between its loader and its executors.)
//!
//! | file | holds |
//! |---|---|
//! | [`status`] | [`RunStatus`], [`StepStatus`], [`JobKind`] and their stored names |
//! | [`job`] | runs to start, jobs to schedule, claimed jobs, the state a job runs against |
//! | [`outcome`] | everything one job produced: [`JobOutcome`] and its parts |
//! | [`effects`] | what a step wants done in the world: records, outgoing email |
//! | [`address`] | what an outgoing email's recipient and header values may hold |

pub mod address;
pub mod effects;
pub mod job;
pub mod outcome;
pub mod status;

pub use address::{check_header_value, parse_address};
pub use effects::{Effect, OutgoingEmail};
pub use job::{Job, NewJob, NewRun, RunState, Started};
pub use outcome::{JobOutcome, KvWrite, NewEvent, RunUpdate, StepRecord, WaitFor};
pub use status::{JobKind, RunStatus, StepStatus};

/// Event types a run's timers deliver to it: `timer.<name>`, keyed by the run id.
pub const TIMER_EVENT_PREFIX: &str = "timer.";
