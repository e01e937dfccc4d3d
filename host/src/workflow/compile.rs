//! From [`WorkflowFile`] to [`Workflow`]: every check `kontor check` makes.
//!
//! Problems are collected, not returned at the first one, so a user fixes a file in one
//! pass. Each carries the file, line and column of the offending value and, where we can
//! guess the intent, a hint ("did you mean `qualify`?").

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use serde_saphyr::Spanned;
use sha2::{Digest, Sha256};

use super::interpolation::ComputedValue;
use super::source::{
    DelaySource, SendEmailSource, StepSource, ValueSource, ValuesSource, WorkflowFile,
};
use super::{Action, Delay, RetryPolicy, SendEmail, Step, TIMER_EVENT_PREFIX, Trigger, Workflow};
pub use crate::diagnostics::yaml_error;
use crate::diagnostics::{Diagnostic, closest};
use crate::expr::{Calendars, Expression};

/// What a workflow may refer to outside itself.
pub struct Environment<'a> {
    pub calendars: &'a Calendars,
    /// Names of all workflow files in the catalog (valid or not).
    pub workflow_names: &'a BTreeSet<String>,
    /// The plugins found; `None` skips plugin checks (a stored version recompiled).
    pub plugins: Option<&'a super::PluginIndex>,
    /// Email channel names from the configuration; `None` skips the check.
    pub channels: Option<&'a BTreeSet<String>>,
    /// The email templates; `None` skips template checks (a stored version recompiled).
    pub templates: Option<&'a crate::email::templates::TemplateSet>,
}

const ACTIONS: &[&str] = &[
    "set",
    "branch",
    "wait",
    "wait_for",
    "timer",
    "cancel_timer",
    "start",
    "wait_children",
    "record",
    "fail",
    "end",
    "plugin",
    "connector",
    "send_email",
];

/// Variables every expression can use.
const ROOTS: &[&str] = &["input", "vars", "steps", "run", "now"];
const RUN_FIELDS: &[&str] = &["id", "workflow", "started_at", "parent_id"];
const CEL_TYPE_NAMES: &[&str] = &[
    "int",
    "uint",
    "double",
    "bool",
    "string",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
];

/// Parses and compiles one workflow file.
pub fn compile_workflow(
    path: &Path,
    text: &str,
    environment: &Environment<'_>,
) -> Result<Workflow, Vec<Diagnostic>> {
    let file: WorkflowFile = serde_saphyr::from_str_with_options(text, kontor_time::yaml_options())
        .map_err(|e| vec![yaml_error(path, &e)])?;
    let mut compiler = Compiler {
        at: Locator::new(path, text),
        environment,
        diagnostics: Vec::new(),
    };
    let workflow = compiler.workflow(file, text);
    if compiler.diagnostics.is_empty() {
        workflow.ok_or_else(Vec::new)
    } else {
        compiler
            .diagnostics
            .sort_by_key(|d| (d.line, d.column, d.message.clone()));
        compiler.diagnostics.dedup();
        Err(compiler.diagnostics)
    }
}

/// Maps spans to file positions, adjusting for the opening quote of quoted scalars so a
/// column inside an expression lands on the right character.
struct Locator<'a> {
    path: &'a Path,
    lines: Vec<&'a str>,
}

impl<'a> Locator<'a> {
    fn new(path: &'a Path, text: &'a str) -> Self {
        Locator {
            path,
            lines: text.lines().collect(),
        }
    }

    fn at<T>(&self, spanned: &Spanned<T>, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(
            self.path,
            spanned.referenced.line() as u32,
            spanned.referenced.column() as u32,
            message,
        )
    }

    /// Position of the character `offset` chars into a single-line scalar that starts at
    /// the span (`inner_line` is the 1-based line within the scalar).
    fn inside<T>(
        &self,
        spanned: &Spanned<T>,
        inner_line: u32,
        inner_column: u32,
        message: impl Into<String>,
    ) -> Diagnostic {
        let line = spanned.referenced.line() as u32;
        let column = spanned.referenced.column() as u32;
        if inner_line > 1 {
            return Diagnostic::new(self.path, line, column, message);
        }
        let quoted = self
            .lines
            .get(line.saturating_sub(1) as usize)
            .and_then(|l| l.chars().nth(column.saturating_sub(1) as usize))
            .is_some_and(|c| c == '"' || c == '\'');
        Diagnostic::new(
            self.path,
            line,
            column + u32::from(quoted) + inner_column.saturating_sub(1),
            message,
        )
    }
}

struct Compiler<'a> {
    at: Locator<'a>,
    environment: &'a Environment<'a>,
    diagnostics: Vec<Diagnostic>,
}

/// Where an expression is used, which decides the variables it may read.
#[derive(Clone, Copy, PartialEq)]
enum Site {
    Step(usize),
    /// Inside `start.input`, where `item` and `index` exist.
    FanOut(usize),
    /// Cron trigger input: no run exists yet, only `now`.
    Trigger,
}

