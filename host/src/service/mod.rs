//! The service desk, as pure types and rules — no SQL, no HTTP: a ticket's statuses and
//! what happens to it, and the SLA clocks those happenings drive. The store keeps the
//! state; steps and routes apply these rules to it.
//!
//! The clocks are computed by replaying a ticket's happenings against a policy's targets
//! ([`sla_clock`]), never kept as counters: a policy change (priority, category) replays
//! the same history against the new targets, so business time already used is kept and
//! paused time stays excluded without any bookkeeping of its own.

pub mod escalation;
pub mod sla;
pub mod sla_clock;
pub mod ticket;

#[cfg(test)]
mod testing;
