//! Territory files → [`Territories`]: each file parsed and checked on its own
//! ([`parse_file`]), then all of them together ([`Territories::assemble`]): teams declared
//! once, every rule's team and every file's fallback declared somewhere, calendars known,
//! and [`super::analysis`] over each file's rules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_saphyr::Spanned;

use super::file::{MemberSource, RuleSource, TeamSource, TerritoryFile};
use super::postal::{self, CodeRange};
use super::{Locale, Member, ProductMatch, Region, Rule, RuleSet, Strategy, Team, Territories};
use crate::diagnostics::Diagnostic;
use crate::expr::Expression;

/// One file, checked on its own.
#[derive(Debug)]
pub struct ParsedFile {
    /// The file name without `.yaml`: what a `route` step names.
    pub name: String,
    pub file: PathBuf,
    pub teams: Vec<Team>,
    pub rules: Vec<Rule>,
    /// Where each rule names its team, in `rules`' order.
    team_at: Vec<(u32, u32)>,
    fallback: Option<(String, u32, u32)>,
    pub diagnostics: Vec<Diagnostic>,
}

/// The most open leads per member when neither team nor member says.
pub const DEFAULT_CAPACITY: u32 = 50;

fn at<T>(path: &Path, spanned: &Spanned<T>, message: impl Into<String>) -> Diagnostic {
    Diagnostic::new(
        path,
        spanned.referenced.line() as u32,
        spanned.referenced.column() as u32,
        message,
    )
}

fn position<T>(spanned: &Spanned<T>) -> (u32, u32) {
    (
        spanned.referenced.line() as u32,
        spanned.referenced.column() as u32,
    )
}

/// Parses and checks one territory file; `calendars` are the calendar names a team may
/// use.
pub fn parse_file(path: &Path, text: &str, calendars: &BTreeSet<String>) -> ParsedFile {
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string();
    let mut parsed = ParsedFile {
        name,
        file: path.to_path_buf(),
        teams: Vec::new(),
        rules: Vec::new(),
        team_at: Vec::new(),
        fallback: None,
        diagnostics: Vec::new(),
    };
    let source: TerritoryFile = match serde_saphyr::from_str_with_options(
        text,
        kontor_time::yaml_options(),
    ) {
        Ok(source) => source,
        Err(e) => {
            parsed.diagnostics.push(
                    crate::diagnostics::yaml_error(path, &e).with_hint(
                        "a territory file has `teams`, `rules` and `fallback` (see the README's lead routing)",
                    ),
                );
            return parsed;
        }
    };
    for (name, team) in &source.teams {
        let team = compile_team(path, name, team, calendars, &mut parsed.diagnostics);
        parsed.teams.push(team);
    }
    let mut names = BTreeMap::new();
    for rule in &source.rules {
        if let Some(previous) =
            names.insert(rule.value.name.value.clone(), position(&rule.value.name))
        {
            parsed.diagnostics.push(
                at(
                    path,
                    &rule.value.name,
                    format!("a second rule named `{}`", rule.value.name.value),
                )
                .with_hint(format!(
                    "the first is at line {}; rule names are unique within a file",
                    previous.0
                )),
            );
        }
        if let Some(compiled) = compile_rule(path, rule, &mut parsed.diagnostics) {
            parsed.team_at.push(position(&rule.value.team));
            parsed.rules.push(compiled);
        }
    }
    match &source.fallback {
        Some(f) => {
            let (line, column) = position(f);
            parsed.fallback = Some((f.value.clone(), line, column));
        }
        None if !source.rules.is_empty() => parsed.diagnostics.push(
            Diagnostic::new(path, 1, 1, "the file has rules but no `fallback` team")
                .with_hint("add `fallback: <team>`: the queue for leads no rule matches"),
        ),
        None => {}
    }
    parsed
}

