//! From [`WorkflowFile`] to [`Workflow`]: every check `kontor check` makes.
//!
//! Problems are collected, not returned at the first one, so a user fixes a file in one
//! pass. Each carries the file, line and column of the offending value and, where we can
//! guess the intent, a hint ("did you mean `qualify`?").
//!
//! | file | what it checks |
//! |---|---|
//! | `file.rs` | the file as a whole: its name, input schema, step ids, which steps can run, the trigger |
//! | `step.rs` | one step's shared keys (`next`, `retry`, `input`) around its action, which [`crate::steps`] compiles |
//! | `fields.rs` | what the fields of every action compile to: step targets, CEL, `${…}` values, durations |
//! | [`references`] | which steps and variables each expression names, and whether they can exist when it runs |
//! | `locator.rs` | turns a value's span into `file:line:column` |

mod fields;
mod file;
mod locator;
pub mod references;
mod step;

use crate::diagnostics::yaml_error;
use std::collections::BTreeSet;
use std::path::Path;

use super::Workflow;
use super::source::WorkflowFile;
use crate::diagnostics::Diagnostic;
use crate::expr::Calendars;
pub use locator::Locator;

/// What a workflow may refer to outside itself.
pub struct Environment<'a> {
    pub calendars: &'a Calendars,
    /// Names of all workflow files in the catalog (valid or not).
    pub workflow_names: &'a BTreeSet<String>,
    /// The plugins found; `None` skips plugin checks (a stored version recompiled).
    pub plugins: Option<&'a super::PluginIndex>,
    /// Email channel names from the configuration; `None` skips the check.
    pub channels: Option<&'a BTreeSet<String>>,
    /// The email templates; `None` skips template checks (a stored version recompiled).
    pub templates: Option<&'a crate::templates::TemplateSet>,
    /// The territory files; `None` skips the check that `route` steps name one.
    pub territories: Option<&'a crate::crm::territory::Territories>,
}

/// Parses and compiles one workflow file.
pub fn compile_workflow(
    path: &Path,
    text: &str,
    environment: &Environment<'_>,
) -> Result<Workflow, Vec<Diagnostic>> {
    let file: WorkflowFile = serde_saphyr::from_str_with_options(text, kontor_time::yaml_options())
        .map_err(|e| vec![yaml_error(path, &e)])?;
    let mut compiler = Compiler {
        at: Locator::new(path, text),
        environment,
        diagnostics: Vec::new(),
    };
    let workflow = compiler.workflow(file, text);
    if compiler.diagnostics.is_empty() {
        workflow.ok_or_else(Vec::new)
    } else {
        compiler
            .diagnostics
            .sort_by_key(|d| (d.line, d.column, d.message.clone()));
        compiler.diagnostics.dedup();
        Err(compiler.diagnostics)
    }
}

/// Compiles one file: collects its diagnostics while the file-level checks, the steps'
/// checks ([`crate::steps`]) and the reference checks run over it.
pub struct Compiler<'a> {
    /// Where in the file a value is.
    pub at: Locator<'a>,
    /// What the workflow may refer to outside itself.
    pub environment: &'a Environment<'a>,
    diagnostics: Vec<Diagnostic>,
}

impl Compiler<'_> {
    /// Reports a problem; compiling goes on, so one pass finds them all.
    pub fn error(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }
}
