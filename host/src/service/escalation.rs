//! A ticket under its policy at one moment: every clock's state, the warnings and
//! escalation levels now due, and when the next one will be — what an SLA step acts on
//! and sets its timer by.
//!
//! A level is remembered by its clock run and threshold (`resolution#0:escalation@100%+4h`),
//! not by its place in the policy: after a priority change the new policy's 75 % warning
//! is the one already sent under the old policy, so it is not sent again, while a level
//! the new policy puts in the past is due at once.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use kontor_time::Calendar;

use super::sla::{Level, LevelKind, Policy};
use super::sla_clock::{ClockRule, ClockState, Targets, Threshold, replay};
use super::ticket::Happening;

/// The clocks a policy keeps, on `calendar` (the policy's).
pub fn targets(policy: &Policy, calendar: Arc<Calendar>) -> Targets {
    let rule = |target: Option<chrono::Duration>, pause: &BTreeSet<_>| {
        target.map(|target| ClockRule {
            target,
            pause: pause.clone(),
        })
    };
    Targets {
        calendar,
        first_response: rule(policy.first_response, &policy.pause.first_response),
        next_response: rule(policy.next_response, &policy.pause.next_response),
        resolution: rule(policy.resolution, &policy.pause.resolution),
        reopen: policy.reopen,
    }
}

/// A level reached on one clock run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueLevel {
    /// What remembers that it fired.
    pub key: String,
    pub clock: ClockState,
    pub level: Level,
    /// When the clock reached the threshold.
    pub reached_at: DateTime<Utc>,
    /// When its mail may go: at once, or at the calendar's next working time when the
    /// level waits for business hours.
    pub notify_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub clocks: Vec<ClockState>,
    /// Reached and not fired yet, in the order reached.
    pub due: Vec<DueLevel>,
    /// When the next level not yet reached will be (while its clock runs): the SLA
    /// timer's time.
    pub next_at: Option<DateTime<Utc>>,
}

fn key(clock: &ClockState, level: &Level) -> String {
    let kind = match level.kind {
        LevelKind::Warning => "warning",
        LevelKind::Escalation => "escalation",
    };
    let Threshold { percent, plus } = level.at;
    let plus = if plus.is_zero() {
        String::new()
    } else {
        format!("+{}", kontor_time::format_duration(plus))
    };
    format!(
        "{}#{}:{kind}@{percent}%{plus}",
        clock.kind.as_str(),
        clock.cycle
    )
}

/// The ticket's clocks under `policy` at `now`, given the levels that already fired.
pub fn evaluate(
    policy: &Policy,
    calendar: Arc<Calendar>,
    happenings: &[Happening],
    fired: &BTreeSet<String>,
    now: DateTime<Utc>,
) -> Evaluation {
    let targets = targets(policy, calendar.clone());
    let runs = replay(happenings, &targets);
    let mut due = Vec::new();
    let mut next_at: Option<DateTime<Utc>> = None;
    for run in &runs {
        let state = run.state(&calendar, now);
        for level in &policy.levels {
            if level.clock.is_some_and(|c| c != run.kind) {
                continue;
            }
            let key = key(&state, level);
            if fired.contains(&key) {
                continue;
            }
            let Some(reached_at) = run.reaches(&calendar, level.at.amount(run.target)) else {
                continue;
            };
            // A run stopped exactly at a threshold has not passed it.
            if run.stopped_at.is_some_and(|stop| reached_at >= stop) {
                continue;
            }
            if reached_at > now {
                next_at = Some(next_at.map_or(reached_at, |n| n.min(reached_at)));
                continue;
            }
            let notify_at = if level.business_hours_only {
                calendar.next_working_time(now).unwrap_or(now)
            } else {
                now
            };
            due.push(DueLevel {
                key,
                clock: state.clone(),
                level: level.clone(),
                reached_at,
                notify_at,
            });
        }
    }
    due.sort_by_key(|d| d.reached_at);
    Evaluation {
        clocks: runs.iter().map(|r| r.state(&calendar, now)).collect(),
        due,
        next_at,
    }
}

#[cfg(test)]
mod tests;
