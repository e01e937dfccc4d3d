//! The catalog: every workflow, calendar, template and territory file under one
//! `workflows/` folder, loaded together.

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
    /// Teams and routing rules from `territories/`.
    pub territories: Arc<crate::crm::territory::Territories>,
    /// Service tickets' SLA policies from `sla/`.
    pub sla: Arc<crate::service::sla::SlaPolicies>,
    /// Problems with calendars and other shared files (workflow problems live in their
    /// entries).
    pub diagnostics: Vec<Diagnostic>,
    /// Files or folders that exist but could not be read (out of file descriptors, say):
    /// such a catalog is incomplete, and a running server keeps its last good one.
    pub unreadable: Vec<String>,
}

/// A summary fit for the API's workflow listing.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkflowSummary {
    pub name: String,
    #[schema(value_type = String)]
    pub file: PathBuf,
    pub valid: bool,
    /// What the workflow is about (`leads`, `tickets`, `campaigns`): who sees its runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
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
    /// Problems beyond the listed ones (`kontor check` shows them all).
    #[serde(skip_serializing_if = "is_zero")]
    pub more_diagnostics: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Problems listed per invalid workflow in the API's listing.
pub const LISTED_DIAGNOSTICS: usize = 20;

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
        Catalog::load_within(root, plugins, channels, DEFAULT_MAX_FILE_SIZE)
    }

    /// [`Catalog::load_with`], refusing workflow and calendar files larger than
    /// `max_file_size` bytes (unread: a 50 MB file once made a 52 MB workflow list).
    pub fn load_within(
        root: &Path,
        plugins: Option<&super::PluginIndex>,
        channels: Option<&BTreeSet<String>>,
        max_file_size: u64,
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
        for (path, text) in catalog.read_shared(&root.join("calendars"), max_file_size) {
            let name = stem(&path);
            match kontor_time::Calendar::from_yaml(&name, &text) {
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
            }
        }
        catalog.calendars = Arc::new(calendars);

        let territories = catalog.load_territories(&root.join("territories"), max_file_size);
        catalog
            .diagnostics
            .extend(territories.diagnostics.iter().cloned());
        catalog.territories = Arc::new(territories);

        let templates = crate::templates::TemplateSet::load(&root.join("templates"));
        catalog
            .diagnostics
            .extend(templates.diagnostics.iter().cloned());
        catalog
            .unreadable
            .extend(templates.unreadable.iter().cloned());
        catalog.templates = Arc::new(templates);

        let calendar_names = catalog.calendars.keys().cloned().collect();
        let template_names = catalog.templates.names().map(str::to_string).collect();
        let sla_files = catalog
            .read_shared(&root.join("sla"), max_file_size)
            .into_iter()
            .map(|(path, text)| {
                crate::service::sla::parse_file(&path, &text, &calendar_names, &template_names)
            })
            .collect();
        let sla = crate::service::sla::SlaPolicies::assemble(sla_files);
        catalog.diagnostics.extend(sla.diagnostics.iter().cloned());
        catalog.sla = Arc::new(sla);

        let files = yaml_files(root, &mut catalog.unreadable);
        let names: BTreeSet<String> = files.iter().map(|p| stem(p)).collect();
        let environment = Environment {
            calendars: &catalog.calendars,
            workflow_names: &names,
            plugins,
            channels,
            templates: Some(catalog.templates.as_ref()),
            territories: Some(catalog.territories.as_ref()),
        };
        for path in files {
            let name = stem(&path);
            let entry = match read_within(&path, max_file_size) {
                Err(ReadError::Refused(d)) => WorkflowEntry::Invalid {
                    diagnostics: vec![d],
                    file: path,
                },
                Err(ReadError::Io(e)) => {
                    catalog.unreadable.push(format!("{}: {e}", path.display()));
                    WorkflowEntry::Invalid {
                        diagnostics: vec![Diagnostic::new(
                            &path,
                            0,
                            0,
                            format!("cannot read: {e}"),
                        )],
                        file: path,
                    }
                }
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
        catalog.refuse_start_cycles();
        catalog
    }

    /// The territory files of `dir`, checked against this catalog's calendars (the
    /// catalog's own `territories/`, or another folder: `kontor simulate --territories`).
    pub fn load_territories(
        &mut self,
        dir: &Path,
        max_file_size: u64,
    ) -> crate::crm::territory::Territories {
        let calendar_names = self.calendars.keys().cloned().collect();
        let files = self
            .read_shared(dir, max_file_size)
            .into_iter()
            .map(|(path, text)| crate::crm::territory::parse_file(&path, &text, &calendar_names))
            .collect();
        crate::crm::territory::Territories::assemble(files)
    }

    /// The YAML files of a shared folder (`calendars/`, `territories/`, `sla/`) with their text;
    /// files too large or unreadable become diagnostics.
    fn read_shared(&mut self, dir: &Path, max_file_size: u64) -> Vec<(PathBuf, String)> {
        let mut read = Vec::new();
        for path in yaml_files(dir, &mut self.unreadable) {
            match read_within(&path, max_file_size) {
                Err(ReadError::Refused(d)) => self.diagnostics.push(d),
                Err(ReadError::Io(e)) => {
                    self.unreadable.push(format!("{}: {e}", path.display()));
                    self.diagnostics
                        .push(Diagnostic::new(&path, 0, 0, format!("cannot read: {e}")))
                }
                Ok(text) => read.push((path, text)),
            }
        }
        read
    }

    /// Workflows that start themselves, directly or through others, would grow without
    /// end (one such file made 63,000 runs in 20 s): each workflow on a circle of `start`
    /// steps becomes invalid, with the circle named at its `start` step.
    fn refuse_start_cycles(&mut self) {
        // Per workflow, the workflows its `start` steps start, with where each is named.
        let starts: BTreeMap<String, Vec<_>> = self
            .valid()
            .map(|w| {
                let children = w
                    .steps
                    .iter()
                    .filter_map(|step| match &step.action {
                        crate::steps::Action::Start(start) => {
                            Some((start.workflow.clone(), start.workflow_at))
                        }
                        _ => None,
                    })
                    .collect();
                (w.name.clone(), children)
            })
            .collect();
        let edges = starts
            .iter()
            .map(|(name, children)| {
                (
                    name.clone(),
                    children.iter().map(|(c, _)| c.clone()).collect(),
                )
            })
            .collect();
        for (name, circle) in crate::diagnostics::circles(&edges) {
            let Some(WorkflowEntry::Valid(workflow)) = self.workflows.get(&name) else {
                continue;
            };
            // The `start` step that takes the first step of the circle.
            let (line, column) = starts[&name]
                .iter()
                .find(|(child, _)| *child == circle[1])
                .map(|(_, at)| *at)
                .unwrap_or((0, 0));
            let file = workflow.file.clone();
            let diagnostic = Diagnostic::new(
                &file,
                line,
                column,
                format!(
                    "workflows start each other in a circle: {}",
                    circle.join(" → ")
                ),
            )
            .with_hint("a run may not start its own workflow again, not even through others; loop with `next` inside one workflow instead");
            self.workflows.insert(
                name,
                WorkflowEntry::Invalid {
                    file,
                    diagnostics: vec![diagnostic],
                },
            );
        }
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

    /// At most `limit` summaries of the workflows named after `cursor`, in name order;
    /// an invalid one lists its first [`LISTED_DIAGNOSTICS`] problems and counts the rest.
    pub fn summaries_after(
        &self,
        cursor: Option<&str>,
        limit: usize,
        shown: impl Fn(Option<crate::access::Domain>) -> bool,
    ) -> Vec<WorkflowSummary> {
        use std::ops::Bound;
        let from = match cursor {
            Some(name) => Bound::Excluded(name.to_string()),
            None => Bound::Unbounded,
        };
        self.workflows
            .range((from, Bound::Unbounded))
            .filter(|(_, entry)| match entry {
                WorkflowEntry::Valid(w) => shown(w.domain),
                WorkflowEntry::Invalid { .. } => true,
            })
            .take(limit)
            .map(|(name, entry)| match entry {
                WorkflowEntry::Valid(w) => WorkflowSummary {
                    name: name.clone(),
                    file: w.file.clone(),
                    valid: true,
                    domain: w.domain.map(|d| d.as_str().to_string()),
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
                    more_diagnostics: 0,
                },
                WorkflowEntry::Invalid { file, diagnostics } => WorkflowSummary {
                    name: name.clone(),
                    file: file.clone(),
                    valid: false,
                    domain: None,
                    version: None,
                    description: None,
                    trigger: None,
                    input_schema: None,
                    diagnostics: diagnostics
                        .iter()
                        .take(LISTED_DIAGNOSTICS)
                        .map(ToString::to_string)
                        .collect(),
                    more_diagnostics: diagnostics.len().saturating_sub(LISTED_DIAGNOSTICS),
                },
            })
            .collect()
    }
}

/// The largest workflow or calendar file loaded unless configured otherwise: 1 MiB, a
/// hundred times the largest shipped workflow.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 1024 * 1024;

enum ReadError {
    Refused(Diagnostic),
    Io(std::io::Error),
}

/// Reads `path` unless it is larger than `limit` bytes; never reads more than that.
fn read_within(path: &Path, limit: u64) -> Result<String, ReadError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(ReadError::Io)?;
    let size = file.metadata().map_err(ReadError::Io)?.len();
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if size > limit || bytes.len() as u64 > limit {
        return Err(ReadError::Refused(
            Diagnostic::new(
                path,
                1,
                1,
                format!(
                    "the file is {} bytes; the limit is {limit}",
                    size.max(bytes.len() as u64)
                ),
            )
            .with_hint("split it, or raise `engine.max_workflow_file` in kontor.toml"),
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        ReadError::Refused(Diagnostic::new(
            path,
            1,
            1,
            format!(
                "the file is not UTF-8 text (byte {} is not)",
                e.utf8_error().valid_up_to()
            ),
        ))
    })
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string()
}

/// `*.yaml` and `*.yml` files directly in `dir`, sorted.
/// The YAML files of `dir`; a folder that exists but cannot be read is noted in
/// `unreadable` (a missing one is simply empty).
fn yaml_files(dir: &Path, unreadable: &mut Vec<String>) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            if e.kind() != std::io::ErrorKind::NotFound {
                unreadable.push(format!("{}: {e}", dir.display()));
            }
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| match e {
            Ok(e) => Some(e.path()),
            Err(e) => {
                unreadable.push(format!("{}: {e}", dir.display()));
                None
            }
        })
        .filter(|p| {
            p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
        })
        .collect();
    files.sort();
    files
}
