//! The catalog: every workflow and calendar under one `workflows/` folder, loaded together.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::Workflow;
use super::compile::{Environment, compile_workflow};
use crate::diagnostics::Diagnostic;
use crate::expr::Calendars;

/// One workflow file: compiled, or the reasons it is not.
#[derive(Debug, Clone)]
pub enum WorkflowEntry {
    Valid(Arc<Workflow>),
    Invalid {
        file: PathBuf,
        diagnostics: Vec<Diagnostic>,
    },
}

/// What was found under a `workflows/` folder.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub root: PathBuf,
    pub workflows: BTreeMap<String, WorkflowEntry>,
    pub calendars: Arc<Calendars>,
    /// Email templates from `templates/`.
    pub templates: Arc<crate::templates::TemplateSet>,
    /// Problems with calendars and other shared files (workflow problems live in their
    /// entries).
    pub diagnostics: Vec<Diagnostic>,
}

/// A summary fit for the API's workflow listing.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkflowSummary {
    pub name: String,
    #[schema(value_type = String)]
    pub file: PathBuf,
    pub valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub input_schema: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<String>,
}

impl Catalog {
    /// Loads everything under `root`. Never fails: unreadable or invalid files become
    /// diagnostics. A missing folder is one diagnostic. With `plugins`, every `plugin`
    /// step must name a plugin found there that loads.
    pub fn load(root: &Path, plugins: Option<&super::PluginIndex>) -> Catalog {
        Catalog::load_with(root, plugins, None)
    }

    /// [`Catalog::load`], also checking that `send_email` steps name one of `channels`.
    pub fn load_with(
        root: &Path,
        plugins: Option<&super::PluginIndex>,
        channels: Option<&BTreeSet<String>>,
    ) -> Catalog {
        let mut catalog = Catalog {
            root: root.to_path_buf(),
            ..Catalog::default()
        };
        if !root.is_dir() {
            catalog.diagnostics.push(
                Diagnostic::new(root, 0, 0, "the workflows folder does not exist")
                    .with_hint("create it, or point `workflows_dir` in kontor.toml at it"),
            );
            return catalog;
        }

        let mut calendars = Calendars::new();
        for path in yaml_files(&root.join("calendars")) {
            let name = stem(&path);
            match std::fs::read_to_string(&path) {
                Err(e) => catalog.diagnostics.push(Diagnostic::new(
                    &path,
                    0,
                    0,
                    format!("cannot read: {e}"),
                )),
                Ok(text) => match kontor_time::Calendar::from_yaml(&name, &text) {
                    Ok(calendar) => {
                        calendars.insert(name, Arc::new(calendar));
                    }
                    Err(e) => {
                        let mut d = Diagnostic::new(&path, e.line, e.column, e.message.clone());
                        if let Some(h) = &e.hint {
                            d = d.with_hint(h.clone());
                        }
                        catalog.diagnostics.push(d);
                    }
                },
            }
        }
        catalog.calendars = Arc::new(calendars);

        let templates = crate::templates::TemplateSet::load(&root.join("templates"));
        catalog
            .diagnostics
            .extend(templates.diagnostics.iter().cloned());
        catalog.templates = Arc::new(templates);

        let files = yaml_files(root);
        let names: BTreeSet<String> = files.iter().map(|p| stem(p)).collect();
        let environment = Environment {
            calendars: &catalog.calendars,
            workflow_names: &names,
            plugins,
            channels,
            templates: Some(catalog.templates.as_ref()),
        };
        for path in files {
            let name = stem(&path);
            let entry = match std::fs::read_to_string(&path) {
                Err(e) => WorkflowEntry::Invalid {
                    diagnostics: vec![Diagnostic::new(&path, 0, 0, format!("cannot read: {e}"))],
                    file: path,
                },
                Ok(text) => match compile_workflow(&path, &text, &environment) {
                    Ok(workflow) => WorkflowEntry::Valid(Arc::new(workflow)),
                    Err(diagnostics) => WorkflowEntry::Invalid {
                        file: path,
                        diagnostics,
                    },
                },
            };
            catalog.workflows.insert(name, entry);
        }
        catalog
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Workflow>> {
        match self.workflows.get(name) {
            Some(WorkflowEntry::Valid(w)) => Some(w),
            _ => None,
        }
    }

    pub fn valid(&self) -> impl Iterator<Item = &Arc<Workflow>> {
        self.workflows.values().filter_map(|e| match e {
            WorkflowEntry::Valid(w) => Some(w),
            WorkflowEntry::Invalid { .. } => None,
        })
    }

    /// Every problem found, calendars first, then workflows by name.
    pub fn all_diagnostics(&self) -> Vec<Diagnostic> {
        let mut all = self.diagnostics.clone();
        for entry in self.workflows.values() {
            if let WorkflowEntry::Invalid { diagnostics, .. } = entry {
                all.extend(diagnostics.iter().cloned());
            }
        }
        all
    }

    pub fn summaries(&self) -> Vec<WorkflowSummary> {
        self.workflows
            .iter()
            .map(|(name, entry)| match entry {
                WorkflowEntry::Valid(w) => WorkflowSummary {
                    name: name.clone(),
                    file: w.file.clone(),
                    valid: true,
                    version: Some(w.version.clone()),
                    description: w.description.clone(),
                    trigger: Some(match &w.trigger {
                        super::Trigger::Api => "api".to_string(),
                        super::Trigger::Event(e) => format!("event {e}"),
                        super::Trigger::Cron {
                            expression,
                            schedule,
                            ..
                        } => {
                            format!("cron {expression} ({})", schedule.timezone())
                        }
                    }),
                    input_schema: w.input_schema_json.clone(),
                    diagnostics: Vec::new(),
                },
                WorkflowEntry::Invalid { file, diagnostics } => WorkflowSummary {
                    name: name.clone(),
                    file: file.clone(),
                    valid: false,
                    version: None,
                    description: None,
                    trigger: None,
                    input_schema: None,
                    diagnostics: diagnostics.iter().map(ToString::to_string).collect(),
                },
            })
            .collect()
    }
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string()
}

/// `*.yaml` and `*.yml` files directly in `dir`, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
        })
        .collect();
    files.sort();
    files
}
