//! Limits that keep any expression, however hostile, from taking the server down.
//!
//! CEL has no loops, but it has macros over lists (`map`, `filter`, `all`, `exists`),
//! `lists.range(n)` and string functions whose results grow with their inputs, and the
//! interpreter recurses once per level of the expression tree. So:
//!
//! - **at compile time** an expression may be at most [`MAX_LENGTH`] bytes long and
//!   [`MAX_DEPTH`] levels deep (parsing runs on a thread with a large stack of its own, so
//!   even a hostile text is refused rather than overflowing the caller's stack), and every
//!   tree that passes is shallow enough to evaluate and drop on any thread;
//! - **at evaluation time** a [`Meter`] charges a budget of cost units: one per item a
//!   macro iterates, per number `lists.range` makes, per character or item a
//!   concatenation, `replace`, `join` or `format` produces, and `n·log n` or `n²` for
//!   `sort` and `distinct`. The charges are calls the compiler weaves into the tree
//!   ([`instrument`]) *before* the work they pay for, so an expression over budget stops
//!   at its first charge that does not fit, not after the work. Everything not charged
//!   costs at most a constant per node of a tree that is itself bounded.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use cel::common::ast::{CallExpr, Expr, IdedExpr, operators};
use cel::{Context, ExecutionError, Program, Value};

use super::ExprError;

/// Longest expression accepted, in bytes.
pub const MAX_LENGTH: usize = 10_000;
/// Deepest expression tree accepted (`a && b && c` is three levels).
pub const MAX_DEPTH: usize = 100;
/// Cost units one evaluation may spend unless configured otherwise
/// (`engine.expression_budget`): well under a second of work.
pub const DEFAULT_BUDGET: u64 = 1_000_000;

/// Stack of the thread that parses: the parser recurses once per operator, and a text of
/// [`MAX_LENGTH`] bytes must not overflow it (only the pages used are ever committed).
const PARSER_STACK: usize = 256 << 20;

/// Refuses a text too long to be an expression anyone means.
pub(super) fn check_length(source: &str) -> Result<(), ExprError> {
    if source.len() <= MAX_LENGTH {
        return Ok(());
    }
    Err(ExprError::Syntax {
        message: format!(
            "the expression is {} bytes long; the limit is {MAX_LENGTH}: compute parts of it in earlier steps",
            source.len()
        ),
        line: 1,
        column: 1,
    })
}

/// Runs `parse` on a thread with a stack large enough for any text of [`MAX_LENGTH`];
/// `None` if no thread could be made or `parse` panicked.
pub(super) fn on_parser_stack<T: Send>(parse: impl FnOnce() -> T + Send) -> Option<T> {
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("kontor-expr-parse".into())
            .stack_size(PARSER_STACK)
            .spawn_scoped(scope, parse)
            .ok()?;
        thread.join().ok()
    })
}

/// Refuses a tree deeper than [`MAX_DEPTH`], pointing at its deepest node. Iterative, so
/// any depth is measured safely; run on the parser's stack, where a deep tree is dropped.
pub(super) fn check_depth(program: &Program) -> Result<(), (usize, u64)> {
    let mut deepest = (0, program.expression().id);
    let mut pending = vec![(program.expression(), 1usize)];
    while let Some((node, depth)) = pending.pop() {
        if depth > deepest.0 {
            deepest = (depth, node.id);
        }
        for child in children(node) {
            pending.push((child, depth + 1));
        }
    }
    if deepest.0 > MAX_DEPTH {
        Err(deepest)
    } else {
        Ok(())
    }
}

fn children(node: &IdedExpr) -> Vec<&IdedExpr> {
    match &node.expr {
        Expr::Call(call) => call
            .target
            .as_deref()
            .into_iter()
            .chain(&call.args)
            .collect(),
        Expr::Select(select) => vec![&select.operand],
        Expr::List(list) => list.elements.iter().collect(),
        Expr::Map(cel::common::ast::MapExpr { entries })
        | Expr::Struct(cel::common::ast::StructExpr { entries, .. }) => entries
            .iter()
            .flat_map(|entry| match &entry.expr {
                cel::common::ast::EntryExpr::MapEntry(e) => vec![&e.key, &e.value],
                cel::common::ast::EntryExpr::StructField(f) => vec![&f.value],
            })
            .collect(),
        Expr::Comprehension(c) => vec![
            &c.iter_range,
            &c.accu_init,
            &c.loop_cond,
            &c.loop_step,
            &c.result,
        ],
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => Vec::new(),
    }
}