impl<'a> Compiler<'a> {
    fn error(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    fn workflow(&mut self, file: WorkflowFile, text: &str) -> Option<Workflow> {
        let expected = self
            .at
            .path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        if *file.name.value != expected {
            let d = self
                .at
                .at(
                    &file.name,
                    format!(
                        "workflow name `{}` does not match its file name",
                        file.name.value
                    ),
                )
                .with_hint(format!(
                    "name it `{expected}` or rename the file to `{}.yaml`",
                    file.name.value
                ));
            self.error(d);
        }

        let (input_schema, input_schema_json, input_properties) = self.input_schema(&file);

        // Step ids first: everything else refers to them.
        let steps_source = &file.steps.value;
        if steps_source.is_empty() {
            let d = self
                .at
                .at(&file.steps, "a workflow needs at least one step")
                .with_hint("add a step, e.g. `- id: done` with `end: {}`");
            self.error(d);
        }
        let mut index: HashMap<String, usize> = HashMap::new();
        for (i, step) in steps_source.iter().enumerate() {
            let id = &step.value.id;
            if id.value.is_empty()
                || !id
                    .value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                let d = self
                    .at
                    .at(
                        id,
                        format!(
                            "step id `{}` may only contain letters, digits, `_` and `-`",
                            id.value
                        ),
                    )
                    .with_hint(
                        "step ids are used in expressions as `steps.<id>`; prefer snake_case",
                    );
                self.error(d);
            }
            if let Some(&first) = index.get(&id.value) {
                let first_line = steps_source[first].value.id.referenced.line();
                let d = self
                    .at
                    .at(id, format!("duplicate step id `{}`", id.value))
                    .with_hint(format!("the first step with this id is on line {first_line}; step ids must be unique"));
                self.error(d);
            } else {
                index.insert(id.value.clone(), i);
            }
        }

        let mut steps = Vec::with_capacity(steps_source.len());
        let mut successors: Vec<Vec<usize>> = Vec::with_capacity(steps_source.len());
        for (i, step) in steps_source.iter().enumerate() {
            let default_next = (i + 1 < steps_source.len()).then_some(i + 1);
            match self.step(i, &step.value, step, default_next, &index) {
                Some((compiled, succ)) => {
                    successors.push(succ);
                    steps.push(compiled);
                }
                None => successors.push(default_next.into_iter().collect()),
            }
        }

        // Reachability from the first step.
        let reachable = reach(&successors, 0);
        for (i, step) in steps_source.iter().enumerate() {
            if !reachable.contains(&i) && !steps_source.is_empty() {
                let d = self
                    .at
                    .at(&step.value.id, format!("step `{}` can never run", step.value.id.value))
                    .with_hint("no step leads here: the step before it ends, fails or jumps elsewhere; reference it with `next`/`goto` or remove it");
                self.error(d);
            }
        }

        // Which variables each step may read.
        self.check_references(steps_source, &successors, &index, &input_properties);

        let trigger = self.trigger(&file);

        if !self.diagnostics.is_empty() || steps.len() != steps_source.len() {
            return None;
        }
        let trigger = trigger?;
        Some(Workflow {
            name: file.name.value.clone(),
            description: file.description.clone(),
            version: hex::encode(Sha256::digest(text.as_bytes())),
            source: text.to_string(),
            file: self.at.path.to_path_buf(),
            input_schema,
            input_schema_json,
            trigger,
            steps,
            step_index: index,
        })
    }

    fn input_schema(
        &mut self,
        file: &WorkflowFile,
    ) -> (
        Option<Arc<jsonschema::Validator>>,
        Option<serde_json::Value>,
        Option<BTreeSet<String>>,
    ) {
        let Some(schema) = &file.input else {
            return (None, None, None);
        };
        match jsonschema::validator_for(&schema.value) {
            Ok(validator) => {
                let open = schema.value.get("additionalProperties")
                    != Some(&serde_json::Value::Bool(false))
                    && schema.value.get("properties").is_none();
                let properties = if open {
                    None
                } else {
                    Some(
                        schema
                            .value
                            .get("properties")
                            .and_then(|p| p.as_object())
                            .map(|p| p.keys().cloned().collect())
                            .unwrap_or_default(),
                    )
                };
                (
                    Some(Arc::new(validator)),
                    Some(schema.value.clone()),
                    properties,
                )
            }
            Err(e) => {
                let d = self
                    .at
                    .at(
                        schema,
                        format!("the input schema is not a valid JSON Schema: {e}"),
                    )
                    .with_hint("write a JSON Schema, e.g. `type: object` with `properties:`");
                self.error(d);
                (None, None, None)
            }
        }
    }

