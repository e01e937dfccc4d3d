//! Expressions: CEL, compiled once, evaluated safely.
//!
//! Conditions (`branch`, `wait.until`) and computed values (`set`, child inputs, records)
//! are written in [CEL](https://cel.dev), a small, non-Turing-complete language: no loops,
//! no I/O, always terminates. Compiling and evaluating happen behind `catch_unwind`, so
//! a malformed or failing expression becomes an [`ExprError`] value and never takes a
//! worker down.
//!
//! What an expression can see is a [`Scope`]: `input`, `vars`, `steps`, `run`, `now`, and
//! inside fan-out mappings `item` and `index`; plus the calendar functions
//! `is_working_time(calendar, ts)`, `is_holiday(calendar, ts)`, `business_add(calendar, ts,
//! duration)` and `business_between(calendar, from, to)`.

use std::collections::HashMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, OnceLock};

use cel::common::ast::{Expr, IdedExpr};
use cel::objects::{Key, Map as CelMap};
use cel::{Context, Env, ExecutionError, Program, Value};
use chrono::{DateTime, FixedOffset, Utc};
use kontor_time::Calendar;
use serde_json::Value as Json;

/// The CEL environment: the standard library plus the strings (`lowerAscii`, `split`,
/// `replace`, ...), lists and math extensions. Immutable once built.
fn environment() -> &'static Arc<Env> {
    static ENVIRONMENT: OnceLock<Arc<Env>> = OnceLock::new();
    ENVIRONMENT.get_or_init(|| {
        let mut env = Env::stdlib();
        for extension in [
            cel::extensions::strings,
            cel::extensions::lists,
            cel::extensions::math,
        ] {
            if let Err(e) = env.add_extension(extension) {
                tracing::warn!(error = %e, "a CEL extension could not be added");
            }
        }
        Arc::new(env)
    })
}

/// The calendars an expression may use, by name.
pub type Calendars = HashMap<String, Arc<Calendar>>;

/// Why an expression could not be compiled or evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExprError {
    /// The text is not valid CEL. `line`/`column` are 1-based within the expression.
    #[error("invalid expression: {message}")]
    Syntax {
        message: String,
        line: u32,
        column: u32,
    },
    /// The expression is valid but failed on this data (missing key, wrong type, ...).
    #[error("expression `{source_text}` failed: {message}")]
    Evaluation {
        source_text: String,
        message: String,
    },
    /// A condition produced something other than a boolean.
    #[error("expression `{source_text}` must be true or false, but gave {got}")]
    NotBoolean { source_text: String, got: String },
}

/// A compiled CEL expression with its source text.
#[derive(Clone)]
pub struct Expression {
    source: String,
    program: Arc<Program>,
    /// What the expression reads, so an evaluation converts only that much of its scope
    /// to CEL values (a run's `steps` may hold a page of 1,000 ERP customers).
    needs: Arc<Needs>,
}

/// Top-level variables an expression reads, each wholly (`None`) or only some of its
/// keys (`steps.page…` needs only `steps.page`).
type Needs = std::collections::BTreeMap<String, Option<std::collections::BTreeSet<String>>>;

impl fmt::Debug for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Expression({:?})", self.source)
    }
}

/// A qualified name used by an expression, like `input.lead.email`, with its 1-based
/// position inside the expression text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub path: Vec<String>,
    pub line: u32,
    pub column: u32,
}