/// The functions [`instrument`] weaves in. Their names start with `@`, which the parser
/// never produces, so an expression cannot call or shadow them.
const CHARGE_ITEMS: &str = "@charge_items";
const CHARGE_COUNT: &str = "@charge_count";
const CHARGE_SIZE: &str = "@charge_size";
const CHARGE_REPLACE: &str = "@charge_replace";
const CHARGE_JOIN: &str = "@charge_join";
const CHARGE_SORT: &str = "@charge_sort";
const CHARGE_SQUARE: &str = "@charge_square";
const CHARGE_DEEP: &str = "@charge_deep";

/// Namespaces of the extension functions (`lists.range`), parsed as a call's target.
const NAMESPACES: &[&str] = &["lists", "math", "strings", "base64"];

/// A plain name: `x`, `input.items`, `item.address.city`.
fn is_name(expr: &IdedExpr) -> bool {
    match &expr.expr {
        Expr::Ident(_) => true,
        Expr::Select(select) => !select.test && is_name(&select.operand),
        _ => false,
    }
}

/// The tree that is evaluated: `expr` with a charge before every piece of work that is
/// not bounded by the tree's own size.
pub(super) fn instrument(expr: &IdedExpr) -> IdedExpr {
    weave(expr, false)
}

/// [`instrument`]'s walk; `in_loop`: inside a comprehension's step, where every name read
/// is copied once per item and is charged its size each time.
fn weave(expr: &IdedExpr, in_loop: bool) -> IdedExpr {
    // Children are woven in the same place: inside a loop or not.
    let again = |e: &IdedExpr| weave(e, in_loop);
    let wrap = |name: &str, args: Vec<IdedExpr>| IdedExpr {
        // Ids only map nodes to source positions; these have none of their own.
        id: 0,
        expr: Expr::Call(CallExpr {
            func_name: name.to_string(),
            target: None,
            args,
        }),
    };
    let node = match &expr.expr {
        Expr::Comprehension(c) => {
            let mut c = c.clone();
            c.iter_range = wrap(CHARGE_ITEMS, vec![again(&c.iter_range)]);
            c.accu_init = again(&c.accu_init);
            c.loop_cond = weave(&c.loop_cond, true);
            c.loop_step = instrument_step(&c.loop_step, &c.accu_var);
            // `@result` as the result is what `map`/`filter` expand to; the interpreter
            // hands the list it built over only for exactly that shape.
            if !matches!(&c.result.expr, Expr::Ident(v) if *v == c.accu_var) {
                c.result = again(&c.result);
            }
            Expr::Comprehension(c)
        }
        Expr::Ident(_) | Expr::Select(_) if in_loop && is_name(expr) => {
            return wrap(CHARGE_DEEP, vec![expr.clone()]);
        }
        Expr::Call(call) => {
            let mut call = CallExpr {
                func_name: call.func_name.clone(),
                target: call.target.as_deref().map(|t| match &t.expr {
                    // `lists.range(…)`, `math.abs(…)`: a function's namespace, not a name read.
                    Expr::Ident(n) if NAMESPACES.contains(&n.as_str()) => Box::new(t.clone()),
                    _ => Box::new(again(t)),
                }),
                args: call.args.iter().map(again).collect(),
            };
            let is_lists_range = call.func_name == "lists.range"
                || (call.func_name == "range"
                    && matches!(call.target.as_deref(), Some(IdedExpr { expr: Expr::Ident(n), .. }) if n == "lists"));
            match (call.func_name.as_str(), call.target.as_deref()) {
                _ if is_lists_range && call.args.len() == 1 => {
                    let n = call.args.remove(0);
                    call.args.push(wrap(CHARGE_COUNT, vec![n]));
                }
                ("replace", Some(target)) if call.args.len() >= 2 => {
                    let charged = wrap(
                        CHARGE_REPLACE,
                        vec![call.args[1].clone(), target.clone(), call.args[0].clone()],
                    );
                    call.args[1] = charged;
                }
                ("join" | "flatten", Some(target)) => {
                    call.target = Some(Box::new(wrap(CHARGE_JOIN, vec![target.clone()])));
                }
                ("sort", Some(target)) => {
                    call.target = Some(Box::new(wrap(CHARGE_SORT, vec![target.clone()])));
                }
                ("distinct", Some(target)) => {
                    call.target = Some(Box::new(wrap(CHARGE_SQUARE, vec![target.clone()])));
                }
                (operators::ADD | "format" | "strings.quote", _) => {
                    return wrap(
                        CHARGE_SIZE,
                        vec![IdedExpr {
                            id: expr.id,
                            expr: Expr::Call(call),
                        }],
                    );
                }
                _ => {}
            }
            Expr::Call(call)
        }
        Expr::Select(select) => {
            let mut select = select.clone();
            select.operand = Box::new(again(&select.operand));
            Expr::Select(select)
        }
        Expr::List(list) => {
            let mut list = list.clone();
            list.elements = list.elements.iter().map(again).collect();
            Expr::List(list)
        }
        Expr::Map(map) => {
            let mut map = map.clone();
            for entry in &mut map.entries {
                if let cel::common::ast::EntryExpr::MapEntry(e) = &mut entry.expr {
                    e.key = again(&e.key);
                    e.value = again(&e.value);
                }
            }
            Expr::Map(map)
        }
        other => other.clone(),
    };
    IdedExpr {
        id: expr.id,
        expr: node,
    }
}

