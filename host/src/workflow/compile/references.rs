//! Which steps and variables each expression names, and whether they can exist when it
//! runs: `steps.X` only after step X can have run, `vars.Y` only after a `set` of Y,
//! `input.Z` only if the input schema has Z, `item` only in a fan-out's input.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_saphyr::Spanned;

use super::Compiler;
use crate::diagnostics::closest;
use crate::expr::Expression;
use crate::steps::StepSource;
use crate::workflow::ComputedValue;
use crate::workflow::source::{ValueSource, ValuesSource};

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

impl Compiler<'_> {
    /// Checks that every variable an expression reads can exist when it runs.
    pub(super) fn check_references(
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
        let vars_of = |i: usize| steps[i].value.variables();

        for (i, step) in steps.iter().enumerate() {
            let available_steps: BTreeSet<&str> = ancestors[i]
                .iter()
                .map(|&a| steps[a].value.id.value.as_str())
                .collect();
            let available_vars: BTreeSet<String> =
                ancestors[i].iter().flat_map(|&a| vars_of(a)).collect();
            let mut found = Expressions::default();
            step.value.expressions(&mut found);
            for Found {
                scalar: spanned,
                nested,
                expression: expr,
                fan_out,
            } in found.found
            {
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
                        let written = nested
                            .then(|| self.at.written_after(&spanned, expr.source()))
                            .flatten();
                        let d = match written {
                            Some((line, column)) if reference.line == 1 => {
                                crate::diagnostics::Diagnostic::new(
                                    self.at.path,
                                    line,
                                    column + reference.column - 1,
                                    message,
                                )
                            }
                            _ => self.at.inside(
                                &spanned,
                                reference.line,
                                reference.column + spanned_offset(&spanned, &expr),
                                message,
                            ),
                        }
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

/// The expressions of one step, each with the scalar it came from; the actions add
/// theirs ([`crate::steps::StepAction::expressions`]).
#[derive(Default)]
pub struct Expressions {
    found: Vec<Found>,
}

struct Found {
    /// The scalar the expression is in; for a string nested in a map or list, the span
    /// is the outermost value's and `nested` is set.
    scalar: Spanned<String>,
    nested: bool,
    expression: Expression,
    /// In a fan-out's input, where `item` and `index` exist.
    fan_out: bool,
}

impl Expressions {
    /// A bare CEL expression: a condition, a key, an `until`, a `for_each`.
    pub fn condition(&mut self, text: &Spanned<String>) {
        if let Ok(expression) = Expression::compile(&text.value) {
            self.found.push(Found {
                scalar: Spanned::new(text.value.clone(), text.referenced, text.defined),
                nested: false,
                expression,
                fan_out: false,
            });
        }
    }

    /// The `${…}` parts of a computed value.
    pub fn value(&mut self, value: &ValueSource) {
        self.computed(value, false);
    }

    /// The `${…}` parts of every value of a map.
    pub fn values(&mut self, values: &ValuesSource) {
        values.values().for_each(|v| self.computed(v, false));
    }

    /// The values of a `start` input with `for_each`, which may read `item` and `index`.
    pub fn fan_out_values(&mut self, values: &ValuesSource) {
        values.values().for_each(|v| self.computed(v, true));
    }

    fn computed(&mut self, value: &ValueSource, fan_out: bool) {
        self.scalars(value, &value.value, false, fan_out);
    }

    /// The expressions of every string in `json` (a map's or list's, one by one, so each
    /// is reported at its own scalar).
    fn scalars(&mut self, at: &ValueSource, json: &serde_json::Value, nested: bool, fan_out: bool) {
        match json {
            serde_json::Value::String(text) => {
                let Ok(computed) = ComputedValue::compile(json) else {
                    return;
                };
                for expression in computed.expressions() {
                    self.found.push(Found {
                        scalar: Spanned::new(text.clone(), at.referenced, at.defined),
                        nested,
                        expression: expression.clone(),
                        fan_out,
                    });
                }
            }
            serde_json::Value::Array(items) => items
                .iter()
                .for_each(|item| self.scalars(at, item, true, fan_out)),
            serde_json::Value::Object(fields) => fields
                .values()
                .for_each(|field| self.scalars(at, field, true, fan_out)),
            _ => {}
        }
    }
}

/// The steps reachable from `start` (itself included).
pub(super) fn reach(successors: &[Vec<usize>], start: usize) -> HashSet<usize> {
    let mut seen = HashSet::new();
    let mut stack = vec![start];
    while let Some(i) = stack.pop() {
        if i < successors.len() && seen.insert(i) {
            stack.extend(successors[i].iter().copied());
        }
    }
    seen
}