    fn trigger(&mut self, file: &WorkflowFile) -> Option<Trigger> {
        let Some(trigger) = &file.trigger else {
            return Some(Trigger::Api);
        };
        let t = &trigger.value;
        match (&t.event, &t.cron) {
            (Some(_), Some(cron)) => {
                let d = self
                    .at
                    .at(cron, "a trigger has either `event` or `cron`, not both")
                    .with_hint("split it into two workflows");
                self.error(d);
                None
            }
            (Some(event), None) => {
                if t.timezone.is_some() || t.input.is_some() {
                    let d = self
                        .at
                        .at(trigger, "`timezone` and `input` belong to cron triggers")
                        .with_hint("an event-triggered run's input is the event payload");
                    self.error(d);
                }
                if event.value.trim().is_empty() {
                    let d = self.at.at(event, "the event type is empty");
                    self.error(d);
                }
                Some(Trigger::Event(event.value.clone()))
            }
            (None, Some(cron)) => {
                let timezone = match &t.timezone {
                    None => chrono_tz::UTC,
                    Some(tz) => match tz.value.parse::<chrono_tz::Tz>() {
                        Ok(tz) => tz,
                        Err(_) => {
                            let d = self
                                .at
                                .at(tz, format!("unknown time zone `{}`", tz.value))
                                .with_hint("use an IANA name such as `Europe/Berlin`");
                            self.error(d);
                            return None;
                        }
                    },
                };
                let schedule = match kontor_time::CronSchedule::parse(&cron.value, timezone) {
                    Ok(s) => s,
                    Err(e) => {
                        let d = self
                            .at
                            .at(cron, e.to_string())
                            .with_hint("five fields `minute hour day-of-month month day-of-week`, e.g. `0 8 * * MON-FRI`");
                        self.error(d);
                        return None;
                    }
                };
                let input = match &t.input {
                    Some(values) => Some(self.values(values, Site::Trigger)?),
                    None => None,
                };
                Some(Trigger::Cron {
                    expression: cron.value.clone(),
                    schedule: Arc::new(schedule),
                    input,
                })
            }
            (None, None) => {
                let d = self
                    .at
                    .at(trigger, "a trigger needs `event: TYPE` or `cron: SCHEDULE`")
                    .with_hint("leave out `trigger` for workflows started only through the API");
                self.error(d);
                None
            }
        }
    }

    fn target(
        &mut self,
        target: &Spanned<String>,
        index: &HashMap<String, usize>,
    ) -> Option<usize> {
        if let Some(&i) = index.get(&target.value) {
            return Some(i);
        }
        let mut d = self
            .at
            .at(target, format!("there is no step `{}`", target.value));
        if let Some(close) = closest(&target.value, index.keys().map(String::as_str)) {
            d = d.with_hint(format!("did you mean `{close}`?"));
        } else {
            d = d.with_hint("use the `id` of a step in this workflow");
        }
        self.error(d);
        None
    }

