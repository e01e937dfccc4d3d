//! A territory file as written: serde structs mirroring the YAML, with the line and column
//! of every value a diagnostic may point at. Nothing here is interpreted; see
//! [`super::compile`].

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerritoryFile {
    #[serde(default)]
    pub description: Option<String>,
    /// The teams this file declares (a team is declared in one file and may be named by
    /// the rules of any).
    #[serde(default)]
    pub teams: BTreeMap<String, Spanned<TeamSource>>,
    /// The routing rules, highest priority first by convention (the order written only
    /// matters to break a tie `kontor check` already refuses).
    #[serde(default)]
    pub rules: Vec<Spanned<RuleSource>>,
    /// The team whose queue gets a lead no rule matches.
    pub fallback: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamSource {
    /// The team lead: reminded when a lead waits too long, and the last owner.
    #[serde(default)]
    pub lead: Option<Spanned<String>>,
    /// The language of the team's mail: `de` or `en`.
    #[serde(default)]
    pub locale: Option<Spanned<String>>,
    /// The calendar the follow-up time is counted in (a file in `calendars/`).
    #[serde(default)]
    pub calendar: Option<Spanned<String>>,
    /// `round-robin` (default), `least-loaded`, `weighted` or `account-owner`.
    #[serde(default)]
    pub strategy: Option<Spanned<String>>,
    /// The most open leads a member holds unless the member says otherwise.
    #[serde(default)]
    pub capacity: Option<Spanned<u32>>,
    #[serde(default)]
    pub members: Vec<Spanned<MemberSource>>,
}

/// A member: a user (or rep) id, or `{ user, capacity }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum MemberSource {
    Name(String),
    Full(MemberFields),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberFields {
    pub user: String,
    #[serde(default)]
    pub capacity: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSource {
    pub name: Spanned<String>,
    pub team: Spanned<String>,
    #[serde(default)]
    pub priority: Option<Spanned<i64>>,
    /// Whole countries (ISO 3166 alpha-2).
    #[serde(default)]
    pub countries: Option<Spanned<Vec<Spanned<String>>>>,
    /// Per country, postal-code prefixes (`"8"`, `"01067"`) and ranges (`"20000-29999"`,
    /// `"20-29"`).
    #[serde(default)]
    pub postal_codes: Option<Spanned<BTreeMap<String, Vec<Spanned<String>>>>>,
    #[serde(default)]
    pub industries: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub products: Option<Spanned<Vec<Spanned<String>>>>,
    /// Whether `products` is about the lead's `primary` product (default) or `any` of them.
    #[serde(default)]
    pub product_match: Option<Spanned<String>>,
    #[serde(default)]
    pub employees: Option<Spanned<EmployeesSource>>,
    /// A CEL condition over `lead` for anything else.
    #[serde(default)]
    pub when: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmployeesSource {
    #[serde(default)]
    pub min: Option<u64>,
    #[serde(default)]
    pub max: Option<u64>,
}