impl Expression {
    /// Compiles `source`. Never panics.
    pub fn compile(source: &str) -> Result<Expression, ExprError> {
        let compiled = catch_unwind(AssertUnwindSafe(|| environment().compile(source)));
        match compiled {
            Ok(Ok(program)) => {
                let mut needs = Needs::new();
                let mut found = Vec::new();
                collect_references(program.expression(), &mut Vec::new(), &mut found);
                for (path, _) in found {
                    let entry = needs
                        .entry(path[0].clone())
                        .or_insert_with(|| Some(Default::default()));
                    match (entry, path.get(1)) {
                        (Some(keys), Some(key)) => {
                            keys.insert(key.clone());
                        }
                        (entry, _) => *entry = None,
                    }
                }
                Ok(Expression {
                    source: source.to_string(),
                    program: Arc::new(program),
                    needs: Arc::new(needs),
                })
            }
            Ok(Err(errors)) => {
                let first = errors.errors.first();
                let (line, column) = first
                    .map(|e| (e.pos.0.max(1) as u32, e.pos.1.max(0) as u32 + 1))
                    .unwrap_or((1, 1));
                let message = first
                    .map(|e| e.msg.clone())
                    .unwrap_or_else(|| errors.to_string());
                let message = if message.contains("'<EOF>'") {
                    "the expression ends too early: an operand or a closing bracket is missing"
                        .to_string()
                } else {
                    message
                };
                Err(ExprError::Syntax {
                    message,
                    line,
                    column,
                })
            }
            Err(_) => Err(ExprError::Syntax {
                message: "the expression could not be parsed".into(),
                line: 1,
                column: 1,
            }),
        }
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates to JSON. Timestamps become RFC 3339 strings, durations seconds.
    pub fn evaluate(&self, scope: &Scope<'_>) -> Result<Json, ExprError> {
        let value = self.evaluate_value(scope)?;
        to_json(&value).map_err(|message| self.evaluation_error(message))
    }

    /// Evaluates a condition, which must give a boolean.
    pub fn evaluate_bool(&self, scope: &Scope<'_>) -> Result<bool, ExprError> {
        match self.evaluate_value(scope)? {
            Value::Bool(b) => Ok(b),
            other => Err(ExprError::NotBoolean {
                source_text: self.source.clone(),
                got: format!("{:?}", other.type_of()),
            }),
        }
    }

    /// Evaluates to a point in time: a CEL timestamp, or a string in RFC 3339.
    pub fn evaluate_time(&self, scope: &Scope<'_>) -> Result<DateTime<Utc>, ExprError> {
        match self.evaluate_value(scope)? {
            Value::Timestamp(t) => Ok(t.to_utc()),
            Value::String(s) => DateTime::parse_from_rfc3339(&s)
                .map(|t| t.to_utc())
                .map_err(|e| self.evaluation_error(format!("`{s}` is not an RFC 3339 time: {e}"))),
            other => {
                Err(self
                    .evaluation_error(format!("expected a timestamp, got {:?}", other.type_of())))
            }
        }
    }

    fn evaluate_value(&self, scope: &Scope<'_>) -> Result<Value, ExprError> {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let context = scope.context(&self.needs);
            self.program.execute(&context)
        }));
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.evaluation_error(describe_execution_error(&e))),
            Err(_) => Err(self.evaluation_error("the evaluator failed on this input".into())),
        }
    }

    fn evaluation_error(&self, message: String) -> ExprError {
        ExprError::Evaluation {
            source_text: self.source.clone(),
            message,
        }
    }

    /// Every qualified name the expression reads (`input.email`, `steps.score.total`),
    /// excluding variables bound by macros such as `list.all(x, ...)`.
    pub fn references(&self) -> Vec<Reference> {
        let mut found = Vec::new();
        let mut bound = Vec::new();
        collect_references(self.program.expression(), &mut bound, &mut found);
        found
            .into_iter()
            .map(|(path, id)| {
                let (line, column) = self
                    .program
                    .source_info()
                    .offset_for(id)
                    .map(|(start, _)| position_of(&self.source, start as usize))
                    .unwrap_or((1, 1));
                Reference { path, line, column }
            })
            .collect()
    }
}

