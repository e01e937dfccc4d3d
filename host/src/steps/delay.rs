//! A point in time relative to now, as `wait`, `wait_for`'s `timeout` and `timer` write
//! it: a `duration` (working time when a `calendar` is named) or `until` an expression's
//! time.

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{StepError, StepRun};
use crate::diagnostics::closest;
use crate::expr::{Expression, Scope};
use crate::workflow::compile::Compiler;

/// How long to wait: a `duration` (business time if a `calendar` is named) or `until` a time.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelaySource {
    #[serde(default)]
    pub duration: Option<Spanned<String>>,
    #[serde(default)]
    pub calendar: Option<Spanned<String>>,
    #[serde(default)]
    pub until: Option<Spanned<String>>,
}

/// A point in time relative to now, compiled.
#[derive(Debug, Clone)]
pub enum Delay {
    /// Plain elapsed time.
    Duration(Duration),
    /// Working time on a named business calendar.
    Business {
        duration: Duration,
        calendar: String,
    },
    /// An absolute time computed by an expression.
    Until(Expression),
}

impl Delay {
    /// Compiles a [`DelaySource`].
    pub fn compile(delay: &Spanned<DelaySource>, compiler: &mut Compiler<'_>) -> Option<Delay> {
        let d = &delay.value;
        Delay::compile_parts(delay, &d.duration, &d.calendar, &d.until, compiler)
    }

    /// Compiles a delay whose keys sit in another map (a `timer`'s); diagnostics about
    /// the whole point at `at`.
    pub fn compile_parts<T>(
        at: &Spanned<T>,
        duration: &Option<Spanned<String>>,
        calendar: &Option<Spanned<String>>,
        until: &Option<Spanned<String>>,
        compiler: &mut Compiler<'_>,
    ) -> Option<Delay> {
        match (duration, until) {
            (Some(_), Some(u)) => {
                let d = compiler
                    .at
                    .at(u, "give either `duration` or `until`, not both")
                    .with_hint(
                        "`duration: 8h` waits that long; `until: <expression>` waits for a time",
                    );
                compiler.error(d);
                None
            }
            (None, None) => {
                let d = compiler
                    .at
                    .at(at, "a wait needs `duration` or `until`")
                    .with_hint("e.g. `duration: 2d`, or `duration: 8h` with `calendar: office` for business hours");
                compiler.error(d);
                None
            }
            (None, Some(until)) => {
                if let Some(c) = calendar {
                    let d = compiler
                        .at
                        .at(c, "`calendar` applies to `duration`, not `until`")
                        .with_hint("use `business_add(calendar, ts, '8h')` inside `until` instead");
                    compiler.error(d);
                }
                Some(Delay::Until(compiler.expression(until)?))
            }
            (Some(duration), None) => {
                let length = compiler.duration(duration)?;
                match calendar {
                    None => Some(Delay::Duration(length)),
                    Some(c) => {
                        if !compiler.environment.calendars.contains_key(&c.value) {
                            let mut d = compiler
                                .at
                                .at(c, format!("there is no calendar `{}`", c.value));
                            let names: Vec<&str> = compiler
                                .environment
                                .calendars
                                .keys()
                                .map(String::as_str)
                                .collect();
                            d = match closest(&c.value, names.iter().copied()) {
                                Some(close) => d.with_hint(format!("did you mean `{close}`?")),
                                None => d.with_hint("calendars are files in `workflows/calendars/`, named without `.yaml`"),
                            };
                            compiler.error(d);
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

    /// When the delay is over, counted from the run's now.
    pub fn due(&self, run: &StepRun<'_>, scope: &Scope<'_>) -> Result<DateTime<Utc>, StepError> {
        match self {
            Delay::Duration(d) => Ok(run.now + *d),
            Delay::Business { duration, calendar } => {
                let calendar = run.calendars.get(calendar).ok_or_else(|| {
                    StepError::fatal(format!("calendar `{calendar}` is not loaded"))
                })?;
                calendar
                    .add_business_duration(run.now, *duration)
                    .map_err(|e| StepError::fatal(e.to_string()))
            }
            Delay::Until(expression) => Ok(expression.evaluate_time(scope)?),
        }
    }
}
