//! Who in a team gets a lead: the team's strategy over the members who can take it, with
//! every member's reason when they cannot (absent, inactive, full, had it already). The
//! store holds each member's counters and calls [`pick`] inside the transaction that
//! assigns, so concurrent leads see each other's assignments.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::territory::{Strategy, Team};

/// A member's state as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RepState {
    pub user: String,
    /// Leads assigned to them and not yet accepted, rejected or passed on.
    pub open: u32,
    /// Leads ever assigned to them in this team.
    pub assigned: u64,
    pub active: bool,
    pub absent_from: Option<DateTime<Utc>>,
    pub absent_until: Option<DateTime<Utc>>,
}

impl RepState {
    pub fn new(user: &str) -> RepState {
        RepState {
            user: user.to_string(),
            active: true,
            ..RepState::default()
        }
    }

    pub fn absent_at(&self, now: DateTime<Utc>) -> bool {
        match (self.absent_from, self.absent_until) {
            (None, None) => false,
            (from, until) => from.is_none_or(|f| f <= now) && until.is_none_or(|u| now < u),
        }
    }
}

/// An absence from `from` until `until` (either end open): `until` must come after
/// `from`.
pub fn check_absence(
    from: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> Result<(), String> {
    match (from, until) {
        (Some(from), Some(until)) if until <= from => Err(format!(
            "the absence ends ({until}) before it begins ({from})"
        )),
        _ => Ok(()),
    }
}

/// Why a member did not get the lead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Skipped {
    Absent,
    Inactive,
    Full,
    /// They had the lead before and let it pass (reassignment).
    HadIt,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    pub user: String,
    pub open: u32,
    pub capacity: u32,
    pub assigned: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<Skipped>,
}

/// Why nobody in the team got it: the lead waits in the team's overflow queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Overflow {
    NoMembers,
    AllAbsent,
    AllFull,
    /// Members are absent, inactive, full or had it, in some mix.
    NobodyAvailable,
}

impl Overflow {
    pub fn as_str(self) -> &'static str {
        match self {
            Overflow::NoMembers => "no-members",
            Overflow::AllAbsent => "all-absent",
            Overflow::AllFull => "all-full",
            Overflow::NobodyAvailable => "nobody-available",
        }
    }
}

/// The pick and its reasons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Assignment {
    pub team: String,
    pub strategy: Strategy,
    pub owner: Option<String>,
    /// Every member in the order written, with why they were skipped.
    pub candidates: Vec<Candidate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overflow: Option<Overflow>,
    /// In a sentence.
    pub reason: String,
}

/// What a `route` step asks the engine to do: assign the lead in `team` (in the store,
/// where the counters are), keyed by the step's effect key.
#[derive(Debug, Clone)]
pub struct AssignCall {
    pub key: String,
    /// The run's input: the lead.
    pub lead: serde_json::Value,
    pub team: std::sync::Arc<Team>,
    pub routing: Option<super::territory::Routing>,
    /// `{score, grade, explanation}` from scoring.
    pub score: Option<serde_json::Value>,
    pub account_owner: Option<String>,
    pub reassign: bool,
}

