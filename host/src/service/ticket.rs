//! A ticket's status and the happenings on it that its SLA clocks depend on.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where a ticket stands. Which statuses pause which clock is the SLA policy's choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    New,
    Open,
    WaitingOnCustomer,
    WaitingOnThirdParty,
    Resolved,
    Closed,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::New,
        Status::Open,
        Status::WaitingOnCustomer,
        Status::WaitingOnThirdParty,
        Status::Resolved,
        Status::Closed,
    ];

    /// The name in files and the API: `waiting-on-customer`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Open => "open",
            Status::WaitingOnCustomer => "waiting-on-customer",
            Status::WaitingOnThirdParty => "waiting-on-third-party",
            Status::Resolved => "resolved",
            Status::Closed => "closed",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Resolved or closed: the resolution clock has stopped.
    pub fn is_done(self) -> bool {
        matches!(self, Status::Resolved | Status::Closed)
    }
}

/// One happening on a ticket that a clock may start, stop or pause on, with its time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Happening {
    pub at: DateTime<Utc>,
    pub what: What,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    /// The ticket was opened (its first happening; starts first response and resolution).
    Created,
    /// The status changed to this one.
    Status(Status),
    /// An agent's reply: `public` ones reach the customer and satisfy a response clock;
    /// internal notes satisfy nothing.
    AgentReply { public: bool },
    /// The customer wrote (starts the next-response clock unless it already runs).
    CustomerMessage,
}