/// A comprehension's step: like [`instrument`], but `@result + [item]`, the append that
/// `map` and `filter` expand to (also in a `?:` branch), stays as it is — the interpreter
/// runs exactly that shape as an in-place push, any other as a copy of the whole list
/// per item, and the comprehension's range already paid for its items.
fn instrument_step(step: &IdedExpr, accu_var: &str) -> IdedExpr {
    let Expr::Call(call) = &step.expr else {
        return weave(step, true);
    };
    let is_append = call.func_name == operators::ADD
        && call.target.is_none()
        && matches!(call.args.first(), Some(IdedExpr { expr: Expr::Ident(v), .. }) if v == accu_var);
    let args = if is_append {
        call.args
            .iter()
            .enumerate()
            .map(|(i, a)| if i == 0 { a.clone() } else { weave(a, true) })
            .collect()
    } else if call.func_name == operators::CONDITIONAL && call.args.len() == 3 {
        vec![
            weave(&call.args[0], true),
            instrument_step(&call.args[1], accu_var),
            instrument_step(&call.args[2], accu_var),
        ]
    } else {
        return weave(step, true);
    };
    IdedExpr {
        id: step.id,
        expr: Expr::Call(CallExpr {
            func_name: call.func_name.clone(),
            target: None,
            args,
        }),
    }
}

/// What one evaluation has spent of its budget.
#[derive(Clone)]
pub(super) struct Meter(Arc<Spent>);

struct Spent {
    budget: u64,
    used: AtomicU64,
    exceeded: AtomicBool,
    /// The run's cancellation: set, every charge fails.
    cancel: Option<Arc<AtomicBool>>,
}

impl Meter {
    pub fn new(budget: u64, cancel: Option<Arc<AtomicBool>>) -> Meter {
        Meter(Arc::new(Spent {
            budget,
            used: AtomicU64::new(0),
            exceeded: AtomicBool::new(false),
            cancel,
        }))
    }

    /// Whether the run was cancelled while the expression ran.
    pub fn cancelled(&self) -> bool {
        self.0
            .cancel
            .as_ref()
            .is_some_and(|flag| flag.load(Ordering::Relaxed))
    }

    /// Whether a charge did not fit (the evaluation's result, if any, is then void: CEL's
    /// `||` and `exists` may have absorbed the error).
    pub fn exceeded(&self) -> bool {
        self.0.exceeded.load(Ordering::Relaxed)
    }

