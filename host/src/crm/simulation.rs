//! A dry run of lead routing: what the territory files and the teams' strategies would do
//! with a file of leads — stage, team, owner and why, per lead; leads per team and member;
//! what would wait in an overflow queue — without writing anything. `kontor simulate`
//! scores the leads (with the scoring plugin), reads the members' current counters and
//! calls [`simulate`]; with `--compare` it simulates the old files too and [`moved`] says
//! which leads the change of rules would move to another team.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use super::assignment::{Overflow, RepState, pick};
use super::lead::{NewLead, Stage};
use super::territory::{LeadFacts, RuleSet, Territories};
use crate::expr::Calendars;

/// A lead of the file with its score (`{score, grade, explanation}`), if scored.
pub struct Scored {
    pub line: u64,
    pub lead: NewLead,
    pub score: Option<Json>,
}

/// What routing would do with one lead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub line: u64,
    pub external_id: String,
    pub stage: Stage,
    pub score: Option<i64>,
    pub team: String,
    pub rule: Option<String>,
    pub owner: Option<String>,
    pub overflow: Option<Overflow>,
    /// The territory decision and the pick, in words.
    pub why: String,
}

/// Routes and assigns `rows` in order, as the `route` step would, starting from the
/// members' counters in `states` (by team) and counting each assignment as it goes.
pub fn simulate(
    rows: &[Scored],
    set: &RuleSet,
    territories: &Territories,
    states: &BTreeMap<String, Vec<RepState>>,
    now: DateTime<Utc>,
    calendars: &Calendars,
) -> Vec<Outcome> {
    let mut states = states.clone();
    rows.iter()
        .map(|row| {
            let lead = row.lead.to_json(&row.lead.external_id);
            let routing = set.route(&LeadFacts::from_json(&lead), &lead, now, calendars);
            let grade = row
                .score
                .as_ref()
                .and_then(|s| s.get("grade"))
                .and_then(Json::as_str);
            let stage = grade.map_or(Stage::New, Stage::for_grade);
            let score = row
                .score
                .as_ref()
                .and_then(|s| s.get("score"))
                .and_then(Json::as_i64);
            let (owner, overflow, picked) = match territories.team(&routing.team) {
                Some(team) if stage != Stage::Unqualified => {
                    let team_states = states.entry(team.name.clone()).or_default();
                    let assignment = pick(team, team_states, now, None, &[]);
                    if let Some(owner) = &assignment.owner {
                        match team_states.iter_mut().find(|s| &s.user == owner) {
                            Some(s) => {
                                s.open += 1;
                                s.assigned += 1;
                            }
                            None => team_states.push(RepState {
                                open: 1,
                                assigned: 1,
                                ..RepState::new(owner)
                            }),
                        }
                    }
                    (assignment.owner, assignment.overflow, assignment.reason)
                }
                Some(_) => (None, None, "unqualified: stays with marketing".to_string()),
                None => (
                    None,
                    None,
                    format!("team `{}` is not declared", routing.team),
                ),
            };
            Outcome {
                line: row.line,
                external_id: row.lead.external_id.clone(),
                stage,
                score,
                team: routing.team.clone(),
                rule: routing.rule.clone(),
                owner,
                overflow,
                why: format!("{}; {picked}", routing.reason),
            }
        })
        .collect()
}

/// Leads per team, and per member of each.
pub fn per_team(outcomes: &[Outcome]) -> BTreeMap<String, (usize, BTreeMap<String, usize>)> {
    let mut teams: BTreeMap<String, (usize, BTreeMap<String, usize>)> = BTreeMap::new();
    for o in outcomes {
        let entry = teams.entry(o.team.clone()).or_default();
        entry.0 += 1;
        if let Some(owner) = &o.owner {
            *entry.1.entry(owner.clone()).or_default() += 1;
        }
    }
    teams
}

/// The leads `new` routes to another team than `old` (same rows, same order): line,
/// external id, old team, new team.
pub fn moved(old: &[Outcome], new: &[Outcome]) -> Vec<(u64, String, String, String)> {
    old.iter()
        .zip(new)
        .filter(|(o, n)| o.team != n.team)
        .map(|(o, n)| {
            (
                n.line,
                n.external_id.clone(),
                o.team.clone(),
                n.team.clone(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crm::territory::parse_file;
    use serde_json::json;

    fn territories(text: &str) -> Territories {
        let t = Territories::assemble(vec![parse_file(
            std::path::Path::new("t/s.yaml"),
            text,
            &Default::default(),
        )]);
        assert!(t.diagnostics.is_empty(), "{:?}", t.diagnostics);
        t
    }

    const RULES: &str = "fallback: rest\nteams:\n  rest: { members: [r] }\n  north: { members: [a, b], capacity: 2 }\nrules:\n  - { name: north, team: north, postal_codes: { DE: [\"2\"] } }\n";

    fn lead(id: &str, postal: &str, grade: &str) -> Scored {
        Scored {
            line: 1,
            lead: NewLead {
                external_id: id.into(),
                company: "X".into(),
                country: "DE".into(),
                postal_code: Some(postal.into()),
                ..NewLead::default()
            },
            score: Some(json!({"score": 50, "grade": grade})),
        }
    }

    #[test]
    fn assigns_in_turn_and_overflows_when_full() {
        let t = territories(RULES);
        let rows: Vec<Scored> = (0..5)
            .map(|i| lead(&format!("L-{i}"), "20095", "A"))
            .collect();
        let out = simulate(
            &rows,
            &t.sets["s"],
            &t,
            &BTreeMap::new(),
            Utc::now(),
            &Default::default(),
        );
        let owners: Vec<Option<&str>> = out.iter().map(|o| o.owner.as_deref()).collect();
        assert_eq!(owners, [Some("a"), Some("b"), Some("a"), Some("b"), None]);
        assert_eq!(out[4].overflow, Some(Overflow::AllFull));
        let teams = per_team(&out);
        assert_eq!(teams["north"].0, 5);
        assert_eq!(teams["north"].1["a"], 2);
        // Unqualified leads are routed, not assigned.
        let out = simulate(
            &[lead("C", "20095", "C")],
            &t.sets["s"],
            &t,
            &BTreeMap::new(),
            Utc::now(),
            &Default::default(),
        );
        assert_eq!(
            (out[0].team.as_str(), out[0].owner.as_deref()),
            ("north", None)
        );
    }

    #[test]
    fn a_rule_change_shows_who_moves() {
        let old = territories(RULES);
        let new = territories(&RULES.replace("[\"2\"]", "[\"20-21\"]"));
        let rows = vec![lead("L-1", "20095", "A"), lead("L-2", "22767", "A")];
        let none = BTreeMap::new();
        let before = simulate(
            &rows,
            &old.sets["s"],
            &old,
            &none,
            Utc::now(),
            &Default::default(),
        );
        let after = simulate(
            &rows,
            &new.sets["s"],
            &new,
            &none,
            Utc::now(),
            &Default::default(),
        );
        assert_eq!(
            moved(&before, &after),
            [(
                1,
                "L-2".to_string(),
                "north".to_string(),
                "rest".to_string()
            )]
        );
    }
}
