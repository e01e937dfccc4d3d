//! SLA files → [`SlaPolicies`]: each file parsed and checked on its own ([`parse_file`]),
//! then all of them in order ([`SlaPolicies::assemble`]): names unique, no policy that an
//! earlier one always wins over, and one policy at the end for every other ticket.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chrono::Duration;
use serde_saphyr::Spanned;

use super::file::{LevelSource, MatchSource, PolicySource, SlaFile};
use super::{CHANNELS, Level, LevelKind, Match, Pauses, Policy, Recipient, SlaPolicies};
use crate::diagnostics::{Diagnostic, closest};
use crate::service::sla_clock::{ClockKind, Reopen, Threshold};
use crate::service::ticket::Status;

/// One file, checked on its own.
#[derive(Debug)]
pub struct ParsedFile {
    pub file: PathBuf,
    pub policies: Vec<Policy>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Reports into a file's diagnostics.
struct Checker<'a> {
    path: &'a Path,
    /// The templates' names (folders of `templates/`) a level may mail with.
    templates: &'a BTreeSet<String>,
    diagnostics: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn error<T>(&mut self, at: &Spanned<T>, message: impl Into<String>, hint: impl Into<String>) {
        self.diagnostics.push(
            Diagnostic::new(
                self.path,
                at.referenced.line() as u32,
                at.referenced.column() as u32,
                message,
            )
            .with_hint(hint),
        );
    }

    fn duration(&mut self, text: &Spanned<String>) -> Option<Duration> {
        match kontor_time::parse_duration(&text.value) {
            Ok(d) if d > Duration::zero() => Some(d),
            Ok(_) => {
                self.error(
                    text,
                    "a target must be longer than zero",
                    "e.g. `4h` or `2d 4h`",
                );
                None
            }
            Err(e) => {
                self.error(
                    text,
                    format!("`{}` is not a duration: {e}", text.value),
                    "e.g. `4h`, `30m` or `2d 4h` (business time)",
                );
                None
            }
        }
    }

    fn status(&mut self, text: &Spanned<String>) -> Option<Status> {
        match Status::parse(&text.value) {
            Some(s) if s.is_done() => {
                self.error(
                    text,
                    format!("`{}` ends the clocks; it cannot pause them", text.value),
                    "pause on open statuses: waiting-on-customer, waiting-on-third-party, …",
                );
                None
            }
            Some(s) => Some(s),
            None => {
                let names = Status::ALL.map(Status::as_str);
                let hint = match closest(&text.value, names) {
                    Some(c) => format!("did you mean `{c}`?"),
                    None => format!("a status is one of: {}", names.join(", ")),
                };
                self.error(text, format!("there is no status `{}`", text.value), hint);
                None
            }
        }
    }

    /// `name` is a template of `templates/`.
    fn template<T>(&mut self, at: &Spanned<T>, name: &str) {
        if !self.templates.contains(name) {
            let hint = match closest(name, self.templates.iter().map(String::as_str)) {
                Some(c) => format!("did you mean `{c}`?"),
                None => {
                    format!("add the folder templates/{name}/ (see the README's email templates)")
                }
            };
            self.error(at, format!("there is no template `{name}`"), hint);
        }
    }

    fn threshold(&mut self, text: &Spanned<String>) -> Option<Threshold> {
        match parse_threshold(&text.value) {
            Ok(t) => Some(t),
            Err(problem) => {
                self.error(text, format!("`{}`: {problem}", text.value), "a share of the target, optionally plus business time: `75%`, `100%`, `100% + 4h`");
                None
            }
        }
    }
}

/// `75%`, `100% + 4h`.
pub fn parse_threshold(text: &str) -> Result<Threshold, String> {
    let (share, plus) = match text.split_once('+') {
        Some((share, plus)) => (share.trim(), Some(plus.trim())),
        None => (text.trim(), None),
    };
    let percent = share
        .strip_suffix('%')
        .ok_or("the share of the target ends with `%`")?
        .trim()
        .parse::<u32>()
        .map_err(|_| "the share is a whole number of percent".to_string())?;
    if percent == 0 || percent > 1000 {
        return Err("the share is between 1% and 1000%".into());
    }
    let plus = match plus {
        Some(p) => kontor_time::parse_duration(p).map_err(|e| format!("after `+`: {e}"))?,
        None => Duration::zero(),
    };
    Ok(Threshold { percent, plus })
}