    /// Compiles one step; returns it and the steps that can follow it.
    fn step(
        &mut self,
        i: usize,
        step: &StepSource,
        spanned: &Spanned<StepSource>,
        default_next: Option<usize>,
        index: &HashMap<String, usize>,
    ) -> Option<(Step, Vec<usize>)> {
        let present: Vec<&str> = [
            step.set.is_some(),
            step.branch.is_some(),
            step.wait.is_some(),
            step.wait_for.is_some(),
            step.timer.is_some(),
            step.cancel_timer.is_some(),
            step.start.is_some(),
            step.wait_children.is_some(),
            step.record.is_some(),
            step.fail.is_some(),
            step.end.is_some(),
            step.plugin.is_some(),
            step.connector.is_some(),
            step.send_email.is_some(),
        ]
        .iter()
        .zip(ACTIONS)
        .filter(|(p, _)| **p)
        .map(|(_, name)| *name)
        .collect();
        if present.len() != 1 {
            let message = if present.is_empty() {
                format!("step `{}` has no action", step.id.value)
            } else {
                format!(
                    "step `{}` has {} actions ({}); a step does exactly one thing",
                    step.id.value,
                    present.len(),
                    present.join(", ")
                )
            };
            let d = self.at.at(spanned, message).with_hint(format!(
                "give it one of: {}; to finish a run write `end: {{}}`",
                ACTIONS.join(", ")
            ));
            self.error(d);
            return None;
        }

        if let (Some(input), None, None) = (&step.input, &step.plugin, &step.connector) {
            let d = self
                .at
                .at(input, "`input` belongs to a `plugin` or `connector` step")
                .with_hint("to pass values to a child workflow use `start: {workflow, input}`");
            self.error(d);
        }
        if let (Some(call), None) = (&step.call, &step.connector) {
            let d = self
                .at
                .at(call, "`call` belongs to a `connector` step")
                .with_hint("name the connector plugin with `connector: NAME`");
            self.error(d);
        }

        let explicit_next = match &step.next {
            Some(n) => Some(self.target(n, index)?),
            None => None,
        };
        let next = explicit_next.or(default_next);
        let site = Site::Step(i);
        let mut successors: Vec<usize> = Vec::new();
        let terminal = step.fail.is_some() || step.end.is_some();
        if terminal {
            if let Some(n) = &step.next {
                let d = self
                    .at
                    .at(n, format!("`next` has no effect after `{}`", present[0]))
                    .with_hint("the run stops at this step; remove `next`");
                self.error(d);
            }
        } else if step.branch.is_none() {
            successors.extend(next);
        }

        let action = if let Some(values) = &step.set {
            Action::Set(self.values_ordered(&values.value, site)?)
        } else if let Some(branch) = &step.branch {
            let mut cases = Vec::new();
            let mut ok = true;
            for case in &branch.value.cases {
                let condition = self.expression(&case.value.when);
                let target = self.target(&case.value.goto, index);
                match (condition, target) {
                    (Some(c), Some(t)) => {
                        successors.push(t);
                        cases.push((c, t));
                    }
                    _ => ok = false,
                }
            }
            if branch.value.cases.is_empty() {
                let d = self
                    .at
                    .at(branch, "a branch needs at least one case")
                    .with_hint("add `cases: [{when: \"...\", goto: step}]`");
                self.error(d);
            }
            let otherwise = match &branch.value.otherwise {
                Some(o) => Some(self.target(o, index)?),
                None => next,
            };
            successors.extend(otherwise);
            if !ok {
                return None;
            }
            Action::Branch { cases, otherwise }
        } else if let Some(wait) = &step.wait {
            Action::Wait(self.delay(wait)?)
        } else if let Some(wait_for) = &step.wait_for {
            let w = &wait_for.value;
            if w.events.value.is_empty() {
                let d = self
                    .at
                    .at(&w.events, "`events` lists no event type")
                    .with_hint("name at least one event type, e.g. `[lead.accepted]`");
                self.error(d);
            }
            let needs_key = w
                .events
                .value
                .iter()
                .any(|e| !e.value.starts_with(TIMER_EVENT_PREFIX));
            let key = match &w.key {
                Some(k) => Some(self.expression(k)?),
                None if needs_key => {
                    let d = self
                        .at
                        .at(
                            wait_for,
                            "`wait_for` needs a correlation `key` to match events to this run",
                        )
                        .with_hint("e.g. `key: input.lead_id`; only `timer.*` events need none");
                    self.error(d);
                    return None;
                }
                None => None,
            };
            let timeout = match &w.timeout {
                Some(t) => Some(self.delay(t)?),
                None => None,
            };
            let on_timeout = match &w.on_timeout {
                Some(t) => {
                    if timeout.is_none() {
                        let d = self
                            .at
                            .at(t, "`on_timeout` without a `timeout`")
                            .with_hint("add `timeout: {duration: 3d}`");
                        self.error(d);
                    }
                    let target = self.target(t, index)?;
                    successors.push(target);
                    Some(target)
                }
                None => None,
            };
            Action::WaitFor {
                events: w.events.value.iter().map(|e| e.value.clone()).collect(),
                key,
                timeout,
                on_timeout,
            }
        } else if let Some(timer) = &step.timer {
            let t = &timer.value;
            let delay = self.delay_parts(timer, &t.duration, &t.calendar, &t.until)?;
            Action::Timer {
                name: t.name.value.clone(),
                delay,
            }
        } else if let Some(name) = &step.cancel_timer {
            Action::CancelTimer(name.value.clone())
        } else if let Some(start) = &step.start {
            let s = &start.value;
            if !self.environment.workflow_names.contains(&s.workflow.value) {
                let mut d = self.at.at(
                    &s.workflow,
                    format!("there is no workflow `{}`", s.workflow.value),
                );
                if let Some(close) = closest(
                    &s.workflow.value,
                    self.environment.workflow_names.iter().map(String::as_str),
                ) {
                    d = d.with_hint(format!("did you mean `{close}`?"));
                } else {
                    d = d.with_hint(
                        "child workflows are files in the same folder, named without `.yaml`",
                    );
                }
                self.error(d);
            }
            let for_each = match &s.for_each {
                Some(e) => Some(self.expression(e)?),
                None => None,
            };
            let input_site = if for_each.is_some() {
                Site::FanOut(i)
            } else {
                site
            };
            let input = match &s.input {
                Some(values) => self.values(values, input_site)?,
                None => ComputedValue::Object(Vec::new()),
            };
            Action::Start {
                workflow: s.workflow.value.clone(),
                for_each,
                input,
            }
        } else if step.wait_children.is_some() {
            Action::WaitChildren
        } else if let Some(record) = &step.record {
            let r = &record.value;
            Action::Record {
                collection: r.collection.value.clone(),
                key: self.expression(&r.key)?,
                data: self.values(&r.data, site)?,
            }
        } else if let Some(fail) = &step.fail {
            Action::Fail {
                message: self.value(&fail.value.message)?,
                retryable: fail.value.retryable,
            }
        } else if let Some(name) = &step.plugin {
            self.plugin(name);
            let input = match &step.input {
                Some(values) => Some(self.values(&values.value, site)?),
                None => None,
            };
            Action::Plugin {
                name: name.value.clone(),
                input,
            }
        } else if let Some(name) = &step.connector {
            let function = self.connector(spanned, name, &step.call, &step.input)?;
            let input = match &step.input {
                Some(values) => Some(self.values(&values.value, site)?),
                None => None,
            };
            Action::Connector {
                name: name.value.clone(),
                function,
                input,
            }
        } else if let Some(email) = &step.send_email {
            Action::SendEmail(Box::new(self.send_email(&step.id.value, email, site)?))
        } else if let Some(end) = &step.end {
            let output = match &end.value.output {
                Some(values) => Some(self.values(values, site)?),
                None => None,
            };
            Action::End { output }
        } else {
            return None;
        };

        let retry = match &step.retry {
            None => RetryPolicy::default(),
            Some(r) => {
                let mut policy = RetryPolicy::default();
                if let Some(n) = &r.value.max_attempts {
                    if n.value == 0 {
                        let d = self.at.at(n, "`max_attempts` must be at least 1");
                        self.error(d);
                    }
                    policy.max_attempts = n.value.max(1);
                }
                if let Some(b) = &r.value.backoff {
                    policy.backoff = self.duration(b)?;
                }
                if let Some(b) = &r.value.max_backoff {
                    policy.max_backoff = self.duration(b)?;
                }
                policy
            }
        };

        Some((
            Step {
                id: step.id.value.clone(),
                next,
                retry,
                action,
            },
            successors,
        ))
    }