/// Picks the owner among `team`'s members. `states` has the stored state of some of
/// them (a member without one has taken nothing yet); `account_owner` is the company's
/// owner in the ERP, when known; `had_it` are earlier owners of this lead.
pub fn pick(
    team: &Team,
    states: &[RepState],
    now: DateTime<Utc>,
    account_owner: Option<&str>,
    had_it: &[String],
) -> Assignment {
    let candidates: Vec<Candidate> = team
        .members
        .iter()
        .map(|member| {
            let state = states
                .iter()
                .find(|s| s.user == member.user)
                .cloned()
                .unwrap_or_else(|| RepState::new(&member.user));
            let skipped = if !state.active {
                Some(Skipped::Inactive)
            } else if state.absent_at(now) {
                Some(Skipped::Absent)
            } else if had_it.contains(&member.user) {
                Some(Skipped::HadIt)
            } else if state.open >= member.capacity {
                Some(Skipped::Full)
            } else {
                None
            };
            Candidate {
                user: member.user.clone(),
                open: state.open,
                capacity: member.capacity,
                assigned: state.assigned,
                skipped,
            }
        })
        .collect();
    let eligible: Vec<&Candidate> = candidates.iter().filter(|c| c.skipped.is_none()).collect();
    let least_loaded = |list: &[&Candidate]| {
        list.iter()
            .copied()
            .min_by(|a, b| {
                // open/capacity compared without division; then fewer given, then order.
                (u64::from(a.open) * u64::from(b.capacity))
                    .cmp(&(u64::from(b.open) * u64::from(a.capacity)))
                    .then(a.assigned.cmp(&b.assigned))
            })
            .map(|c| c.user.clone())
    };
    let (owner, how) = match team.strategy {
        Strategy::RoundRobin => (
            eligible
                .iter()
                .min_by_key(|c| c.assigned)
                .map(|c| c.user.clone()),
            "round-robin: the member given the fewest leads".to_string(),
        ),
        Strategy::LeastLoaded => (
            least_loaded(&eligible),
            "least-loaded: the lowest open ÷ capacity".to_string(),
        ),
        Strategy::Weighted => (
            eligible
                .iter()
                .min_by(|a, b| {
                    (u128::from(a.assigned + 1) * u128::from(b.capacity))
                        .cmp(&(u128::from(b.assigned + 1) * u128::from(a.capacity)))
                })
                .map(|c| c.user.clone()),
            "weighted: leads in proportion to capacity".to_string(),
        ),
        Strategy::AccountOwner => {
            match account_owner.filter(|o| eligible.iter().any(|c| c.user == *o)) {
                Some(o) => (
                    Some(o.to_string()),
                    "account-owner: the company's owner in the ERP".to_string(),
                ),
                None => (
                    least_loaded(&eligible),
                    match account_owner {
                        Some(o) => format!(
                            "account-owner: `{o}` cannot take it (not an available member); least-loaded instead"
                        ),
                        None => "account-owner: the ERP names no owner; least-loaded instead"
                            .to_string(),
                    },
                ),
            }
        }
    };
    let overflow = owner.is_none().then(|| {
        let all = |s: Skipped| candidates.iter().all(|c| c.skipped == Some(s));
        if candidates.is_empty() {
            Overflow::NoMembers
        } else if all(Skipped::Absent) {
            Overflow::AllAbsent
        } else if all(Skipped::Full) {
            Overflow::AllFull
        } else {
            Overflow::NobodyAvailable
        }
    });
    let reason = match (&owner, overflow) {
        (Some(owner), _) => format!("{how} picked `{owner}`"),
        (None, Some(o)) => format!(
            "nobody in `{}` can take it ({}); it waits in the team's overflow queue",
            team.name,
            o.as_str()
        ),
        (None, None) => unreachable!("no owner means overflow"),
    };
    Assignment {
        team: team.name.clone(),
        strategy: team.strategy,
        owner,
        candidates,
        overflow,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crm::territory::{Locale, Member};

    fn team(strategy: Strategy, members: &[(&str, u32)]) -> Team {
        Team {
            name: "nord".into(),
            lead: None,
            locale: Locale::De,
            calendar: None,
            strategy,
            members: members
                .iter()
                .map(|(u, c)| Member {
                    user: u.to_string(),
                    capacity: *c,
                })
                .collect(),
            file: Default::default(),
            line: 0,
        }
    }

    /// Assigns `n` leads, as the store would: each pick raises the owner's counters.
    fn run(team: &Team, states: &mut Vec<RepState>, n: usize) -> Vec<Option<String>> {
        let now = Utc::now();
        (0..n)
            .map(|_| {
                let a = pick(team, states, now, None, &[]);
                if let Some(owner) = &a.owner {
                    let i = match states.iter().position(|s| &s.user == owner) {
                        Some(i) => i,
                        None => {
                            states.push(RepState::new(owner));
                            states.len() - 1
                        }
                    };
                    states[i].open += 1;
                    states[i].assigned += 1;
                }
                a.owner
            })
            .collect()
    }

    fn count(picks: &[Option<String>], user: &str) -> usize {
        picks.iter().filter(|p| p.as_deref() == Some(user)).count()
    }

    #[test]
    fn round_robin_takes_turns() {
        let t = team(Strategy::RoundRobin, &[("a", 100), ("b", 100), ("c", 100)]);
        let picks = run(&t, &mut Vec::new(), 7);
        assert_eq!(
            picks[..3],
            [Some("a".into()), Some("b".into()), Some("c".into())]
        );
        assert_eq!(
            (count(&picks, "a"), count(&picks, "b"), count(&picks, "c")),
            (3, 2, 2)
        );
    }

    #[test]
    fn weighted_follows_capacity() {
        let t = team(Strategy::Weighted, &[("a", 10), ("b", 30), ("c", 20)]);
        let picks = run(&t, &mut Vec::new(), 60);
        assert_eq!(
            (count(&picks, "a"), count(&picks, "b"), count(&picks, "c")),
            (10, 30, 20)
        );
    }

    #[test]
    fn least_loaded_compares_open_to_capacity() {
        let t = team(Strategy::LeastLoaded, &[("a", 10), ("b", 20)]);
        let mut states = vec![
            RepState {
                open: 4,
                assigned: 50,
                ..RepState::new("a")
            },
            RepState {
                open: 10,
                assigned: 10,
                ..RepState::new("b")
            },
        ];
        // a: 4/10 < b: 10/20.
        assert_eq!(run(&t, &mut states, 1), [Some("a".into())]);
        // a: 5/10 = b: 10/20: fewer given wins (b).
        assert_eq!(run(&t, &mut states, 1), [Some("b".into())]);
    }

    #[test]
    fn absent_inactive_and_full_are_skipped_with_reasons() {
        let now = Utc::now();
        let t = team(
            Strategy::RoundRobin,
            &[("a", 2), ("b", 2), ("c", 2), ("d", 2)],
        );
        let states = vec![
            RepState {
                absent_from: Some(now - chrono::Duration::days(1)),
                absent_until: Some(now + chrono::Duration::days(1)),
                ..RepState::new("a")
            },
            RepState {
                active: false,
                ..RepState::new("b")
            },
            RepState {
                open: 2,
                ..RepState::new("c")
            },
        ];
        let a = pick(&t, &states, now, None, &[]);
        assert_eq!(a.owner.as_deref(), Some("d"));
        let skipped: Vec<_> = a.candidates.iter().map(|c| c.skipped).collect();
        assert_eq!(
            skipped,
            [
                Some(Skipped::Absent),
                Some(Skipped::Inactive),
                Some(Skipped::Full),
                None
            ]
        );
        // Absence that ended counts no more.
        let back = vec![RepState {
            absent_until: Some(now),
            ..RepState::new("a")
        }];
        assert_eq!(pick(&t, &back, now, None, &[]).owner.as_deref(), Some("a"));
        // d had it before: nobody is left; the overflow queue, never a full rep.
        let a = pick(&t, &states, now, None, &["d".into()]);
        assert_eq!(a.owner, None);
        assert_eq!(a.overflow, Some(Overflow::NobodyAvailable));
        assert!(a.reason.contains("overflow"), "{}", a.reason);
        let full: Vec<_> = ["a", "b", "c", "d"]
            .iter()
            .map(|u| RepState {
                open: 2,
                ..RepState::new(u)
            })
            .collect();
        assert_eq!(
            pick(&t, &full, now, None, &[]).overflow,
            Some(Overflow::AllFull)
        );
        assert_eq!(
            pick(&team(Strategy::RoundRobin, &[]), &[], now, None, &[]).overflow,
            Some(Overflow::NoMembers)
        );
    }

    #[test]
    fn the_account_owner_first_when_they_can_take_it() {
        let now = Utc::now();
        let t = team(Strategy::AccountOwner, &[("a", 5), ("b", 5)]);
        let states = vec![RepState {
            open: 3,
            ..RepState::new("b")
        }];
        assert_eq!(
            pick(&t, &states, now, Some("b"), &[]).owner.as_deref(),
            Some("b")
        );
        let a = pick(&t, &states, now, Some("zoe"), &[]);
        assert_eq!(a.owner.as_deref(), Some("a"));
        assert!(a.reason.contains("`zoe` cannot take it"), "{}", a.reason);
    }
}
