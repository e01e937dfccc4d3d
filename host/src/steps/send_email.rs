//! `send_email`: queues an email in the outbox, committed with the step; a dispatcher
//! renders the template and sends it later, after checking suppressions and consent for
//! its `purpose`.
//!
//! ```yaml
//! - id: notify
//!   send_email:
//!     template: recall-notice
//!     to: ${input.email}
//!     locale: ${input.language}
//!     data: {customer: "${input.name}"}
//!     purpose: safety
//! ```
//!
//! `kontor check` checks the channel against `kontor.toml`, the template against
//! `workflows/templates/`, and that `data` passes every variable the template uses (in
//! every locale and branch).

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::{Value as Json, json};
use serde_saphyr::Spanned;

use super::{Flow, StepAction, StepError, StepRun, StepSite};
use crate::diagnostics::closest;
use crate::run::{Effect, OutgoingEmail};
use crate::workflow::ComputedValue;
use crate::workflow::compile::Compiler;
use crate::workflow::compile::references::Expressions;
use crate::workflow::source::{ValueSource, ValuesSource};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendEmailSource {
    /// A channel of `kontor.toml` (`[channel.NAME]`); default `default`.
    #[serde(default)]
    pub channel: Option<Spanned<String>>,
    /// A folder in `workflows/templates/`.
    pub template: Spanned<String>,
    /// The recipient's address.
    pub to: ValueSource,
    /// The recipient's display name.
    #[serde(default)]
    pub name: Option<ValueSource>,
    /// `de`, `en`, ...; default: the template's fallback locale.
    #[serde(default)]
    pub locale: Option<ValueSource>,
    /// What the template sees.
    #[serde(default)]
    pub data: Option<Spanned<ValuesSource>>,
    /// Why the mail is sent: `marketing`, `service`, `safety`, `transactional`, ...
    pub purpose: Spanned<String>,
    /// Groups messages for reports; default: the workflow's name.
    #[serde(default)]
    pub campaign: Option<ValueSource>,
}

/// A `send_email` step, compiled.
#[derive(Debug)]
pub struct SendEmail {
    pub channel: String,
    pub template: String,
    pub to: ComputedValue,
    pub name: Option<ComputedValue>,
    pub locale: Option<ComputedValue>,
    pub data: ComputedValue,
    pub purpose: String,
    pub campaign: Option<ComputedValue>,
}

impl StepAction for SendEmail {
    type Source = SendEmailSource;

    fn compile(
        email: &Spanned<SendEmailSource>,
        site: &StepSite<'_>,
        compiler: &mut Compiler<'_>,
    ) -> Option<Self> {
        let e = &email.value;
        let channel = e
            .channel
            .as_ref()
            .map(|c| c.value.clone())
            .unwrap_or_else(|| "default".to_string());
        check_channel(email, &channel, compiler);
        let purpose = &e.purpose.value;
        if purpose.is_empty()
            || !purpose
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            let d = compiler
                .at
                .at(&e.purpose, format!("`{purpose}` is not a purpose"))
                .with_hint(
                    "a purpose is a lowercase word: marketing, service, safety, transactional, ...",
                );
            compiler.error(d);
        }
        let data = match &e.data {
            Some(values) => compiler.values(&values.value),
            None => Some(ComputedValue::Object(Vec::new())),
        };
        check_template(email, &site.step.value.id.value, compiler);
        let optional = |compiler: &mut Compiler<'_>, v: &Option<ValueSource>| match v {
            Some(v) => compiler.value(v).map(Some),
            None => Some(None),
        };
        let to = compiler.value(&e.to);
        let name = optional(compiler, &e.name);
        let locale = optional(compiler, &e.locale);
        let campaign = optional(compiler, &e.campaign);
        Some(SendEmail {
            channel,
            template: e.template.value.clone(),
            to: to?,
            name: name?,
            locale: locale?,
            data: data?,
            purpose: purpose.clone(),
            campaign: campaign?,
        })
    }

    fn expressions(source: &SendEmailSource, found: &mut Expressions) {
        [
            Some(&source.to),
            source.name.as_ref(),
            source.locale.as_ref(),
            source.campaign.as_ref(),
        ]
        .into_iter()
        .flatten()
        .for_each(|v| found.value(v));
        if let Some(data) = &source.data {
            found.values(&data.value);
        }
    }

    fn execute(&self, run: &mut StepRun<'_>) -> Result<Flow, StepError> {
        let scope = run.scope();
        let text = |value: Json, field: &str| match value {
            Json::String(s) => Ok(s),
            Json::Null => Ok(String::new()),
            Json::Number(n) => Ok(n.to_string()),
            other => Err(StepError::fatal(format!(
                "send_email `{field}` must be text, not {other}"
            ))),
        };
        let to = text(self.to.evaluate(&scope)?, "to")?.trim().to_string();
        crate::run::parse_address(&to)
            .map_err(|e| StepError::fatal(format!("send_email `to`: {e}")))?;
        let optional = |v: &Option<ComputedValue>, field: &str| match v {
            Some(v) => text(v.evaluate(&scope)?, field).map(|s| Some(s).filter(|s| !s.is_empty())),
            None => Ok(None),
        };
        let name = optional(&self.name, "name")?;
        if let Some(name) = &name {
            crate::run::check_header_value(name)
                .map_err(|problem| StepError::fatal(format!("send_email `name` {problem}")))?;
        }
        let locale = optional(&self.locale, "locale")?;
        let campaign =
            optional(&self.campaign, "campaign")?.unwrap_or_else(|| run.run.workflow.clone());
        let data = self.data.evaluate(&scope)?;
        // Rendered once here, as the dispatcher will: a message that can never be sent
        // (a subject with a line break, a template that fails on this data) fails the
        // step, which the run can branch on, instead of failing later at dispatch while
        // the run believes the message went out.
        if let Err(e) =
            run.catalog
                .templates
                .render(&self.template, locale.as_deref().unwrap_or(""), &data)
        {
            return Err(StepError::fatal(format!("send_email: {e}")));
        }
        let id = uuid::Uuid::now_v7().to_string();
        let output = json!({
            "message": id, "channel": self.channel, "template": self.template,
            "to": to, "purpose": self.purpose, "campaign": campaign,
        });
        let key = run.effect_key();
        run.outcome.effects.push((
            key,
            Effect::Email(Box::new(OutgoingEmail {
                id,
                workflow: run.run.workflow.clone(),
                campaign,
                channel: self.channel.clone(),
                template: self.template.clone(),
                locale,
                to,
                name,
                purpose: self.purpose.clone(),
                data,
            })),
        ));
        Ok(Flow::Continue {
            input: None,
            output,
            next: run.step.next,
        })
    }
}