fn position_of(source: &str, offset: usize) -> (u32, u32) {
    let mut line = 1;
    let mut column = 1;
    for (i, c) in source.chars().enumerate() {
        if i >= offset {
            break;
        }
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    (line, column)
}

fn collect_references(
    expr: &IdedExpr,
    bound: &mut Vec<String>,
    found: &mut Vec<(Vec<String>, u64)>,
) {
    if let Some((path, root_id)) = qualified_path(expr) {
        if !bound.iter().any(|b| *b == path[0]) {
            // Point at the start of the name, not at its last `.`.
            found.push((path, root_id));
        }
        return;
    }
    match &expr.expr {
        Expr::Call(call) => {
            if let Some(target) = &call.target {
                collect_references(target, bound, found);
            }
            for arg in &call.args {
                collect_references(arg, bound, found);
            }
        }
        Expr::Select(select) => collect_references(&select.operand, bound, found),
        Expr::List(list) => {
            for e in &list.elements {
                collect_references(e, bound, found);
            }
        }
        Expr::Map(map) => {
            for entry in &map.entries {
                if let cel::common::ast::EntryExpr::MapEntry(e) = &entry.expr {
                    collect_references(&e.key, bound, found);
                    collect_references(&e.value, bound, found);
                }
            }
        }
        Expr::Comprehension(c) => {
            collect_references(&c.iter_range, bound, found);
            let pushed = 2 + usize::from(c.iter_var2.is_some());
            bound.push(c.iter_var.clone());
            bound.push(c.accu_var.clone());
            if let Some(v) = &c.iter_var2 {
                bound.push(v.clone());
            }
            collect_references(&c.accu_init, bound, found);
            collect_references(&c.loop_cond, bound, found);
            collect_references(&c.loop_step, bound, found);
            collect_references(&c.result, bound, found);
            bound.truncate(bound.len() - pushed);
        }
        Expr::Struct(s) => {
            for entry in &s.entries {
                if let cel::common::ast::EntryExpr::StructField(f) = &entry.expr {
                    collect_references(&f.value, bound, found);
                }
            }
        }
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
}

/// `a.b.c` as `["a", "b", "c"]` with the id of `a`; `None` for anything that is not a
/// plain qualified name.
fn qualified_path(expr: &IdedExpr) -> Option<(Vec<String>, u64)> {
    match &expr.expr {
        Expr::Ident(name) => Some((vec![name.clone()], expr.id)),
        Expr::Select(select) => {
            let (mut path, root) = qualified_path(&select.operand)?;
            path.push(select.field.clone());
            Some((path, root))
        }
        _ => None,
    }
}

fn describe_execution_error(error: &ExecutionError) -> String {
    match error {
        ExecutionError::NoSuchKey(key) => format!("no such key `{key}`"),
        ExecutionError::UndeclaredReference(name) => format!("`{name}` is not defined here"),
        other => other.to_string(),
    }
}

/// What an expression can see while it runs.
pub struct Scope<'a> {
    variables: Vec<(&'static str, Json)>,
    now: DateTime<Utc>,
    calendars: &'a Calendars,
}

impl<'a> Scope<'a> {
    pub fn new(now: DateTime<Utc>, calendars: &'a Calendars) -> Self {
        Scope {
            variables: Vec::new(),
            now,
            calendars,
        }
    }

    /// Binds a top-level variable (`input`, `vars`, `steps`, `run`, `item`, ...).
    pub fn with(mut self, name: &'static str, value: Json) -> Self {
        self.set(name, value);
        self
    }

    pub fn set(&mut self, name: &'static str, value: Json) {
        self.variables.retain(|(n, _)| *n != name);
        self.variables.push((name, value));
    }

    /// A CEL context with what `needs` names: variables the expression does not read are
    /// left out, and of an object only the keys it reads are converted.
    fn context(&self, needs: &Needs) -> Context<'static, 'static> {
        let mut context = Context::with_env(environment().clone());
        for (name, value) in &self.variables {
            match (needs.get(*name), value) {
                (None, _) => {}
                (Some(Some(keys)), Json::Object(map)) => {
                    let part: serde_json::Map<String, Json> = keys
                        .iter()
                        .filter_map(|k| map.get(k).map(|v| (k.clone(), v.clone())))
                        .collect();
                    context.add_variable_from_value(*name, from_json(&Json::Object(part)));
                }
                (Some(_), value) => context.add_variable_from_value(*name, from_json(value)),
            }
        }
        context.add_variable_from_value("now", Value::Timestamp(self.now.fixed_offset()));
        register_calendar_functions(&mut context, self.calendars);
        context
    }
}

fn register_calendar_functions(context: &mut Context<'static, 'static>, calendars: &Calendars) {
    let lookup = {
        let calendars = Arc::new(calendars.clone());
        move |name: &str| -> Result<Arc<Calendar>, ExecutionError> {
            calendars.get(name).cloned().ok_or_else(|| {
                ExecutionError::function_error("calendar", format!("no calendar named `{name}`"))
            })
        }
    };
    let find = lookup.clone();
    let _ = context.add_function(
        "is_working_time",
        move |name: Arc<String>, at: DateTime<FixedOffset>| -> Result<bool, ExecutionError> {
            Ok(find(&name)?.is_working_time(at.to_utc()))
        },
    );
    let find = lookup.clone();
    let _ = context.add_function(
        "is_holiday",
        move |name: Arc<String>, at: DateTime<FixedOffset>| -> Result<bool, ExecutionError> {
            let calendar = find(&name)?;
            let local = at.to_utc().with_timezone(&calendar.timezone()).date_naive();
            Ok(calendar.holiday_name(local).is_some())
        },
    );
    let find = lookup.clone();
    let _ = context.add_function(
        "business_add",
        move |name: Arc<String>,
              at: DateTime<FixedOffset>,
              duration: Arc<String>|
              -> Result<DateTime<FixedOffset>, ExecutionError> {
            let calendar = find(&name)?;
            let duration = kontor_time::parse_duration(&duration)
                .map_err(|e| ExecutionError::function_error("business_add", e.to_string()))?;
            calendar
                .add_business_duration(at.to_utc(), duration)
                .map(|t| t.fixed_offset())
                .map_err(|e| ExecutionError::function_error("business_add", e.to_string()))
        },
    );
    let find = lookup;
    let _ = context.add_function(
        "business_between",
        move |name: Arc<String>,
              from: DateTime<FixedOffset>,
              to: DateTime<FixedOffset>|
              -> Result<chrono::Duration, ExecutionError> {
            Ok(find(&name)?.business_duration_between(from.to_utc(), to.to_utc()))
        },
    );
}

/// Converts JSON into a CEL value. Integers stay integers, so `input.employees > 100` works.
pub fn from_json(value: &Json) -> Value {
    match value {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => Value::UInt(u),
            _ => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::String(Arc::new(s.clone())),
        Json::Array(items) => Value::List(Arc::new(items.iter().map(from_json).collect())),
        Json::Object(map) => {
            let map: HashMap<Key, Value> = map
                .iter()
                .map(|(k, v)| (Key::String(Arc::new(k.clone())), from_json(v)))
                .collect();
            Value::Map(CelMap { map: Arc::new(map) })
        }
    }
}

/// Converts a CEL result into JSON.
pub fn to_json(value: &Value) -> Result<Json, String> {
    Ok(match value {
        Value::Timestamp(t) => Json::String(t.to_utc().to_rfc3339()),
        Value::Duration(d) => serde_json::json!(d.num_milliseconds() as f64 / 1000.0),
        Value::Float(f) if !f.is_finite() => {
            return Err(format!("the result {f} is not a finite number"));
        }
        Value::List(items) => Json::Array(items.iter().map(to_json).collect::<Result<_, _>>()?),
        Value::Map(map) => {
            let mut object = serde_json::Map::new();
            for (k, v) in map.map.iter() {
                object.insert(k.to_string(), to_json(v)?);
            }
            Json::Object(object)
        }
        other => other
            .json()
            .map_err(|_| format!("a {:?} cannot be stored", other.type_of()))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope(calendars: &Calendars) -> Scope<'_> {
        let now = DateTime::parse_from_rfc3339("2026-06-01T10:00:00Z")
            .unwrap()
            .to_utc();
        Scope::new(now, calendars).with(
            "input",
            json!({"employees": 250, "name": "Müller GmbH", "tags": ["a", "b"]}),
        )
    }

    #[test]
    fn evaluates_against_json_input() {
        let cals = Calendars::new();
        let e = Expression::compile("input.employees > 100 ? 30 : 10").unwrap();
        assert_eq!(e.evaluate(&scope(&cals)).unwrap(), json!(30));
        let e = Expression::compile("size(input.name)").unwrap();
        assert_eq!(
            e.evaluate(&scope(&cals)).unwrap(),
            json!(11),
            "umlauts count once"
        );
    }

    #[test]
    fn an_evaluation_converts_only_what_the_expression_reads() {
        let cals = Calendars::new();
        let scope = Scope::new(Utc::now(), &cals)
            .with(
                "steps",
                json!({"page": {"buyers": [1, 2, 3], "next": "K-9"}, "other": {"x": 1}}),
            )
            .with("vars", json!({"cursor": "K-3", "pages": 2}));
        let needs = |source: &str| Expression::compile(source).unwrap().needs.as_ref().clone();
        let reads = needs("size(steps.page.buyers) + vars.pages");
        assert_eq!(reads.len(), 2);
        assert_eq!(reads["steps"], Some(["page".to_string()].into()));
        assert_eq!(needs("size(steps) + vars.pages")["steps"], None);
        for (source, expected) in [
            ("size(steps.page.buyers) + vars.pages", json!(5)),
            ("has(vars.cursor) ? vars.cursor : null", json!("K-3")),
            ("has(steps.missing) ? 1 : 0", json!(0)),
            ("steps.page.buyers.map(b, b * vars.pages)", json!([2, 4, 6])),
            ("size(steps)", json!(2)),
            ("steps['other'].x", json!(1)),
            ("vars", json!({"cursor": "K-3", "pages": 2})),
        ] {
            let e = Expression::compile(source).unwrap();
            assert_eq!(e.evaluate(&scope).unwrap(), expected, "{source}");
        }
    }

    #[test]
    fn typos_are_errors_not_panics() {
        for source in [
            "input.employees >",
            "'unterminated",
            "a..b",
            "((",
            "}",
            "input.[",
            "",
        ] {
            assert!(
                matches!(Expression::compile(source), Err(ExprError::Syntax { .. })),
                "{source:?} should be a syntax error"
            );
        }
    }

    #[test]
    fn evaluation_failures_are_errors() {
        let cals = Calendars::new();
        for source in [
            "input.missing > 1",
            "1 / 0",
            "input.name + 1",
            "no_such_fn(1)",
        ] {
            let e = Expression::compile(source).unwrap();
            assert!(e.evaluate(&scope(&cals)).is_err(), "{source} should fail");
        }
        let e = Expression::compile("input.employees").unwrap();
        assert!(matches!(
            e.evaluate_bool(&scope(&cals)),
            Err(ExprError::NotBoolean { .. })
        ));
    }

    #[test]
    fn finds_references_but_not_macro_variables() {
        let e =
            Expression::compile("input.tags.all(t, t != vars.x) && steps.score.total > 3").unwrap();
        let mut paths: Vec<String> = e.references().iter().map(|r| r.path.join(".")).collect();
        paths.sort();
        assert_eq!(paths, ["input.tags", "steps.score.total", "vars.x"]);
    }

    #[test]
    fn now_is_the_scope_clock() {
        let cals = Calendars::new();
        let e = Expression::compile("now + duration('1h')").unwrap();
        assert_eq!(
            e.evaluate(&scope(&cals)).unwrap(),
            json!("2026-06-01T11:00:00+00:00")
        );
    }
}
