//! Checks of the file as a whole: the workflow's name against its file name, the input
//! schema, unique step ids, that every step can run, and the trigger; then the
//! [`Workflow`] assembled from the compiled steps.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde_saphyr::Spanned;
use sha2::{Digest, Sha256};

use super::{Compiler, references};
use crate::steps::StepSource;
use crate::workflow::source::WorkflowFile;
use crate::workflow::{Trigger, Workflow};

impl Compiler<'_> {
    pub(super) fn workflow(&mut self, file: WorkflowFile, text: &str) -> Option<Workflow> {
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
        let index = self.step_index(steps_source);

        let mut steps = Vec::with_capacity(steps_source.len());
        let mut successors: Vec<Vec<usize>> = Vec::with_capacity(steps_source.len());
        for (i, step) in steps_source.iter().enumerate() {
            let default_next = (i + 1 < steps_source.len()).then_some(i + 1);
            match self.step(step, default_next, &index) {
                Some((compiled, succ)) => {
                    successors.push(succ);
                    steps.push(compiled);
                }
                None => successors.push(default_next.into_iter().collect()),
            }
        }

        // Reachability from the first step.
        let reachable = references::reach(&successors, 0);
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
        let domain = self.domain(&file);

        if !self.diagnostics.is_empty() || steps.len() != steps_source.len() {
            return None;
        }
        let trigger = trigger?;
        Some(Workflow {
            name: file.name.value.clone(),
            description: file.description.clone(),
            domain,
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

    /// Step ids and their positions; reports ids that are not ids or not unique.
    fn step_index(&mut self, steps: &[Spanned<StepSource>]) -> HashMap<String, usize> {
        let mut index: HashMap<String, usize> = HashMap::new();
        for (i, step) in steps.iter().enumerate() {
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
                let first_line = steps[first].value.id.referenced.line();
                let d = self
                    .at
                    .at(id, format!("duplicate step id `{}`", id.value))
                    .with_hint(format!("the first step with this id is on line {first_line}; step ids must be unique"));
                self.error(d);
            } else {
                index.insert(id.value.clone(), i);
            }
        }
        index
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

    /// The `domain:` of the file, if it names one of [`crate::access::Domain`].
    fn domain(&mut self, file: &WorkflowFile) -> Option<crate::access::Domain> {
        let domain = file.domain.as_ref()?;
        let parsed = crate::access::Domain::parse(&domain.value);
        if parsed.is_none() {
            let names: Vec<&str> = crate::access::Domain::ALL
                .iter()
                .map(|d| d.as_str())
                .collect();
            let d = self
                .at
                .at(domain, format!("unknown domain `{}`", domain.value))
                .with_hint(format!(
                    "use one of {}, or leave `domain` out for a workflow every role that reads runs may see",
                    names.join(", ")
                ));
            self.error(d);
        }
        parsed
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
                    Some(values) => Some(self.values(values)?),
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
}
