//! Territories: which team owns a lead, from rules over country, postal code, industry,
//! product and company size — declared in `workflows/territories/*.yaml`, checked by
//! `kontor check`, and applied by the `route` step.
//!
//! ```yaml
//! fallback: inside-sales            # the team whose queue gets what no rule matches
//! teams:
//!   nord:
//!     lead: maike.jansen            # reminded when a lead waits; the last owner
//!     locale: de                    # de | en: the language of the team's mail
//!     calendar: sales-munich        # follow-up time counts in these working hours
//!     strategy: round-robin         # round-robin | least-loaded | weighted | account-owner
//!     capacity: 25                  # most open leads per member, unless a member says
//!     members: [anna.schroeder, { user: jens.petersen, capacity: 10 }]
//! rules:
//!   - name: key-accounts
//!     team: key-accounts
//!     priority: 100
//!     employees: { min: 5000 }
//!   - name: nord-machinery
//!     team: nord
//!     priority: 50
//!     postal_codes: { DE: ["20-29"] }   # prefixes "8", "01067"; ranges "20000-29999"
//!     industries: [maschinenbau]
//!     products: [A, B]
//!     product_match: primary            # primary (default): the first product; any
//!   - name: dach-events
//!     team: events
//!     countries: [AT, CH]
//!     when: lead.source == 'messe'      # CEL over `lead` for anything else
//! ```
//!
//! **Who wins.** Every rule whose conditions all hold matches. The highest priority wins;
//! between equal priorities the most specific rule: the one constraining more of the
//! dimensions (region, industry, product, staff, condition), then the smaller region (in
//! postal codes), fewer industries, fewer products, the narrower staff range. Overlaps of
//! equal priority that this cannot decide, rules that can never win because another rule
//! covers them with a higher priority, unknown teams and calendars are errors that
//! `kontor check` shows at the rule. Nothing matched: the file's `fallback` team.
//!
//! This module is pure — the loader in [`crate::workflow::catalog`] reads the files, and
//! [`routing`] explains every decision so it can be stored with the lead.

pub mod analysis;
pub mod compile;
pub mod file;
pub mod postal;
pub mod routing;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use crate::diagnostics::Diagnostic;
use crate::expr::Expression;
pub use compile::{ParsedFile, parse_file};
pub use postal::CodeRange;
pub use routing::{LeadFacts, Routing};

/// Every territory file and team of a catalog.
#[derive(Debug, Clone, Default)]
pub struct Territories {
    /// Teams by name, from whichever file declares them.
    pub teams: BTreeMap<String, Arc<Team>>,
    /// Rule sets by file name (without `.yaml`): what a `route` step names.
    pub sets: BTreeMap<String, Arc<RuleSet>>,
    /// Problems; a file with any is not in `sets` (its teams still count as declared).
    pub diagnostics: Vec<Diagnostic>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Team {
    pub name: String,
    pub lead: Option<String>,
    pub locale: Locale,
    pub calendar: Option<String>,
    pub strategy: Strategy,
    pub members: Vec<Member>,
    #[serde(skip)]
    pub file: PathBuf,
    #[serde(skip)]
    pub line: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    pub user: String,
    /// The most open leads the member holds.
    pub capacity: u32,
}

/// How a team picks the owner among the members who can take a lead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// The member given the fewest leads so far (ties: the order written).
    RoundRobin,
    /// The member with the lowest open ÷ capacity.
    LeastLoaded,
    /// Leads in proportion to capacity: the lowest given-so-far ÷ capacity.
    Weighted,
    /// The company's account owner (from the ERP) when they are a member who can take
    /// it; otherwise least-loaded.
    AccountOwner,
}

impl Strategy {
    pub const NAMES: &'static str = "round-robin, least-loaded, weighted, account-owner";

