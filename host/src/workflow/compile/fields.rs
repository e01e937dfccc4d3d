//! What the fields of every action compile to, each problem reported where it is: the
//! steps they jump to, CEL expressions, `${…}` values and durations.

use std::collections::HashMap;

use serde_saphyr::Spanned;

use super::Compiler;
use crate::diagnostics::closest;
use crate::expr::Expression;
use crate::workflow::ComputedValue;
use crate::workflow::source::{ValueSource, ValuesSource};

impl Compiler<'_> {
    /// The position of the step `target` names.
    pub fn target(
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

    /// A positive duration such as `8h` or `1d 4h`.
    pub fn duration(&mut self, text: &Spanned<String>) -> Option<chrono::Duration> {
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

    /// A bare CEL expression (a condition, a key, an `until`).
    pub fn expression(&mut self, text: &Spanned<String>) -> Option<Expression> {
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

    /// A value that may contain `${…}` parts.
    pub fn value(&mut self, value: &ValueSource) -> Option<ComputedValue> {
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

    /// A map of computed values, as one object value.
    pub fn values(&mut self, values: &ValuesSource) -> Option<ComputedValue> {
        Some(ComputedValue::Object(self.values_ordered(values)?))
    }

    /// A map of computed values, each compiled, in the order written.
    pub fn values_ordered(
        &mut self,
        values: &ValuesSource,
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
}
