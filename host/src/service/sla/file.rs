//! An SLA policy file as written: serde structs mirroring the YAML, with the line and
//! column of every value a diagnostic may point at. Nothing here is interpreted; see
//! [`super::compile`].

use serde::Deserialize;
use serde_saphyr::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlaFile {
    #[serde(default)]
    pub description: Option<String>,
    /// The priorities tickets have (`match.priority` must name one of them).
    #[serde(default)]
    pub priorities: Vec<Spanned<String>>,
    /// The categories tickets have (`match.category` must name one of them).
    #[serde(default)]
    pub categories: Vec<Spanned<String>>,
    /// Defaults for every policy of the file.
    #[serde(default)]
    pub defaults: Option<Spanned<PolicySource>>,
    /// In the order they are tried: the first that matches a ticket is its policy.
    #[serde(default)]
    pub policies: Vec<Spanned<PolicySource>>,
}

/// A policy; `defaults` is one without `name` and `match`, whose fields every policy of
/// the file has unless it sets its own.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySource {
    #[serde(default)]
    pub name: Option<Spanned<String>>,
    /// Which tickets; none: every ticket.
    #[serde(default, rename = "match")]
    pub matches: Option<Spanned<MatchSource>>,
    /// The calendar the clocks count on (a file in `calendars/`).
    #[serde(default)]
    pub calendar: Option<Spanned<String>>,
    /// Business time until the first public reply (`4h`, `1d 4h`).
    #[serde(default)]
    pub first_response: Option<Spanned<String>>,
    /// Business time until a public reply after each customer message.
    #[serde(default)]
    pub next_response: Option<Spanned<String>>,
    /// Business time until the ticket is resolved.
    #[serde(default)]
    pub resolution: Option<Spanned<String>>,
    /// Per clock, the statuses that pause it.
    #[serde(default)]
    pub pause: Option<Spanned<PauseSource>>,
    /// `continue` (default) or `restart`: the resolution clock of a reopened ticket.
    #[serde(default)]
    pub reopen: Option<Spanned<String>>,
    /// Shares of a clock's target at which the assignee is warned (`[75%, 90%]`).
    #[serde(default)]
    pub warnings: Option<Spanned<Vec<Spanned<String>>>>,
    /// Escalation levels, lowest threshold first.
    #[serde(default)]
    pub escalation: Option<Spanned<Vec<Spanned<LevelSource>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchSource {
    #[serde(default)]
    pub category: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub priority: Option<Spanned<Vec<Spanned<String>>>>,
    /// The customer's tier, from the ERP or the ticket (`gold`, `standard`, …).
    #[serde(default)]
    pub tier: Option<Spanned<Vec<Spanned<String>>>>,
    /// `email`, `phone`, `web` or `api`.
    #[serde(default)]
    pub channel: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PauseSource {
    #[serde(default)]
    pub first_response: Vec<Spanned<String>>,
    #[serde(default)]
    pub next_response: Vec<Spanned<String>>,
    #[serde(default)]
    pub resolution: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelSource {
    /// `75%`, `100%`, `100% + 4h`.
    pub at: Spanned<String>,
    /// The clock it watches: `first_response`, `next_response`, `resolution`; none: each.
    #[serde(default)]
    pub clock: Option<Spanned<String>>,
    /// Who is told: `assignee`, `group_lead`, `service_lead`, or an email address.
    #[serde(default)]
    pub notify: Vec<Spanned<String>>,
    /// The mail's template (a folder in `templates/`); default `sla-escalation`.
    #[serde(default)]
    pub template: Option<Spanned<String>>,
    /// `group_queue`: the ticket leaves its assignee for the group's queue.
    #[serde(default)]
    pub reassign: Option<Spanned<String>>,
    /// The ticket's priority goes one up.
    #[serde(default)]
    pub raise_priority: Option<Spanned<bool>>,
    /// Mail waits for the policy calendar's working hours (default `true`).
    #[serde(default)]
    pub business_hours_only: Option<Spanned<bool>>,
}
