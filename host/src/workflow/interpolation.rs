//! Computed values: JSON in which strings may contain `${ expression }`, the `${…}`
//! interpolation of workflow files. (Email text is rendered by handlebars templates, a
//! different thing: see `crate::templates`.)
//!
//! - `"${input.employees * 2}"` — a string that is exactly one `${...}` takes the
//!   expression's value, whatever its type (number, list, map, ...).
//! - `"Hallo ${input.name}!"` — interpolation: each part is evaluated and turned into text.
//! - any other string, number, boolean or null is taken literally; maps and lists are
//!   walked recursively.
//!
//! Conditions (`when`, `until`, `key`, `for_each`) are bare CEL without `${}`.

use serde_json::Value as Json;

use crate::expr::{ExprError, Expression, Scope};

/// A compiled computed value.
#[derive(Debug, Clone)]
pub enum ComputedValue {
    Literal(Json),
    Expression(Expression),
    Interpolated(Vec<Part>),
    Array(Vec<ComputedValue>),
    Object(Vec<(String, ComputedValue)>),
}

#[derive(Debug, Clone)]
pub enum Part {
    Text(String),
    Expression(Expression),
}

/// A problem compiling a computed value, with the byte offset of the bad `${...}` in its string.
#[derive(Debug, Clone)]
pub struct InterpolationError {
    pub offset: usize,
    pub error: ExprError,
}

impl ComputedValue {
    pub fn compile(value: &Json) -> Result<ComputedValue, InterpolationError> {
        Ok(match value {
            Json::String(s) => compile_string(s)?,
            Json::Array(items) => ComputedValue::Array(
                items
                    .iter()
                    .map(ComputedValue::compile)
                    .collect::<Result<_, _>>()?,
            ),
            Json::Object(map) => ComputedValue::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), ComputedValue::compile(v)?)))
                    .collect::<Result<_, InterpolationError>>()?,
            ),
            other => ComputedValue::Literal(other.clone()),
        })
    }

    pub fn evaluate(&self, scope: &Scope<'_>) -> Result<Json, ExprError> {
        Ok(match self {
            ComputedValue::Literal(v) => v.clone(),
            ComputedValue::Expression(e) => e.evaluate(scope)?,
            ComputedValue::Interpolated(parts) => {
                let mut text = String::new();
                for part in parts {
                    match part {
                        Part::Text(t) => text.push_str(t),
                        Part::Expression(e) => match e.evaluate(scope)? {
                            Json::String(s) => text.push_str(&s),
                            Json::Null => {}
                            other => text.push_str(&other.to_string()),
                        },
                    }
                }
                Json::String(text)
            }
            ComputedValue::Array(items) => Json::Array(
                items
                    .iter()
                    .map(|i| i.evaluate(scope))
                    .collect::<Result<_, _>>()?,
            ),
            ComputedValue::Object(entries) => Json::Object(
                entries
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), v.evaluate(scope)?)))
                    .collect::<Result<_, ExprError>>()?,
            ),
        })
    }

    /// Every expression inside, for `kontor check`'s reference analysis.
    pub fn expressions(&self) -> Vec<&Expression> {
        let mut out = Vec::new();
        self.collect(&mut out);
        out
    }

    fn collect<'a>(&'a self, out: &mut Vec<&'a Expression>) {
        match self {
            ComputedValue::Literal(_) => {}
            ComputedValue::Expression(e) => out.push(e),
            ComputedValue::Interpolated(parts) => {
                out.extend(parts.iter().filter_map(|p| match p {
                    Part::Expression(e) => Some(e),
                    Part::Text(_) => None,
                }))
            }
            ComputedValue::Array(items) => items.iter().for_each(|i| i.collect(out)),
            ComputedValue::Object(entries) => entries.iter().for_each(|(_, v)| v.collect(out)),
        }
    }
}

fn compile_string(s: &str) -> Result<ComputedValue, InterpolationError> {
    let mut parts = Vec::new();
    let mut rest = s;
    let mut consumed = 0;
    while let Some(start) = rest.find("${") {
        if start > 0 {
            parts.push(Part::Text(rest[..start].to_string()));
        }
        let body_start = start + 2;
        let Some(len) = expression_length(&rest[body_start..]) else {
            return Err(InterpolationError {
                offset: consumed + start,
                error: ExprError::Syntax {
                    message: "`${` is never closed by a matching `}`".into(),
                    line: 1,
                    column: 1,
                },
            });
        };
        let body = &rest[body_start..body_start + len];
        let expression = Expression::compile(body.trim()).map_err(|error| InterpolationError {
            offset: consumed + start,
            error,
        })?;
        parts.push(Part::Expression(expression));
        let end = body_start + len + 1;
        consumed += end;
        rest = &rest[end..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_string()));
    }
    Ok(match parts.len() {
        0 => ComputedValue::Literal(Json::String(String::new())),
        1 => match parts.pop() {
            Some(Part::Expression(e)) => ComputedValue::Expression(e),
            _ => ComputedValue::Literal(Json::String(s.to_string())),
        },
        _ => ComputedValue::Interpolated(parts),
    })
}

/// Length of the expression up to its closing `}`, skipping braces in nested maps and
/// string literals.
fn expression_length(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '{' => depth += 1,
            '}' if depth == 0 => return Some(i),
            '}' => depth -= 1,
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::Calendars;
    use serde_json::json;

    fn eval(value: Json) -> Json {
        let cals = Calendars::new();
        let now = chrono::Utc::now();
        let scope = Scope::new(now, &cals).with("input", json!({"name": "Jürgen", "n": 3}));
        ComputedValue::compile(&value)
            .unwrap()
            .evaluate(&scope)
            .unwrap()
    }

    #[test]
    fn whole_expression_keeps_its_type() {
        assert_eq!(eval(json!("${input.n * 2}")), json!(6));
        assert_eq!(eval(json!("${ {'a': [1, 2]} }")), json!({"a": [1, 2]}));
    }

    #[test]
    fn interpolates_text() {
        assert_eq!(
            eval(json!("Hallo ${input.name}, ${input.n}x")),
            json!("Hallo Jürgen, 3x")
        );
        assert_eq!(eval(json!("plain text")), json!("plain text"));
        assert_eq!(
            eval(json!({"a": ["${input.n}", true]})),
            json!({"a": [3, true]})
        );
    }

    #[test]
    fn reports_unclosed_and_bad_expressions() {
        assert!(ComputedValue::compile(&json!("x ${input.n")).is_err());
        let err = ComputedValue::compile(&json!("ab ${input.n >}")).unwrap_err();
        assert_eq!(err.offset, 3);
    }
}