/// Parses and checks one SLA file; `calendars` are the calendar names a policy may use,
/// `templates` the mail templates its levels may send.
pub fn parse_file(
    path: &Path,
    text: &str,
    calendars: &BTreeSet<String>,
    templates: &BTreeSet<String>,
) -> ParsedFile {
    let mut check = Checker {
        path,
        templates,
        diagnostics: Vec::new(),
    };
    let source: SlaFile = match serde_saphyr::from_str_with_options(
        text,
        kontor_time::yaml_options(),
    ) {
        Ok(source) => source,
        Err(e) => {
            return ParsedFile {
                    file: path.to_path_buf(),
                    policies: Vec::new(),
                    diagnostics: vec![crate::diagnostics::yaml_error(path, &e).with_hint(
                        "an SLA file has `policies` (and optionally `priorities`, `categories`, `defaults`); see the README's service tickets",
                    )],
                };
        }
    };
    let defaults = source.defaults.as_ref().map(|d| &d.value);
    if let Some(d) = &source.defaults {
        if let Some(name) = &d.value.name {
            check.error(
                name,
                "`defaults` has no name",
                "remove it; `defaults` applies to every policy of the file",
            );
        }
        if let Some(m) = &d.value.matches {
            check.error(
                m,
                "`defaults` cannot have a `match`",
                "each policy says which tickets it covers",
            );
        }
    }
    let declared = |list: &[Spanned<String>]| -> Option<BTreeSet<String>> {
        (!list.is_empty()).then(|| list.iter().map(|s| s.value.clone()).collect())
    };
    let priorities = declared(&source.priorities);
    let categories = declared(&source.categories);
    let mut policies = Vec::new();
    for policy in &source.policies {
        let Some(name) = &policy.value.name else {
            check.error(
                policy,
                "a policy without a `name`",
                "give each policy a name: tickets and reports show it",
            );
            continue;
        };
        if let Some(compiled) = compile_policy(
            &mut check,
            name,
            &policy.value,
            defaults,
            calendars,
            priorities.as_ref(),
            categories.as_ref(),
        ) {
            policies.push(compiled);
        }
    }
    ParsedFile {
        file: path.to_path_buf(),
        policies,
        diagnostics: check.diagnostics,
    }
}

#[allow(clippy::too_many_arguments)]
fn compile_policy(
    check: &mut Checker<'_>,
    name: &Spanned<String>,
    policy: &PolicySource,
    defaults: Option<&PolicySource>,
    calendars: &BTreeSet<String>,
    priorities: Option<&BTreeSet<String>>,
    categories: Option<&BTreeSet<String>>,
) -> Option<Policy> {
    let errors_before = check.diagnostics.len();
    macro_rules! field {
        ($f:ident) => {
            policy.$f.as_ref().or(defaults.and_then(|d| d.$f.as_ref()))
        };
    }
    let calendar = match field!(calendar) {
        Some(c) if calendars.contains(&c.value) => c.value.clone(),
        Some(c) => {
            let hint = match closest(&c.value, calendars.iter().map(String::as_str)) {
                Some(close) => format!("did you mean `{close}`?"),
                None => "calendars are the files of `calendars/`, named without `.yaml`".into(),
            };
            check.error(c, format!("there is no calendar `{}`", c.value), hint);
            String::new()
        }
        None => {
            check.error(
                name,
                format!("policy `{}` has no calendar", name.value),
                "set `calendar:` on it or in `defaults`",
            );
            String::new()
        }
    };
    let mut target = |t: Option<&Spanned<String>>| t.and_then(|t| check.duration(t));
    let first_response = target(field!(first_response));
    let next_response = target(field!(next_response));
    let resolution = target(field!(resolution));
    if [
        field!(first_response),
        field!(next_response),
        field!(resolution),
    ]
    .iter()
    .all(Option::is_none)
    {
        check.error(
            name,
            format!("policy `{}` has no target", name.value),
            "give it `first_response`, `next_response` or `resolution` (business time, e.g. `8h`)",
        );
    }
    let mut pause = Pauses::default();
    if let Some(p) = field!(pause) {
        let statuses = |check: &mut Checker<'_>, list: &[Spanned<String>]| -> BTreeSet<Status> {
            list.iter().filter_map(|s| check.status(s)).collect()
        };
        pause.first_response = statuses(check, &p.value.first_response);
        pause.next_response = statuses(check, &p.value.next_response);
        pause.resolution = statuses(check, &p.value.resolution);
    }
    let reopen = match field!(reopen) {
        None => Reopen::Continue,
        Some(r) if r.value == "continue" => Reopen::Continue,
        Some(r) if r.value == "restart" => Reopen::Restart,
        Some(r) => {
            check.error(r, format!("`reopen: {}` is neither `continue` nor `restart`", r.value), "`continue` keeps the business time used before the resolution; `restart` starts over");
            Reopen::Continue
        }
    };
    let has = |kind: ClockKind| match kind {
        ClockKind::FirstResponse => first_response.is_some(),
        ClockKind::NextResponse => next_response.is_some(),
        ClockKind::Resolution => resolution.is_some(),
    };
    let mut levels = Vec::new();
    if let Some(warnings) = field!(warnings) {
        if !warnings.value.is_empty() {
            check.template(warnings, "sla-warning");
        }
        for w in &warnings.value {
            if let Some(at) = check.threshold(w) {
                levels.push(Level {
                    at,
                    clock: None,
                    notify: vec![Recipient::Assignee],
                    template: "sla-warning".into(),
                    to_group_queue: false,
                    raise_priority: false,
                    business_hours_only: true,
                    kind: LevelKind::Warning,
                });
            }
        }
        in_order(check, &warnings.value, &levels, "warnings");
    }
    if let Some(escalation) = field!(escalation) {
        let mut escalations = Vec::new();
        for level in &escalation.value {
            if let Some(compiled) = compile_level(check, level, &has) {
                escalations.push(compiled);
            }
        }
        let ats: Vec<Spanned<String>> = escalation
            .value
            .iter()
            .map(|l| l.value.at.clone())
            .collect();
        in_order(check, &ats, &escalations, "escalation levels");
        levels.extend(escalations);
    }
    let matches = match &policy.matches {
        Some(m) => compile_match(check, &m.value, priorities, categories),
        None => Match::default(),
    };
    (check.diagnostics.len() == errors_before).then(|| Policy {
        name: name.value.clone(),
        file: check.path.to_path_buf(),
        line: name.referenced.line() as u32,
        column: name.referenced.column() as u32,
        matches,
        calendar,
        first_response,
        next_response,
        resolution,
        pause,
        reopen,
        levels,
    })
}

