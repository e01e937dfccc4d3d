//! Expressions: CEL, compiled once, evaluated safely.
//!
//! Conditions (`branch`, `wait.until`) and computed values (`set`, child inputs, records)
//! are written in [CEL](https://cel.dev), a small, non-Turing-complete language: no loops,
//! no I/O, always terminates. Compiling and evaluating happen behind `catch_unwind`, so
//! a malformed or failing expression becomes an [`ExprError`] value and never takes a
//! worker down; [`budget`] bounds how long, how deep and how costly one may be, so none
//! can overflow a stack or pin a core either.
//!
//! What an expression can see is a [`Scope`]: `input`, `vars`, `steps`, `run`, `now`, and
//! inside fan-out mappings `item` and `index`; plus the calendar functions
//! `is_working_time(calendar, ts)`, `is_holiday(calendar, ts)`, `business_add(calendar, ts,
//! duration)` and `business_between(calendar, from, to)`.

mod budget;
mod scope;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, OnceLock};

use cel::common::ast::{Expr, IdedExpr};
use cel::{Env, ExecutionError, Program, Value};
use chrono::{DateTime, Utc};
use kontor_time::Calendar;
use serde_json::Value as Json;

pub use budget::{DEFAULT_BUDGET, MAX_DEPTH, MAX_LENGTH};
pub use scope::{Scope, from_json, to_json};

/// The CEL environment: the standard library plus the strings (`lowerAscii`, `split`,
/// `replace`, ...), lists and math extensions. Immutable once built.
pub(crate) fn environment() -> &'static Arc<Env> {
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
    #[error("expression `{}` failed: {message}", shorten(source_text))]
    Evaluation {
        source_text: String,
        message: String,
    },
    /// The expression spent its whole budget (`engine.expression_budget`) and was
    /// stopped: it iterates, sorts or builds text on too large a scale.
    #[error(
        "expression `{}` exceeded its budget of {budget} (engine.expression_budget): it iterates, sorts or builds text on too large a scale",
        shorten(source_text)
    )]
    OverBudget { source_text: String, budget: u64 },
    /// The run was cancelled while the expression ran, and the evaluation was stopped.
    #[error(
        "expression `{}` was stopped: the run was cancelled",
        shorten(source_text)
    )]
    Cancelled { source_text: String },
    /// A condition produced something other than a boolean.
    #[error(
        "expression `{}` must be true or false, but gave {got}",
        shorten(source_text)
    )]
    NotBoolean { source_text: String, got: String },
}

/// An expression as an error message quotes it: at most 120 characters.
fn shorten(source: &str) -> String {
    match source.char_indices().nth(120) {
        Some((end, _)) => format!("{}…", &source[..end]),
        None => source.to_string(),
    }
}

/// A compiled CEL expression with its source text.
#[derive(Clone)]
pub struct Expression {
    source: String,
    /// The parsed program: where each node was written, what it references.
    program: Arc<Program>,
    /// The tree that is evaluated: the program's, with the budget's charges woven in.
    evaluated: Arc<IdedExpr>,
    /// What an evaluation needs to know about the expression beforehand.
    reads: Arc<Reads>,
}

/// What an expression reads, found when it is compiled.
struct Reads {
    /// The variables it reads, so an evaluation converts only that much of its scope to
    /// CEL values (a run's `steps` may hold a page of 1,000 ERP customers).
    needs: Needs,
    /// Whether the text names a calendar function (`business_add`, ...): only then are
    /// they registered for an evaluation, which costs a copy of the calendar map.
    calls_calendar: bool,
    /// The name the whole expression is, when it is nothing more (`input.customers`).
    plain_path: Option<Vec<String>>,
}