    /// Compiles a `send_email` step and checks its channel, template, purpose and that
    /// `data` passes every variable the template uses (in every locale and branch).
    fn send_email(
        &mut self,
        step_id: &str,
        email: &Spanned<SendEmailSource>,
        site: Site,
    ) -> Option<SendEmail> {
        let e = &email.value;
        let channel = e
            .channel
            .as_ref()
            .map(|c| c.value.clone())
            .unwrap_or_else(|| "default".to_string());
        if let Some(channels) = self.environment.channels
            && !channels.contains(&channel)
        {
            let message = format!("there is no email channel `{channel}`");
            let mut d = match &e.channel {
                Some(c) => self.at.at(c, message),
                None => self.at.at(email, message),
            };
            d = match closest(&channel, channels.iter().map(String::as_str)) {
                Some(close) => d.with_hint(format!("did you mean `{close}`?")),
                None => d.with_hint(format!(
                    "configure it in kontor.toml as `[channel.{channel}]` (channels: {})",
                    channels.iter().cloned().collect::<Vec<_>>().join(", ")
                )),
            };
            self.error(d);
        }
        let purpose = &e.purpose.value;
        if purpose.is_empty()
            || !purpose
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            let d = self
                .at
                .at(&e.purpose, format!("`{purpose}` is not a purpose"))
                .with_hint(
                    "a purpose is a lowercase word: marketing, service, safety, transactional, ...",
                );
            self.error(d);
        }
        let data = match &e.data {
            Some(values) => self.values(&values.value, site),
            None => Some(ComputedValue::Object(Vec::new())),
        };
        if let Some(templates) = self.environment.templates {
            match templates.get(&e.template.value) {
                None => {
                    let mut d = self.at.at(
                        &e.template,
                        format!("there is no email template `{}`", e.template.value),
                    );
                    d = match closest(&e.template.value, templates.names()) {
                        Some(close) => d.with_hint(format!("did you mean `{close}`?")),
                        None => d.with_hint(format!(
                            "create workflows/templates/{}/ with template.yaml and de.subject.hbs, de.text.hbs, de.html.hbs",
                            e.template.value
                        )),
                    };
                    self.error(d);
                }
                Some(template) => {
                    let passed: BTreeSet<&str> = e
                        .data
                        .as_ref()
                        .map(|d| d.value.keys().map(String::as_str).collect())
                        .unwrap_or_default();
                    let mut reported = BTreeSet::new();
                    for usage in &template.variables {
                        let root = usage.path.split(['.', '/']).next().unwrap_or_default();
                        if root == "locale" || passed.contains(root) || !reported.insert(root) {
                            continue;
                        }
                        let message = format!(
                            "template `{}` uses `{}` ({}:{}:{}), which step `{step_id}` does not pass in `data`",
                            template.name,
                            usage.path,
                            usage.file.display(),
                            usage.line,
                            usage.column
                        );
                        let d = match &e.data {
                            Some(values) => self.at.at(values, message),
                            None => self.at.at(email, message),
                        }
                        .with_hint(format!("add `{root}: ...` under `data:`"));
                        self.error(d);
                    }
                }
            }
        }
        let optional = |this: &mut Self, v: &Option<ValueSource>| match v {
            Some(v) => this.value(v).map(Some),
            None => Some(None),
        };
        let to = self.value(&e.to);
        let name = optional(self, &e.name);
        let locale = optional(self, &e.locale);
        let campaign = optional(self, &e.campaign);
        Some(SendEmail {
            channel,
            template: e.template.value.clone(),
            to: to?,
            name: name?,
            locale: locale?,
            data: data?,
            purpose: purpose.clone(),
            campaign: campaign?,
        })
    }

    /// Checks that plugin `name` exists and loads.
    /// Checks a `connector` step: the plugin is an ERP connector, `call` is one of its
    /// functions, and the arguments are ones that function takes. Returns the function.
    fn connector(
        &mut self,
        step: &Spanned<StepSource>,
        name: &Spanned<String>,
        call: &Option<Spanned<String>>,
        input: &Option<Spanned<ValuesSource>>,
    ) -> Option<String> {
        self.plugin(name);
        if let Some(index) = self.environment.plugins
            && let Some(world) = index.worlds.get(&name.value)
            && *world != kontor_plugins::World::ErpConnector
        {
            let d = self
                .at
                .at(
                    name,
                    format!(
                        "plugin `{}` is a {} plugin, not an ERP connector",
                        name.value,
                        world.name()
                    ),
                )
                .with_hint(format!("call it with `plugin: {}`", name.value));
            self.error(d);
        }
        let names = || {
            kontor_plugins::CONNECTOR_FUNCTIONS
                .iter()
                .map(|f| f.name)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let Some(call) = call else {
            let d = self
                .at
                .at(
                    step,
                    "a `connector` step names the function it calls with `call`",
                )
                .with_hint(format!("one of: {}", names()));
            self.error(d);
            return None;
        };
        let Some(function) = kontor_plugins::CONNECTOR_FUNCTIONS
            .iter()
            .find(|f| f.name == call.value)
        else {
            let mut d = self.at.at(
                call,
                format!(
                    "`{}` is not a function of the erp-connector world",
                    call.value
                ),
            );
            d = match closest(
                &call.value,
                kontor_plugins::CONNECTOR_FUNCTIONS.iter().map(|f| f.name),
            ) {
                Some(close) => d.with_hint(format!("did you mean `{close}`?")),
                None => d.with_hint(format!("the functions are: {}", names())),
            };
            self.error(d);
            return None;
        };
        let signature = || {
            format!(
                "`{}` takes {}",
                function.name,
                function
                    .arguments
                    .iter()
                    .map(|a| match a.strip_suffix('?') {
                        Some(optional) => format!("`{optional}` (optional)"),
                        None => format!("`{a}`"),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let given: Vec<&String> = input
            .as_ref()
            .map(|i| i.value.keys().collect())
            .unwrap_or_default();
        for (key, value) in input.iter().flat_map(|i| i.value.iter()) {
            if !function.accepts(key) {
                let d = self.at.at(
                    value,
                    format!("`{}` does not take an argument `{key}`", function.name),
                );
                let close = closest(
                    key,
                    function.arguments.iter().map(|a| a.trim_end_matches('?')),
                );
                let d = match close {
                    Some(close) => d.with_hint(format!("did you mean `{close}`? {}", signature())),
                    None => d.with_hint(signature()),
                };
                self.error(d);
            }
        }
        for required in function.required() {
            if !given.iter().any(|k| k.as_str() == required) {
                let d = match input {
                    Some(i) => self
                        .at
                        .at(i, format!("`{}` needs `{required}`", function.name)),
                    None => self.at.at(
                        call,
                        format!("`{}` needs `{required}`: give it in `input`", function.name),
                    ),
                }
                .with_hint(signature());
                self.error(d);
            }
        }
        Some(function.name.to_string())
    }

    fn plugin(&mut self, name: &Spanned<String>) {
        let Some(index) = self.environment.plugins else {
            return;
        };
        match index.plugins.get(&name.value) {
            Some(None) => {}
            Some(Some(problem)) => {
                let d = self.at.at(
                    name,
                    format!("plugin `{}` cannot be loaded: {problem}", name.value),
                );
                self.error(d);
            }
            None => {
                let mut d = self.at.at(
                    name,
                    format!(
                        "there is no plugin `{}` ({} does not exist)",
                        name.value,
                        index.dir.join(format!("{}.wasm", name.value)).display()
                    ),
                );
                if let Some(close) = closest(&name.value, index.plugins.keys().map(String::as_str))
                {
                    d = d.with_hint(format!("did you mean `{close}`?"));
                } else {
                    d = d.with_hint(format!(
                        "build it with `kontor plugin build {}`",
                        name.value
                    ));
                }
                self.error(d);
            }
        }
    }

    fn delay(&mut self, delay: &Spanned<DelaySource>) -> Option<Delay> {
        let d = &delay.value;
        self.delay_parts(delay, &d.duration, &d.calendar, &d.until)
    }

    fn delay_parts<T>(
        &mut self,
        at: &Spanned<T>,
        duration: &Option<Spanned<String>>,
        calendar: &Option<Spanned<String>>,
        until: &Option<Spanned<String>>,
    ) -> Option<Delay> {
        match (duration, until) {
            (Some(_), Some(u)) => {
                let d = self
                    .at
                    .at(u, "give either `duration` or `until`, not both")
                    .with_hint(
                        "`duration: 8h` waits that long; `until: <expression>` waits for a time",
                    );
                self.error(d);
                None
            }
            (None, None) => {
                let d = self
                    .at
                    .at(at, "a wait needs `duration` or `until`")
                    .with_hint("e.g. `duration: 2d`, or `duration: 8h` with `calendar: office` for business hours");
                self.error(d);
                None
            }
            (None, Some(until)) => {
                if let Some(c) = calendar {
                    let d = self
                        .at
                        .at(c, "`calendar` applies to `duration`, not `until`")
                        .with_hint("use `business_add(calendar, ts, '8h')` inside `until` instead");
                    self.error(d);
                }
                Some(Delay::Until(self.expression(until)?))
            }
            (Some(duration), None) => {
                let length = self.duration(duration)?;
                match calendar {
                    None => Some(Delay::Duration(length)),
                    Some(c) => {
                        if !self.environment.calendars.contains_key(&c.value) {
                            let mut d =
                                self.at.at(c, format!("there is no calendar `{}`", c.value));
                            let names: Vec<&str> = self
                                .environment
                                .calendars
                                .keys()
                                .map(String::as_str)
                                .collect();
                            d = match closest(&c.value, names.iter().copied()) {
                                Some(close) => d.with_hint(format!("did you mean `{close}`?")),
                                None => d.with_hint("calendars are files in `workflows/calendars/`, named without `.yaml`"),
                            };
                            self.error(d);
                            return None;
                        }
                        Some(Delay::Business {
                            duration: length,
                            calendar: c.value.clone(),
                        })
                    }
                }
            }
        }
    }

    fn duration(&mut self, text: &Spanned<String>) -> Option<chrono::Duration> {
        match kontor_time::parse_duration(&text.value) {
            Ok(d) if d > chrono::Duration::zero() => Some(d),
            Ok(_) => {
                let d = self.at.at(text, "a duration must be longer than zero");
                self.error(d);
                None
            }
            Err(e) => {
                let d = self
                    .at
                    .at(text, e.to_string())
                    .with_hint("write durations like `30s`, `15m`, `8h`, `2d`, `1w` or `1d 4h`");
                self.error(d);
                None
            }
        }
    }

    fn expression(&mut self, text: &Spanned<String>) -> Option<Expression> {
        match Expression::compile(&text.value) {
            Ok(e) => Some(e),
            Err(crate::expr::ExprError::Syntax {
                message,
                line,
                column,
            }) => {
                let d = self
                    .at
                    .inside(text, line, column, format!("invalid expression: {message}"))
                    .with_hint("expressions are CEL, e.g. `input.employees > 100 && input.country == 'DE'`");
                self.error(d);
                None
            }
            Err(other) => {
                let d = self.at.at(text, other.to_string());
                self.error(d);
                None
            }
        }
    }

    fn value(&mut self, value: &ValueSource) -> Option<ComputedValue> {
        match ComputedValue::compile(&value.value) {
            Ok(t) => Some(t),
            Err(e) => {
                let (line, column, message) = match e.error {
                    crate::expr::ExprError::Syntax {
                        message,
                        line,
                        column,
                    } => (line, e.offset as u32 + 2 + column, message),
                    other => (1, e.offset as u32 + 1, other.to_string()),
                };
                let d = self
                    .at
                    .inside(value, line, column, format!("invalid expression: {message}"))
                    .with_hint("inside `${...}` write CEL, e.g. `${input.name}`; close every `${` with `}`");
                self.error(d);
                None
            }
        }
    }

    fn values(&mut self, values: &ValuesSource, site: Site) -> Option<ComputedValue> {
        Some(ComputedValue::Object(self.values_ordered(values, site)?))
    }

    fn values_ordered(
        &mut self,
        values: &ValuesSource,
        _site: Site,
    ) -> Option<Vec<(String, ComputedValue)>> {
        let mut out = Vec::new();
        let mut ok = true;
        for (name, value) in values {
            match self.value(value) {
                Some(t) => out.push((name.clone(), t)),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// Checks that every variable an expression reads can exist when it runs.
    fn check_references(
        &mut self,
        steps: &[Spanned<StepSource>],
        successors: &[Vec<usize>],
        index: &HashMap<String, usize>,
        input_properties: &Option<BTreeSet<String>>,
    ) {
        // ancestors[i]: steps that can run before step i.
        let n = steps.len();
        let reach_from: Vec<HashSet<usize>> = (0..n)
            .map(|i| {
                let mut r: HashSet<usize> = HashSet::new();
                for &s in &successors[i] {
                    r.extend(reach(successors, s));
                }
                r
            })
            .collect();
        let ancestors: Vec<HashSet<usize>> = (0..n)
            .map(|i| (0..n).filter(|&a| reach_from[a].contains(&i)).collect())
            .collect();
        let vars_of = |i: usize| -> Vec<String> {
            steps[i]
                .value
                .set
                .as_ref()
                .map(|s| s.value.keys().cloned().collect())
                .unwrap_or_default()
        };

        for (i, step) in steps.iter().enumerate() {
            let available_steps: BTreeSet<&str> = ancestors[i]
                .iter()
                .map(|&a| steps[a].value.id.value.as_str())
                .collect();
            let available_vars: BTreeSet<String> =
                ancestors[i].iter().flat_map(|&a| vars_of(a)).collect();
            for (spanned, expr, fan_out) in expressions_of(&step.value) {
                for reference in expr.references() {
                    let root = reference.path[0].as_str();
                    let field = reference.path.get(1).map(String::as_str);
                    let problem: Option<(String, String)> = match root {
                        "input" => match (field, input_properties) {
                            (Some(f), Some(props)) if !props.contains(f) => Some((
                                format!("`input.{f}` is not in the workflow's input schema"),
                                match closest(f, props.iter().map(String::as_str)) {
                                    Some(c) => format!("did you mean `input.{c}`?"),
                                    None => format!(
                                        "add `{f}` under `input.properties`, or use one of: {}",
                                        props.iter().cloned().collect::<Vec<_>>().join(", ")
                                    ),
                                },
                            )),
                            _ => None,
                        },
                        "steps" => {
                            match field {
                                Some(f) if !available_steps.contains(f) => {
                                    Some(if index.contains_key(f) {
                                        (
                                            format!(
                                                "`steps.{f}` is read before step `{f}` can have run"
                                            ),
                                            format!(
                                                "step `{f}` does not come before step `{}` on any path",
                                                step.value.id.value
                                            ),
                                        )
                                    } else {
                                        (
                                    format!("there is no step `{f}`"),
                                    closest(f, available_steps.iter().copied())
                                        .map(|c| format!("did you mean `steps.{c}`?"))
                                        .unwrap_or_else(|| "`steps.<id>` reads the output of an earlier step".into()),
                                )
                                    })
                                }
                                _ => None,
                            }
                        }
                        "vars" => match field {
                            Some(f) if !available_vars.contains(f) => Some((
                                format!(
                                    "`vars.{f}` is never set before step `{}`",
                                    step.value.id.value
                                ),
                                closest(f, available_vars.iter().map(String::as_str))
                                    .map(|c| format!("did you mean `vars.{c}`?"))
                                    .unwrap_or_else(|| {
                                        format!("set it in an earlier step: `set: {{{f}: ...}}`")
                                    }),
                            )),
                            _ => None,
                        },
                        "run" => match field {
                            Some(f) if !RUN_FIELDS.contains(&f) => Some((
                                format!("`run.{f}` does not exist"),
                                format!("`run` has: {}", RUN_FIELDS.join(", ")),
                            )),
                            _ => None,
                        },
                        "now" => None,
                        "item" | "index" if fan_out => None,
                        "item" | "index" => Some((
                            format!("`{root}` exists only inside `start.input` with `for_each`"),
                            "`for_each: <list>` starts one child run per element, seen as `item`"
                                .into(),
                        )),
                        other if CEL_TYPE_NAMES.contains(&other) => None,
                        other => Some((
                            format!("unknown variable `{other}`"),
                            match closest(other, ROOTS.iter().copied()) {
                                Some(c) => format!("did you mean `{c}`?"),
                                None => format!("expressions can read: {}", ROOTS.join(", ")),
                            },
                        )),
                    };
                    if let Some((message, hint)) = problem {
                        let d = self
                            .at
                            .inside(
                                &spanned,
                                reference.line,
                                reference.column + spanned_offset(&spanned, &expr),
                                message,
                            )
                            .with_hint(hint);
                        self.error(d);
                    }
                }
            }
        }
    }
}

/// For `${...}` inside a longer string, how far the expression starts into the scalar.
fn spanned_offset(spanned: &Spanned<String>, expr: &Expression) -> u32 {
    spanned
        .value
        .find(expr.source())
        .map(|o| o as u32)
        .unwrap_or(0)
}

/// The expressions a step contains, each with the span of the scalar it came from and
/// whether it is a fan-out input (which may read `item`/`index`).
fn expressions_of(step: &StepSource) -> Vec<(Spanned<String>, Expression, bool)> {
    let mut out = Vec::new();
    let bare = |s: &Spanned<String>, fan_out: bool, out: &mut Vec<_>| {
        if let Ok(e) = Expression::compile(&s.value) {
            out.push((s.clone_spanned(), e, fan_out));
        }
    };
    let templated =
        |v: &ValueSource, fan_out: bool, out: &mut Vec<(Spanned<String>, Expression, bool)>| {
            if let Ok(t) = ComputedValue::compile(&v.value) {
                let text = match &v.value {
                    serde_json::Value::String(s) => s.clone(),
                    _ => String::new(),
                };
                for e in t.expressions() {
                    let s = Spanned::new(text.clone(), v.referenced, v.defined);
                    out.push((s, e.clone(), fan_out));
                }
            }
        };
    if let Some(set) = &step.set {
        set.value
            .values()
            .for_each(|v| templated(v, false, &mut out));
    }
    if let Some(branch) = &step.branch {
        branch
            .value
            .cases
            .iter()
            .for_each(|c| bare(&c.value.when, false, &mut out));
    }
    for delay in [step.wait.as_ref().map(|w| &w.value)].into_iter().flatten() {
        if let Some(u) = &delay.until {
            bare(u, false, &mut out);
        }
    }
    if let Some(w) = &step.wait_for {
        if let Some(k) = &w.value.key {
            bare(k, false, &mut out);
        }
        if let Some(u) = w
            .value
            .timeout
            .as_ref()
            .and_then(|t| t.value.until.as_ref())
        {
            bare(u, false, &mut out);
        }
    }
    if let Some(u) = step.timer.as_ref().and_then(|t| t.value.until.as_ref()) {
        bare(u, false, &mut out);
    }
    if let Some(start) = &step.start {
        if let Some(f) = &start.value.for_each {
            bare(f, false, &mut out);
        }
        let fan_out = start.value.for_each.is_some();
        if let Some(input) = &start.value.input {
            input.values().for_each(|v| templated(v, fan_out, &mut out));
        }
    }
    if let Some(r) = &step.record {
        bare(&r.value.key, false, &mut out);
        r.value
            .data
            .values()
            .for_each(|v| templated(v, false, &mut out));
    }
    if let Some(email) = &step.send_email {
        let e = &email.value;
        [
            Some(&e.to),
            e.name.as_ref(),
            e.locale.as_ref(),
            e.campaign.as_ref(),
        ]
        .into_iter()
        .flatten()
        .for_each(|v| templated(v, false, &mut out));
        if let Some(data) = &e.data {
            data.value
                .values()
                .for_each(|v| templated(v, false, &mut out));
        }
    }
    if let Some(f) = &step.fail {
        templated(&f.value.message, false, &mut out);
    }
    if let Some(output) = step.end.as_ref().and_then(|e| e.value.output.as_ref()) {
        output.values().for_each(|v| templated(v, false, &mut out));
    }
    if let Some(input) = &step.input {
        input
            .value
            .values()
            .for_each(|v| templated(v, false, &mut out));
    }
    out
}

trait CloneSpanned {
    fn clone_spanned(&self) -> Spanned<String>;
}

impl CloneSpanned for Spanned<String> {
    fn clone_spanned(&self) -> Spanned<String> {
        Spanned::new(self.value.clone(), self.referenced, self.defined)
    }
}

fn reach(successors: &[Vec<usize>], start: usize) -> HashSet<usize> {
    let mut seen = HashSet::new();
    let mut stack = vec![start];
    while let Some(i) = stack.pop() {
        if i < successors.len() && seen.insert(i) {
            stack.extend(successors[i].iter().copied());
        }
    }
    seen
}