/// Levels go lowest threshold first, so the chain reads in the order it fires.
fn in_order(check: &mut Checker<'_>, written: &[Spanned<String>], levels: &[Level], what: &str) {
    if written.len() != levels.len() {
        return; // already reported
    }
    for (i, pair) in levels.windows(2).enumerate() {
        let key = |l: &Level| (l.at.percent, l.at.plus);
        if key(&pair[1]) < key(&pair[0]) {
            check.error(
                &written[i + 1],
                format!(
                    "`{}` comes after `{}`",
                    written[i + 1].value,
                    written[i].value
                ),
                format!("write the {what} lowest threshold first"),
            );
        }
    }
}

fn compile_level(
    check: &mut Checker<'_>,
    level: &Spanned<LevelSource>,
    has: &dyn Fn(ClockKind) -> bool,
) -> Option<Level> {
    let source = &level.value;
    let at = check.threshold(&source.at);
    let clock = match &source.clock {
        None => None,
        Some(c) => {
            let kind = [
                ClockKind::FirstResponse,
                ClockKind::NextResponse,
                ClockKind::Resolution,
            ]
            .into_iter()
            .find(|k| k.as_str() == c.value);
            match kind {
                Some(k) if !has(k) => {
                    check.error(
                        c,
                        format!("the policy has no `{}` target", c.value),
                        "give the policy that target, or watch another clock",
                    );
                    None
                }
                Some(k) => Some(k),
                None => {
                    check.error(
                        c,
                        format!("there is no clock `{}`", c.value),
                        "clocks: first_response, next_response, resolution",
                    );
                    None
                }
            }
        }
    };
    let mut notify = Vec::new();
    for who in &source.notify {
        match who.value.as_str() {
            "assignee" => notify.push(Recipient::Assignee),
            "group_lead" => notify.push(Recipient::GroupLead),
            "service_lead" => notify.push(Recipient::ServiceLead),
            address if address.contains('@') && !address.contains(char::is_whitespace) => {
                notify.push(Recipient::Email(address.to_string()))
            }
            other => check.error(
                who,
                format!("`{other}` is no one to notify"),
                "notify `assignee`, `group_lead`, `service_lead` or an email address",
            ),
        }
    }
    let to_group_queue = match &source.reassign {
        None => false,
        Some(r) if r.value == "group_queue" => true,
        Some(r) => {
            check.error(
                r,
                format!("`reassign: {}` is not known", r.value),
                "`reassign: group_queue` hands the ticket to its group's queue",
            );
            false
        }
    };
    let raise_priority = source.raise_priority.as_ref().is_some_and(|r| r.value);
    if !source.notify.is_empty() {
        match &source.template {
            Some(t) => check.template(t, &t.value),
            None => check.template(level, "sla-escalation"),
        }
    }
    if source.notify.is_empty() && source.reassign.is_none() && !raise_priority {
        check.error(
            level,
            "this level does nothing",
            "give it `notify`, `reassign: group_queue` or `raise_priority: true`",
        );
    }
    Some(Level {
        at: at?,
        clock,
        notify,
        template: source
            .template
            .as_ref()
            .map_or("sla-escalation".to_string(), |t| t.value.clone()),
        to_group_queue,
        raise_priority,
        business_hours_only: source.business_hours_only.as_ref().is_none_or(|b| b.value),
        kind: LevelKind::Escalation,
    })
}