/// Top-level variables an expression reads, each wholly (`None`) or only some of its
/// keys (`steps.page…` needs only `steps.page`).
pub(crate) type Needs =
    std::collections::BTreeMap<String, Option<std::collections::BTreeSet<String>>>;

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
    /// Compiles `source`. Never panics, whatever the text: too long or too deeply nested
    /// expressions are refused (see [`budget`]).
    pub fn compile(source: &str) -> Result<Expression, ExprError> {
        budget::check_length(source)?;
        budget::on_parser_stack(|| Self::compile_here(source)).unwrap_or_else(|| {
            Err(ExprError::Syntax {
                message: "the expression could not be parsed".into(),
                line: 1,
                column: 1,
            })
        })
    }

    /// Parses, measures, instruments. Runs on the parser's stack: a tree too deep to
    /// evaluate is also dropped there.
    fn compile_here(source: &str) -> Result<Expression, ExprError> {
        let compiled = catch_unwind(AssertUnwindSafe(|| environment().compile(source)));
        match compiled {
            Ok(Ok(program)) => {
                if let Err((depth, id)) = budget::check_depth(&program) {
                    let (line, column) = program
                        .source_info()
                        .offset_for(id)
                        .map(|(start, _)| position_of(source, start as usize))
                        .unwrap_or((1, 1));
                    return Err(ExprError::Syntax {
                        message: format!(
                            "the expression nests {depth} levels deep; the limit is {}: split it into steps or variables",
                            budget::MAX_DEPTH
                        ),
                        line,
                        column,
                    });
                }
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
                let plain_path = match &program.expression().expr {
                    Expr::Select(select) if select.test => None,
                    Expr::Select(_) | Expr::Ident(_) => {
                        qualified_path(program.expression()).map(|(path, _)| path)
                    }
                    _ => None,
                };
                let reads = Reads {
                    needs,
                    calls_calendar: scope::CALENDAR_FUNCTIONS
                        .iter()
                        .any(|name| source.contains(name)),
                    plain_path,
                };
                Ok(Expression {
                    source: source.to_string(),
                    evaluated: Arc::new(budget::instrument(program.expression())),
                    program: Arc::new(program),
                    reads: Arc::new(reads),
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
    /// A plain name (most `${…}` in workflow files) is read straight from the JSON: the
    /// same value CEL would give, without converting the run's data there and back.
    pub fn evaluate(&self, scope: &Scope<'_>) -> Result<Json, ExprError> {
        match self.plain_value(scope) {
            Some(value) => Ok(value.clone()),
            None => self.evaluate_in_cel(scope),
        }
    }

    fn evaluate_in_cel(&self, scope: &Scope<'_>) -> Result<Json, ExprError> {
        let value = self.evaluate_value(scope)?;
        to_json(&value).map_err(|message| self.evaluation_error(message))
    }

    /// [`Expression::evaluate`] without copying a plain name's value out of the scope: a
    /// fan-out over 100,000 customers reads its list once per chunk at the cost of a
    /// lookup.
    pub fn evaluate_borrowed<'s>(&self, scope: &'s Scope<'_>) -> Result<Cow<'s, Json>, ExprError> {
        match self.plain_value(scope) {
            Some(value) => Ok(Cow::Borrowed(value)),
            None => self.evaluate_in_cel(scope).map(Cow::Owned),
        }
    }

    /// The value of an expression that is nothing more than a name (`vars.score`,
    /// `steps.score.explanation`), read from the scope's JSON; `None` for any other
    /// expression, or when the name is missing (CEL then says so in its own words).
    fn plain_value<'s>(&self, scope: &'s Scope<'_>) -> Option<&'s Json> {
        scope.lookup(self.reads.plain_path.as_deref()?)
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
        let meter = budget::Meter::new(scope.budget(), scope.cancel_flag());
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let mut context = scope.context(&self.reads.needs, self.reads.calls_calendar);
            meter.register(&mut context);
            Value::resolve(&self.evaluated, &context)
        }));
        if meter.cancelled() {
            return Err(ExprError::Cancelled {
                source_text: self.source.clone(),
            });
        }
        if meter.exceeded() {
            metrics::counter!("kontor_expression_budget_exceeded_total").increment(1);
            return Err(ExprError::OverBudget {
                source_text: self.source.clone(),
                budget: scope.budget(),
            });
        }
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

#[cfg(test)]
mod tests;