    fn charge(&self, cost: u64) -> Result<(), ExecutionError> {
        let spent = &self.0;
        if self.cancelled() {
            return Err(ExecutionError::function_error(
                "kontor",
                "the run was cancelled",
            ));
        }
        if spent.exceeded.load(Ordering::Relaxed) {
            return Err(over_budget(spent.budget));
        }
        let used = spent
            .used
            .fetch_add(cost, Ordering::Relaxed)
            .saturating_add(cost);
        if used > spent.budget {
            spent.exceeded.store(true, Ordering::Relaxed);
            return Err(over_budget(spent.budget));
        }
        Ok(())
    }

    /// Adds the charging functions [`instrument`] calls to an evaluation's context.
    pub fn register(&self, context: &mut Context<'static, 'static>) {
        let meter = self.clone();
        let _ = context.add_function(CHARGE_ITEMS, move |range: Value| {
            meter.charge(size(&range)).map(|()| range)
        });
        let meter = self.clone();
        let _ = context.add_function(CHARGE_COUNT, move |n: i64| {
            meter.charge(n.max(0) as u64).map(|()| n)
        });
        let meter = self.clone();
        let _ = context.add_function(CHARGE_SIZE, move |made: Value| {
            meter.charge(size(&made)).map(|()| made)
        });
        let meter = self.clone();
        let _ = context.add_function(
            CHARGE_REPLACE,
            move |new: Value, text: Value, old: Value| {
                let (Value::String(text), Value::String(old), Value::String(with)) =
                    (&text, &old, &new)
                else {
                    return Ok(new);
                };
                let matches = if old.is_empty() {
                    text.chars().count() as u64 + 1
                } else {
                    text.matches(old.as_str()).count() as u64
                };
                let cost =
                    (text.len() as u64).saturating_add(matches.saturating_mul(with.len() as u64));
                meter.charge(cost).map(|()| new)
            },
        );
        let meter = self.clone();
        let _ = context.add_function(CHARGE_JOIN, move |list: Value| {
            let cost = match &list {
                Value::List(items) => items.iter().map(size).fold(0u64, u64::saturating_add),
                other => size(other),
            };
            meter.charge(cost).map(|()| list)
        });
        let meter = self.clone();
        let _ = context.add_function(CHARGE_SORT, move |list: Value| {
            let n = size(&list);
            let log = u64::from(64 - n.leading_zeros()).max(1);
            meter.charge(n.saturating_mul(log)).map(|()| list)
        });
        let meter = self.clone();
        let _ = context.add_function(CHARGE_DEEP, move |value: Value| {
            meter.charge(deep_size(&value, 0)).map(|()| value)
        });
        let meter = self.clone();
        let _ = context.add_function(CHARGE_SQUARE, move |list: Value| {
            let n = size(&list);
            meter.charge(n.saturating_mul(n)).map(|()| list)
        });
    }
}

fn over_budget(budget: u64) -> ExecutionError {
    ExecutionError::function_error("budget", format!("exceeded its budget of {budget}"))
}

/// The cost of copying a value: 1 per value it holds, nested ones included, plus the
/// length of its text.
fn deep_size(value: &Value, depth: usize) -> u64 {
    if depth > super::scope::MAX_RESULT_DEPTH {
        return u64::MAX;
    }
    match value {
        Value::List(items) => items
            .iter()
            .map(|v| deep_size(v, depth + 1))
            .fold(1, u64::saturating_add),
        Value::Map(map) => map
            .map
            .values()
            .map(|v| deep_size(v, depth + 1))
            .fold(1, u64::saturating_add),
        Value::String(s) => 1 + s.len() as u64 / 16,
        _ => 1,
    }
}

/// The cost of a value: characters of text, items of a list or map, 1 for anything else.
fn size(value: &Value) -> u64 {
    match value {
        Value::String(s) => s.len() as u64,
        Value::Bytes(b) => b.len() as u64,
        Value::List(items) => items.len() as u64,
        Value::Map(map) => map.map.len() as u64,
        _ => 1,
    }
}