fn compile_match(
    check: &mut Checker<'_>,
    source: &MatchSource,
    priorities: Option<&BTreeSet<String>>,
    categories: Option<&BTreeSet<String>>,
) -> Match {
    let channels: BTreeSet<String> = CHANNELS.iter().map(|c| c.to_string()).collect();
    let mut values = |list: &Option<Spanned<Vec<Spanned<String>>>>,
                      known: Option<&BTreeSet<String>>,
                      what: &str,
                      declared_in: &str|
     -> Option<BTreeSet<String>> {
        let list = list.as_ref()?;
        if list.value.is_empty() {
            check.error(
                list,
                format!("an empty `{what}` list matches no ticket"),
                format!("name at least one {what}, or leave `{what}` out to match any"),
            );
        }
        for value in &list.value {
            if let Some(known) = known
                && !known.contains(&value.value)
            {
                let hint = match closest(&value.value, known.iter().map(String::as_str)) {
                    Some(c) => format!("did you mean `{c}`?"),
                    None => format!(
                        "{declared_in}: {}",
                        known.iter().cloned().collect::<Vec<_>>().join(", ")
                    ),
                };
                check.error(value, format!("there is no {what} `{}`", value.value), hint);
            }
        }
        Some(list.value.iter().map(|v| v.value.clone()).collect())
    };
    Match {
        category: values(
            &source.category,
            categories,
            "category",
            "the file's `categories`",
        ),
        priority: values(
            &source.priority,
            priorities,
            "priority",
            "the file's `priorities`",
        ),
        tier: values(&source.tier, None, "tier", ""),
        channel: values(&source.channel, Some(&channels), "channel", "channels are"),
    }
}

impl SlaPolicies {
    /// All files' policies in order (files by name), checked together.
    pub fn assemble(mut files: Vec<ParsedFile>) -> SlaPolicies {
        files.sort_by(|a, b| a.file.cmp(&b.file));
        let mut out = SlaPolicies::default();
        let mut names: BTreeMap<String, (PathBuf, u32)> = BTreeMap::new();
        for file in files {
            out.diagnostics.extend(file.diagnostics);
            for policy in file.policies {
                if let Some((path, line)) = names.get(&policy.name) {
                    out.diagnostics.push(
                        Diagnostic::new(
                            &policy.file,
                            policy.line,
                            policy.column,
                            format!("a second policy named `{}`", policy.name),
                        )
                        .with_hint(format!(
                            "the first is at {}:{line}; policy names are unique",
                            path.display()
                        )),
                    );
                    continue;
                }
                if let Some(earlier) = out
                    .policies
                    .iter()
                    .find(|p| p.matches.covers(&policy.matches))
                {
                    out.diagnostics.push(
                        Diagnostic::new(&policy.file, policy.line, policy.column, format!(
                            "policy `{}` is never used: `{}` ({}:{}) comes first and matches every ticket it matches",
                            policy.name, earlier.name, earlier.file.display(), earlier.line
                        ))
                        .with_hint(format!("move `{}` above `{}`, or narrow `{}`'s match", policy.name, earlier.name, earlier.name)),
                    );
                }
                names.insert(policy.name.clone(), (policy.file.clone(), policy.line));
                out.policies.push(policy);
            }
        }
        if let Some(last) = out.policies.last()
            && !out.policies.iter().any(|p| p.matches.is_everything())
        {
            out.diagnostics.push(
                Diagnostic::new(
                    &last.file,
                    last.line,
                    last.column,
                    "no policy matches every ticket: a ticket none matches would have no SLA",
                )
                .with_hint("end with a policy without `match` for every other ticket"),
            );
        }
        out
    }
}
