//! `record`: writes (inserts or replaces) a record Kontor owns — a lead assignment, a
//! ticket's escalation level — as an effect committed with the step.
//!
//! ```yaml
//! - id: remember_owner
//!   record:
//!     collection: lead_assignments
//!     key: input.lead_id
//!     data: {team: "${vars.team}"}
//! ```

use serde::Deserialize;
use serde_json::json;
use serde_saphyr::Spanned;

use super::execution::key_text;
use super::{Flow, StepAction, StepError, StepRun, StepSite};
use crate::expr::Expression;
use crate::run::Effect;
use crate::workflow::ComputedValue;
use crate::workflow::compile::Compiler;
use crate::workflow::compile::references::Expressions;
use crate::workflow::source::ValuesSource;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordSource {
    pub collection: Spanned<String>,
    pub key: Spanned<String>,
    pub data: ValuesSource,
}

#[derive(Debug)]
pub struct Record {
    pub collection: String,
    pub key: Expression,
    pub data: ComputedValue,
}

impl StepAction for Record {
    type Source = RecordSource;

    fn compile(
        record: &Spanned<RecordSource>,
        _site: &StepSite<'_>,
        compiler: &mut Compiler<'_>,
    ) -> Option<Self> {
        let r = &record.value;
        Some(Record {
            collection: r.collection.value.clone(),
            key: compiler.expression(&r.key)?,
            data: compiler.values(&r.data)?,
        })
    }

    fn expressions(source: &RecordSource, found: &mut Expressions) {
        found.condition(&source.key);
        found.values(&source.data);
    }

    fn execute(&self, run: &mut StepRun<'_>) -> Result<Flow, StepError> {
        let scope = run.scope();
        let key = key_text(self.key.evaluate(&scope)?);
        let data = self.data.evaluate(&scope)?;
        let collection = &self.collection;
        run.outcome.effects.push((
            run.effect_key(),
            Effect::Record {
                collection: collection.clone(),
                key: key.clone(),
                data: data.clone(),
            },
        ));
        Ok(Flow::Continue {
            input: None,
            output: json!({"collection": collection, "key": key, "data": data}),
            next: run.step.next,
        })
    }
}