/// The channel must be one of the configuration's (when the check knows them).
fn check_channel(email: &Spanned<SendEmailSource>, channel: &str, compiler: &mut Compiler<'_>) {
    let Some(channels) = compiler.environment.channels else {
        return;
    };
    if channels.contains(channel) {
        return;
    }
    let message = format!("there is no email channel `{channel}`");
    let mut d = match &email.value.channel {
        Some(c) => compiler.at.at(c, message),
        None => compiler.at.at(email, message),
    };
    d = match closest(channel, channels.iter().map(String::as_str)) {
        Some(close) => d.with_hint(format!("did you mean `{close}`?")),
        None => d.with_hint(format!(
            "configure it in kontor.toml as `[channel.{channel}]` (channels: {})",
            channels.iter().cloned().collect::<Vec<_>>().join(", ")
        )),
    };
    compiler.error(d);
}

/// The template must exist (when the check knows the templates), and `data` must pass
/// every variable it uses.
fn check_template(email: &Spanned<SendEmailSource>, step_id: &str, compiler: &mut Compiler<'_>) {
    let Some(templates) = compiler.environment.templates else {
        return;
    };
    let e = &email.value;
    let Some(template) = templates.get(&e.template.value) else {
        let mut d = compiler.at.at(
            &e.template,
            format!("there is no email template `{}`", e.template.value),
        );
        d = match closest(&e.template.value, templates.names()) {
            Some(close) => d.with_hint(format!("did you mean `{close}`?")),
            None => d.with_hint(format!(
                "create workflows/templates/{}/ with template.yaml and de.subject.hbs, de.text.hbs, de.html.hbs",
                e.template.value
            )),
        };
        compiler.error(d);
        return;
    };
    let passed: BTreeSet<&str> = e
        .data
        .as_ref()
        .map(|d| d.value.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let mut reported = BTreeSet::new();
    for usage in &template.variables {
        let root = usage.path.split(['.', '/']).next().unwrap_or_default();
        if root == "locale" || passed.contains(root) || !reported.insert(root) {
            continue;
        }
        let message = format!(
            "template `{}` uses `{}` ({}:{}:{}), which step `{step_id}` does not pass in `data`",
            template.name,
            usage.path,
            usage.file.display(),
            usage.line,
            usage.column
        );
        let d = match &e.data {
            Some(values) => compiler.at.at(values, message),
            None => compiler.at.at(email, message),
        }
        .with_hint(format!("add `{root}: ...` under `data:`"));
        compiler.error(d);
    }
}
