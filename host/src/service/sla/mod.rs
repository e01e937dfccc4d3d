//! SLA policies from `workflows/sla/*.yaml`: which tickets a policy covers (category,
//! priority, customer tier, channel), its clocks' targets in business time on a named
//! calendar, what pauses them, and the warnings and escalation levels along the way.
//!
//! Policies are tried in order — the files by name, each file's policies as written —
//! and the first that matches a ticket is its policy; `kontor check` refuses a policy an
//! earlier one always wins over, and a set of files in which some ticket matches none.
//!
//! ```yaml
//! priorities: [kritisch, hoch, normal, niedrig]
//! categories: [ersatzteil, stoerung, reklamation, zahlung]
//! defaults:
//!   calendar: service-berlin
//!   pause: {resolution: [waiting-on-customer, waiting-on-third-party]}
//!   warnings: [75%, 90%]
//! policies:
//!   - name: stoerung-kritisch
//!     match: {category: [stoerung], priority: [kritisch]}
//!     calendar: hotline-24-7
//!     first_response: 1h
//!     resolution: 8h
//!     escalation:
//!       - {at: 100%, notify: [group_lead], reassign: group_queue}
//!       - {at: 100% + 4h, notify: [service_lead], raise_priority: true}
//!   - name: standard
//!     first_response: 8h
//!     resolution: 5d
//! ```

mod compile;
pub mod file;

use std::collections::BTreeSet;
use std::path::PathBuf;

use chrono::Duration;

pub use compile::{ParsedFile, parse_file, parse_threshold};

use super::sla_clock::{ClockKind, Reopen, Threshold};
use super::ticket::Status;
use crate::diagnostics::Diagnostic;

/// The channels a ticket comes in on.
pub const CHANNELS: &[&str] = &["email", "phone", "web", "api"];

/// Every policy of `sla/`, in the order they are tried.
#[derive(Debug, Default)]
pub struct SlaPolicies {
    pub policies: Vec<Policy>,
    pub diagnostics: Vec<Diagnostic>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: String,
    pub file: PathBuf,
    pub line: u32,
    pub column: u32,
    pub matches: Match,
    pub calendar: String,
    pub first_response: Option<Duration>,
    pub next_response: Option<Duration>,
    pub resolution: Option<Duration>,
    /// Per clock, the statuses that pause it.
    pub pause: Pauses,
    pub reopen: Reopen,
    pub levels: Vec<Level>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pauses {
    pub first_response: BTreeSet<Status>,
    pub next_response: BTreeSet<Status>,
    pub resolution: BTreeSet<Status>,
}

/// Which tickets a policy covers; `None`: any value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Match {
    pub category: Option<BTreeSet<String>>,
    pub priority: Option<BTreeSet<String>>,
    pub tier: Option<BTreeSet<String>>,
    pub channel: Option<BTreeSet<String>>,
}

/// What a ticket is matched on.
#[derive(Debug, Clone, Copy, Default)]
pub struct TicketFacts<'a> {
    pub category: Option<&'a str>,
    pub priority: Option<&'a str>,
    pub tier: Option<&'a str>,
    pub channel: Option<&'a str>,
}

impl Match {
    fn dimensions(&self) -> [&Option<BTreeSet<String>>; 4] {
        [&self.category, &self.priority, &self.tier, &self.channel]
    }

    pub fn accepts(&self, ticket: &TicketFacts<'_>) -> bool {
        let values = [
            ticket.category,
            ticket.priority,
            ticket.tier,
            ticket.channel,
        ];
        self.dimensions()
            .into_iter()
            .zip(values)
            .all(|(allowed, value)| match allowed {
                None => true,
                Some(set) => value.is_some_and(|v| set.contains(v)),
            })
    }

    /// Every ticket `other` accepts, this one accepts too.
    pub fn covers(&self, other: &Match) -> bool {
        self.dimensions()
            .into_iter()
            .zip(other.dimensions())
            .all(|(mine, theirs)| match (mine, theirs) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(mine), Some(theirs)) => theirs.is_subset(mine),
            })
    }

    pub fn is_everything(&self) -> bool {
        self.dimensions().into_iter().all(Option::is_none)
    }
}

/// A warning or an escalation level: reached on a clock at a threshold, then its actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Level {
    pub at: Threshold,
    /// The clock it watches; `None`: each of the policy's clocks.
    pub clock: Option<ClockKind>,
    pub notify: Vec<Recipient>,
    pub template: String,
    /// The ticket leaves its assignee for the group's queue.
    pub to_group_queue: bool,
    pub raise_priority: bool,
    /// Its mail waits for the calendar's working hours.
    pub business_hours_only: bool,
    /// `warning` (from `warnings:`) or `escalation`.
    pub kind: LevelKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LevelKind {
    Warning,
    Escalation,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    Assignee,
    GroupLead,
    ServiceLead,
    Email(String),
}

impl SlaPolicies {
    /// The first policy that matches the ticket.
    pub fn select(&self, ticket: &TicketFacts<'_>) -> Option<&Policy> {
        self.policies.iter().find(|p| p.matches.accepts(ticket))
    }

    pub fn get(&self, name: &str) -> Option<&Policy> {
        self.policies.iter().find(|p| p.name == name)
    }
}

#[cfg(test)]
mod tests;
