//! What an expression sees: the [`Scope`] of variables and calendar functions, and the
//! conversions between JSON (what runs store) and CEL values.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use cel::objects::{Key, Map as CelMap};
use cel::{Context, ExecutionError, Value};
use chrono::{DateTime, FixedOffset, Utc};
use kontor_time::Calendar;
use serde_json::Value as Json;

use super::{Calendars, Needs, environment};

/// What an expression can see while it runs.
pub struct Scope<'a> {
    /// Owned, or borrowed from the run where a scope is made many times over the same
    /// values (a fan-out's children all see the parent's input).
    variables: Vec<(&'static str, Cow<'a, Json>)>,
    now: DateTime<Utc>,
    calendars: &'a Calendars,
    /// Cost units one evaluation in this scope may spend.
    budget: u64,
    /// Set when the run is cancelled: an evaluation stops at its next charge.
    cancel: Option<Arc<AtomicBool>>,
}

impl<'a> Scope<'a> {
    pub fn new(now: DateTime<Utc>, calendars: &'a Calendars) -> Self {
        Scope {
            variables: Vec::new(),
            now,
            calendars,
            budget: super::DEFAULT_BUDGET,
            cancel: None,
        }
    }

    /// Stops evaluations in this scope once `flag` is set (the run was cancelled).
    pub fn with_cancel(mut self, flag: Option<Arc<AtomicBool>>) -> Self {
        self.cancel = flag;
        self
    }

    pub(super) fn cancel_flag(&self) -> Option<Arc<AtomicBool>> {
        self.cancel.clone()
    }

    /// Sets the cost units an evaluation may spend (`engine.expression_budget`).
    pub fn with_budget(mut self, budget: u64) -> Self {
        self.budget = budget;
        self
    }

    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Binds a top-level variable (`input`, `vars`, `steps`, `run`, `item`, ...).
    pub fn with(mut self, name: &'static str, value: Json) -> Self {
        self.set(name, value);
        self
    }

    pub fn set(&mut self, name: &'static str, value: Json) {
        self.variables.retain(|(n, _)| *n != name);
        self.variables.push((name, Cow::Owned(value)));
    }

    /// Binds a top-level variable to a value the scope borrows instead of copying.
    pub fn with_borrowed(mut self, name: &'static str, value: &'a Json) -> Self {
        self.variables.retain(|(n, _)| *n != name);
        self.variables.push((name, Cow::Borrowed(value)));
        self
    }

    /// The value at `path` (`["input", "customers"]`), read straight from the bound JSON
    /// without converting it; `None` when a part of the path is missing.
    pub fn lookup(&self, path: &[String]) -> Option<&Json> {
        let (root, rest) = path.split_first()?;
        let (_, value) = self.variables.iter().find(|(n, _)| *n == root.as_str())?;
        rest.iter()
            .try_fold(value.as_ref(), |value, key| value.as_object()?.get(key))
    }

    /// A CEL context with what `needs` names: variables the expression does not read are
    /// left out, and of an object only the keys it reads are converted.
    pub(super) fn context(
        &self,
        needs: &Needs,
        calendar_functions: bool,
    ) -> Context<'static, 'static> {
        let mut context = Context::with_env(environment().clone());
        for (name, value) in &self.variables {
            match (needs.get(*name), value.as_ref()) {
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
        if calendar_functions {
            register_calendar_functions(&mut context, self.calendars);
        }
        context
    }
}

/// The functions over named calendars an expression may call.
pub(super) const CALENDAR_FUNCTIONS: [&str; 4] = [
    "is_working_time",
    "is_holiday",
    "business_add",
    "business_between",
];

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

/// Most values (items, entries and scalars) one result may hold: CEL shares values, so a
/// short expression can name a large list many times over; stored, each is a copy.
pub const MAX_RESULT_VALUES: usize = 1_000_000;

/// Deepest result stored: what `serde_json` reads back (its recursion limit is 128).
pub const MAX_RESULT_DEPTH: usize = 127;

/// Converts a CEL result into JSON.
pub fn to_json(value: &Value) -> Result<Json, String> {
    let mut left = MAX_RESULT_VALUES;
    to_json_within(value, &mut left, 0)
}

fn to_json_within(value: &Value, left: &mut usize, depth: usize) -> Result<Json, String> {
    if *left == 0 {
        return Err(format!(
            "the result holds more than {MAX_RESULT_VALUES} values; keep results small"
        ));
    }
    *left -= 1;
    if depth >= MAX_RESULT_DEPTH {
        return Err(format!(
            "the result nests deeper than {MAX_RESULT_DEPTH} levels"
        ));
    }
    Ok(match value {
        Value::Timestamp(t) => Json::String(t.to_utc().to_rfc3339()),
        Value::Duration(d) => serde_json::json!(d.num_milliseconds() as f64 / 1000.0),
        Value::Float(f) if !f.is_finite() => {
            return Err(format!("the result {f} is not a finite number"));
        }
        Value::List(items) => Json::Array(
            items
                .iter()
                .map(|item| to_json_within(item, left, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Value::Map(map) => {
            let mut object = serde_json::Map::new();
            for (k, v) in map.map.iter() {
                object.insert(k.to_string(), to_json_within(v, left, depth + 1)?);
            }
            Json::Object(object)
        }
        other => other
            .json()
            .map_err(|_| format!("a {:?} cannot be stored", other.type_of()))?,
    })
}