fn compile_team(
    path: &Path,
    name: &str,
    source: &Spanned<TeamSource>,
    calendars: &BTreeSet<String>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Team {
    let team = &source.value;
    if let Err(e) = crate::users::check_label("team", name) {
        diagnostics.push(at(path, source, format!("team `{name}`: {}", e.message)));
    }
    let locale = match team.locale.as_ref().map(|l| (l, l.value.as_str())) {
        None => Locale::De,
        Some((_, "de")) => Locale::De,
        Some((_, "en")) => Locale::En,
        Some((l, other)) => {
            diagnostics.push(
                at(path, l, format!("unknown locale `{other}`")).with_hint("write `de` or `en`"),
            );
            Locale::De
        }
    };
    let strategy = match &team.strategy {
        None => Strategy::RoundRobin,
        Some(s) => Strategy::parse(&s.value).unwrap_or_else(|| {
            diagnostics.push(
                at(path, s, format!("unknown strategy `{}`", s.value))
                    .with_hint(format!("one of {}", Strategy::NAMES)),
            );
            Strategy::RoundRobin
        }),
    };
    if let Some(calendar) = &team.calendar
        && !calendars.contains(&calendar.value)
    {
        diagnostics.push(
            at(
                path,
                calendar,
                format!("unknown calendar `{}`", calendar.value),
            )
            .with_hint("calendars are files in `workflows/calendars/`, named without `.yaml`"),
        );
    }
    let default_capacity = match &team.capacity {
        Some(c) if c.value == 0 => {
            diagnostics.push(
                at(path, c, "a capacity of 0 gives nobody a lead")
                    .with_hint("at least 1, or leave the member out"),
            );
            DEFAULT_CAPACITY
        }
        Some(c) => c.value,
        None => DEFAULT_CAPACITY,
    };
    let mut members: Vec<Member> = Vec::new();
    for member in &team.members {
        let (user, capacity) = match &member.value {
            MemberSource::Name(user) => (user.clone(), default_capacity),
            MemberSource::Full(fields) => (
                fields.user.clone(),
                fields.capacity.unwrap_or(default_capacity),
            ),
        };
        if let Err(e) = crate::users::check_label("member", &user) {
            diagnostics.push(at(path, member, format!("member `{user}`: {}", e.message)));
        } else if capacity == 0 {
            diagnostics.push(
                at(path, member, format!("member `{user}` has capacity 0"))
                    .with_hint("at least 1, or leave the member out"),
            );
        } else if members.iter().any(|m| m.user == user) {
            diagnostics.push(at(
                path,
                member,
                format!("`{user}` is listed twice in team `{name}`"),
            ));
        } else {
            members.push(Member { user, capacity });
        }
    }
    // Declared even with problems (the file is refused for them), so rules naming the
    // team do not add errors of their own.
    Team {
        name: name.to_string(),
        lead: team.lead.as_ref().map(|l| l.value.clone()),
        locale,
        calendar: team.calendar.as_ref().map(|c| c.value.clone()),
        strategy,
        members,
        file: path.to_path_buf(),
        line: source.referenced.line() as u32,
    }
}

fn lower_set(
    path: &Path,
    what: &str,
    list: &Option<Spanned<Vec<Spanned<String>>>>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<BTreeSet<String>> {
    let list = list.as_ref()?;
    if list.value.is_empty() {
        diagnostics.push(
            at(
                path,
                list,
                format!("`{what}` is empty: the rule could never match"),
            )
            .with_hint(format!("leave `{what}` out to match every one")),
        );
    }
    Some(
        list.value
            .iter()
            .map(|v| v.value.trim().to_lowercase())
            .collect(),
    )
}

fn compile_rule(
    path: &Path,
    source: &Spanned<RuleSource>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Rule> {
    let rule = &source.value;
    let before = diagnostics.len();
    let region = match (&rule.countries, &rule.postal_codes) {
        (Some(c), Some(_)) => {
            diagnostics.push(
                at(
                    path,
                    c,
                    "a rule names either `countries` or `postal_codes`, not both",
                )
                .with_hint("split the rule in two: one for whole countries, one for postal codes"),
            );
            Region::Anywhere
        }
        (Some(countries), None) => {
            let mut set = BTreeSet::new();
            for country in &countries.value {
                match country_code(&country.value) {
                    Some(code) => {
                        set.insert(code);
                    }
                    None => diagnostics.push(
                        at(
                            path,
                            country,
                            format!("`{}` is not a country code", country.value),
                        )
                        .with_hint("two letters, ISO 3166: DE, AT, CH …"),
                    ),
                }
            }
            if countries.value.is_empty() {
                diagnostics.push(at(
                    path,
                    countries,
                    "`countries` is empty: the rule could never match",
                ));
            }
            Region::Countries(set)
        }
        (None, Some(codes)) => {
            let mut map = BTreeMap::new();
            for (country, ranges) in &codes.value {
                let Some(code) = country_code(country) else {
                    diagnostics.push(
                        at(path, codes, format!("`{country}` is not a country code"))
                            .with_hint("two letters, ISO 3166: DE, AT, CH …"),
                    );
                    continue;
                };
                let Some(digits) = postal::digits(&code) else {
                    diagnostics.push(
                        at(path, codes, format!("postal-code ranges are not known for `{code}`")).with_hint(format!(
                            "ranges work for {}; name the whole country under `countries`, or use `when:`",
                            postal::known_countries()
                        )),
                    );
                    continue;
                };
                let mut parsed = Vec::new();
                for range in ranges {
                    match CodeRange::parse(&range.value, digits) {
                        Ok(r) => parsed.push(r),
                        Err(message) => diagnostics.push(
                            at(path, range, format!("{code}: {message}"))
                                .with_hint(format!("a prefix (\"8\", \"01067\") or a range (\"20-29\") of codes with {digits} digits")),
                        ),
                    }
                }
                if ranges.is_empty() {
                    diagnostics.push(at(
                        path,
                        codes,
                        format!("no postal codes listed for `{code}`"),
                    ));
                }
                map.insert(code, parsed);
            }
            Region::PostalCodes(map)
        }
        (None, None) => Region::Anywhere,
    };
    let industries = lower_set(path, "industries", &rule.industries, diagnostics);
    let products = lower_set(path, "products", &rule.products, diagnostics);
    let product_match = match rule.product_match.as_ref().map(|m| (m, m.value.as_str())) {
        None | Some((_, "primary")) => ProductMatch::Primary,
        Some((_, "any")) => ProductMatch::Any,
        Some((m, other)) => {
            diagnostics.push(
                at(path, m, format!("unknown product_match `{other}`"))
                    .with_hint("`primary` (the lead's first product) or `any`"),
            );
            ProductMatch::Primary
        }
    };
    if let Some(m) = &rule.product_match
        && rule.products.is_none()
    {
        diagnostics.push(
            at(path, m, "`product_match` without `products`")
                .with_hint("list the products the rule is about"),
        );
    }
    let employees = rule
        .employees
        .as_ref()
        .and_then(|e| match (e.value.min, e.value.max) {
            (None, None) => {
                diagnostics.push(at(path, e, "`employees` needs `min`, `max` or both"));
                None
            }
            (min, max) if min.unwrap_or(0) > max.unwrap_or(u64::MAX) => {
                diagnostics.push(at(path, e, "`employees.min` is above `employees.max`"));
                None
            }
            (min, max) => Some((min.unwrap_or(0), max.unwrap_or(u64::MAX))),
        });
    let when = rule
        .when
        .as_ref()
        .and_then(|w| match Expression::compile(&w.value) {
            Ok(expression) => {
                let foreign: Vec<String> = expression
                    .references()
                    .into_iter()
                    .filter(|r| r.path[0] != "lead")
                    .map(|r| r.path.join("."))
                    .collect();
                if foreign.is_empty() {
                    Some(expression)
                } else {
                    diagnostics.push(
                        at(
                            path,
                            w,
                            format!(
                                "the condition reads `{}`, which a routing rule does not have",
                                foreign.join("`, `")
                            ),
                        )
                        .with_hint(
                            "a rule's condition reads only `lead` (e.g. `lead.source == 'messe'`)",
                        ),
                    );
                    None
                }
            }
            Err(e) => {
                diagnostics.push(at(path, w, e.to_string()));
                None
            }
        });
    let priority = match &rule.priority {
        Some(p) if p.value.abs() > 1_000_000 => {
            diagnostics.push(at(path, p, "priorities run from -1000000 to 1000000"));
            0
        }
        Some(p) => p.value,
        None => 0,
    };
    (diagnostics.len() == before).then(|| Rule {
        name: rule.name.value.clone(),
        team: rule.team.value.clone(),
        priority,
        region,
        industries,
        products,
        product_match,
        employees,
        when,
        line: source.referenced.line() as u32,
        column: source.referenced.column() as u32,
    })
}

/// `de` → `DE`; `None` unless two ASCII letters.
pub fn country_code(text: &str) -> Option<String> {
    let text = text.trim();
    (text.len() == 2 && text.chars().all(|c| c.is_ascii_alphabetic()))
        .then(|| text.to_ascii_uppercase())
}

impl Territories {
    /// All files together.
    pub fn assemble(files: Vec<ParsedFile>) -> Territories {
        let mut territories = Territories::default();
        let mut declared: BTreeMap<String, (PathBuf, u32)> = BTreeMap::new();
        let mut file_problems: BTreeSet<String> = BTreeSet::new();
        for file in &files {
            for team in &file.teams {
                if let Some((other, line)) = declared.get(&team.name) {
                    territories.diagnostics.push(
                        Diagnostic::new(
                            &file.file,
                            team.line,
                            0,
                            format!("team `{}` is declared twice", team.name),
                        )
                        .with_hint(format!(
                            "it is also declared at {}:{line}; a team lives in one file",
                            other.display()
                        )),
                    );
                    file_problems.insert(file.name.clone());
                    continue;
                }
                declared.insert(team.name.clone(), (file.file.clone(), team.line));
                territories
                    .teams
                    .insert(team.name.clone(), Arc::new(team.clone()));
            }
        }
        let known = |team: &str| declared.contains_key(team);
        let team_hint = || {
            let names: Vec<&str> = declared.keys().map(String::as_str).collect();
            if names.is_empty() {
                "declare it under `teams:` in a territory file".to_string()
            } else {
                format!("declared teams: {}", names.join(", "))
            }
        };
        for file in files {
            let mut diagnostics = file.diagnostics;
            for (rule, (line, column)) in file.rules.iter().zip(&file.team_at) {
                if !known(&rule.team) {
                    diagnostics.push(
                        Diagnostic::new(
                            &file.file,
                            *line,
                            *column,
                            format!("rule `{}` names unknown team `{}`", rule.name, rule.team),
                        )
                        .with_hint(team_hint()),
                    );
                }
            }
            if let Some((team, line, column)) = &file.fallback
                && !known(team)
            {
                diagnostics.push(
                    Diagnostic::new(
                        &file.file,
                        *line,
                        *column,
                        format!("the fallback names unknown team `{team}`"),
                    )
                    .with_hint(team_hint()),
                );
            }
            diagnostics.extend(super::analysis::check(&file.file, &file.rules));
            let fallback = file.fallback.map(|(team, ..)| team);
            if diagnostics.is_empty() && !file_problems.contains(&file.name) {
                if let Some(fallback) = fallback {
                    territories.sets.insert(
                        file.name.clone(),
                        Arc::new(RuleSet {
                            name: file.name,
                            file: file.file,
                            rules: file.rules,
                            fallback,
                        }),
                    );
                }
            } else {
                territories.diagnostics.extend(diagnostics);
            }
        }
        territories
    }
}