    pub fn parse(name: &str) -> Option<Strategy> {
        Some(match name {
            "round-robin" => Strategy::RoundRobin,
            "least-loaded" => Strategy::LeastLoaded,
            "weighted" => Strategy::Weighted,
            "account-owner" => Strategy::AccountOwner,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round-robin",
            Strategy::LeastLoaded => "least-loaded",
            Strategy::Weighted => "weighted",
            Strategy::AccountOwner => "account-owner",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Locale {
    #[default]
    De,
    En,
}

impl Locale {
    pub fn as_str(self) -> &'static str {
        match self {
            Locale::De => "de",
            Locale::En => "en",
        }
    }
}

/// One territory file's rules.
#[derive(Debug, Clone)]
pub struct RuleSet {
    pub name: String,
    pub file: PathBuf,
    pub rules: Vec<Rule>,
    pub fallback: String,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub team: String,
    pub priority: i64,
    pub region: Region,
    /// Lower-cased; `None` is every industry.
    pub industries: Option<BTreeSet<String>>,
    /// Lower-cased; `None` is every product.
    pub products: Option<BTreeSet<String>>,
    pub product_match: ProductMatch,
    /// Inclusive bounds on the number of employees.
    pub employees: Option<(u64, u64)>,
    pub when: Option<Expression>,
    pub line: u32,
    pub column: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProductMatch {
    /// The lead's first product.
    Primary,
    /// Any product of the lead.
    Any,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Region {
    Anywhere,
    /// Whole countries, upper-case ISO codes.
    Countries(BTreeSet<String>),
    /// Code ranges per country.
    PostalCodes(BTreeMap<String, Vec<CodeRange>>),
}

/// How narrow a rule is, for deciding between equal priorities (see the module docs).
/// Smaller is more specific.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Specificity {
    /// Unconstrained dimensions (5 minus the constrained ones).
    pub open_dimensions: u8,
    pub postal_codes: u64,
    pub industries: u64,
    pub products: u64,
    pub employees: u64,
}

impl Rule {
    pub fn specificity(&self) -> Specificity {
        let region = match &self.region {
            Region::Anywhere => u64::MAX,
            Region::Countries(countries) => countries
                .iter()
                .map(|c| 10u64.pow(postal::digits(c).unwrap_or(7) as u32))
                .sum(),
            Region::PostalCodes(codes) => codes.values().flatten().map(CodeRange::size).sum(),
        };
        let count =
            |set: &Option<BTreeSet<String>>| set.as_ref().map_or(u64::MAX, |s| s.len() as u64);
        let constrained = [
            self.region != Region::Anywhere,
            self.industries.is_some(),
            self.products.is_some(),
            self.employees.is_some(),
            self.when.is_some(),
        ]
        .iter()
        .filter(|c| **c)
        .count() as u8;
        Specificity {
            open_dimensions: 5 - constrained,
            postal_codes: region,
            industries: count(&self.industries),
            products: count(&self.products),
            employees: self
                .employees
                .map_or(u64::MAX, |(min, max)| max.saturating_sub(min)),
        }
    }
}

impl Territories {
    pub fn team(&self, name: &str) -> Option<&Arc<Team>> {
        self.teams.get(name)
    }

    /// Team `team` and its member `member` (a user's id or rep id), or what is wrong.
    pub fn member(&self, team: &str, member: &str) -> Result<(&Arc<Team>, &Member), String> {
        let found = self.teams.get(team).ok_or_else(|| {
            let names: Vec<&str> = self.teams.keys().map(String::as_str).collect();
            format!("there is no team `{team}` (teams: {})", names.join(", "))
        })?;
        let member = found
            .members
            .iter()
            .find(|m| m.user == member)
            .ok_or_else(|| {
                let names: Vec<&str> = found.members.iter().map(|m| m.user.as_str()).collect();
                format!(
                    "team `{team}` has no member `{member}` (members: {})",
                    names.join(", ")
                )
            })?;
        Ok((found, member))
    }
}

#[cfg(test)]
mod tests;
