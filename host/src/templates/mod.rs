//! Message templates: handlebars, one template = subject + text + HTML, per locale.
//!
//! Below both the workflow compiler (which checks that a `send_email` step names a
//! template and gives it the data it uses) and the email dispatcher (which renders at send
//! time); neither imports the other for it.
//!
//! ```text
//! workflows/templates/
//!   partials/NAME.hbs         shared pieces and layouts, used as {{> NAME}} / {{#> NAME}}
//!   recall-notice/
//!     template.yaml           description, fallback locale, sample data
//!     de.subject.hbs  de.text.hbs  de.html.hbs
//!     en.subject.hbs  en.text.hbs  en.html.hbs
//! ```
//!
//! Templates see the caller's data plus `locale`, the locale being rendered.
//!
//! The HTML part is escaped (`&`, `<`, `>`, `"`, `'`, `` ` `` and `=`); subject and text
//! are not — they are not HTML. A rendered subject containing a line break, a NUL or
//! another control character is refused (it would inject mail headers). Checking walks each template's syntax tree, so a variable
//! used only in an `{{else}}` branch is reported too, not only what one sample renders.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use handlebars::template::Template;
use handlebars::{Handlebars, no_escape};
use serde::Deserialize;
use serde_json::Value as Json;

use crate::diagnostics::Diagnostic;

mod current;
pub mod limits;
mod variables;

pub use current::CurrentTemplates;
use variables::{missing_variables, provided, used_variables};

const PARTS: [&str; 3] = ["subject", "text", "html"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateFile {
    #[serde(default)]
    description: Option<String>,
    /// Locale used when the requested one has no files (default `de`).
    #[serde(default)]
    fallback: Option<String>,
    /// Data to preview and check the template with.
    #[serde(default)]
    sample: Option<Json>,
}

/// One email template with its locales.
#[derive(Debug, Clone)]
pub struct EmailTemplate {
    pub name: String,
    pub description: Option<String>,
    pub fallback: String,
    pub sample: Json,
    pub locales: BTreeSet<String>,
    /// Every variable the template's parts read, in every locale and branch.
    pub variables: Vec<Usage>,
}

/// Where a template reads a variable.
#[derive(Debug, Clone)]
pub struct Usage {
    pub file: PathBuf,
    pub line: u32,
    pub column: u32,
    /// `customer.name`
    pub path: String,
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub locale: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("there is no email template `{0}`")]
    UnknownTemplate(String),
    #[error("template `{template}` has neither locale `{locale}` nor its fallback `{fallback}`")]
    NoLocale {
        template: String,
        locale: String,
        fallback: String,
    },
    #[error("rendering {part} of `{template}` ({locale}) failed: {message}")]
    Render {
        template: String,
        locale: String,
        part: &'static str,
        message: String,
    },
    #[error("the subject of `{template}` {problem}")]
    HeaderInjection { template: String, problem: String },
}

/// All templates under `workflows/templates/`, compiled.
pub struct TemplateSet {
    templates: BTreeMap<String, EmailTemplate>,
    html: Handlebars<'static>,
    plain: Handlebars<'static>,
    /// Variables each partial reads, with the partial's file and the partials it uses.
    partials: BTreeMap<String, PartialUsage>,
    pub diagnostics: Vec<Diagnostic>,
    /// Files that exist but could not be read (see [`crate::workflow::Catalog::unreadable`]).
    pub unreadable: Vec<String>,
}

#[derive(Debug, Clone, Default)]
struct PartialUsage {
    file: PathBuf,
    variables: Vec<(u32, u32, String)>,
    partials: Vec<String>,
}

impl std::fmt::Debug for TemplateSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemplateSet")
            .field("templates", &self.templates.keys())
            .finish()
    }
}

impl Default for TemplateSet {
    fn default() -> Self {
        let mut html = Handlebars::new();
        html.register_escape_fn(escape_html);
        let mut plain = Handlebars::new();
        plain.register_escape_fn(no_escape);
        TemplateSet {
            templates: BTreeMap::new(),
            html,
            plain,
            partials: BTreeMap::new(),
            diagnostics: Vec::new(),
            unreadable: Vec::new(),
        }
    }
}

/// Escapes for HTML text and attribute values, quoted or not.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            '`' => out.push_str("&#x60;"),
            '=' => out.push_str("&#x3D;"),
            other => out.push(other),
        }
    }
    out
}

impl TemplateSet {
    /// Loads `dir` (normally `workflows/templates`). Never fails: problems become
    /// diagnostics; a missing folder means no templates.
    pub fn load(dir: &Path) -> TemplateSet {
        let mut set = TemplateSet::default();
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::NotFound {
                    set.unreadable.push(format!("{}: {e}", dir.display()));
                }
                return set;
            }
        };
        let mut folders: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        folders.sort();
        // Partials first: templates use them.
        if let Some(partials) = folders.iter().find(|p| p.ends_with("partials")) {
            for file in files_with_suffix(partials, ".hbs") {
                let name = file_name(&file).trim_end_matches(".hbs").to_string();
                if let Some(source) = set.read(&file) {
                    if let Ok(template) = Template::compile(&source) {
                        let (variables, partials) = used_variables(&template);
                        set.partials.insert(
                            name.clone(),
                            PartialUsage {
                                file: file.clone(),
                                variables,
                                partials,
                            },
                        );
                    }
                    for registry in [&mut set.html, &mut set.plain] {
                        if let Err(e) = registry.register_partial(&name, &source) {
                            set.diagnostics.push(template_error(&file, &e));
                            break;
                        }
                    }
                }
            }
            set.refuse_partial_cycles();
        }
        for folder in folders.iter().filter(|p| !p.ends_with("partials")) {
            set.load_template(folder);
        }
        set
    }

    /// Reads a template or partial file, refusing one that breaks the [`limits`].
    fn read(&mut self, file: &Path) -> Option<String> {
        // A file too large is not read at all.
        if let Some(refused) = std::fs::metadata(file)
            .ok()
            .and_then(|m| limits::check_size(m.len()).err())
        {
            self.diagnostics
                .push(Diagnostic::new(file, 1, 1, refused.message));
            return None;
        }
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) => {
                self.unreadable.push(format!("{}: {e}", file.display()));
                self.diagnostics
                    .push(Diagnostic::new(file, 0, 0, format!("cannot read: {e}")));
                return None;
            }
        };
        match limits::check(&text) {
            Ok(()) => Some(text),
            Err(refused) => {
                self.diagnostics.push(Diagnostic::new(
                    file,
                    refused.line,
                    refused.column,
                    refused.message,
                ));
                None
            }
        }
    }

    /// Partials that include each other in a circle would render forever (until the stack
    /// overflows): each is reported and unregistered, so a template using one fails to
    /// render with a clear error instead.
    fn refuse_partial_cycles(&mut self) {
        let includes = self
            .partials
            .iter()
            .map(|(name, usage)| (name.clone(), usage.partials.clone()))
            .collect();
        for (name, circle) in crate::diagnostics::circles(&includes) {
            let circle = circle.join(" → ");
            if let Some(usage) = self.partials.remove(&name) {
                self.diagnostics.push(Diagnostic::new(
                    &usage.file,
                    0,
                    0,
                    format!("partials include each other in a circle: {circle}"),
                ));
            }
            self.html.unregister_template(&name);
            self.plain.unregister_template(&name);
        }
    }

    fn load_template(&mut self, folder: &Path) {
        let name = file_name(folder).to_string();
        let meta_path = folder.join("template.yaml");
        let meta: TemplateFile = match std::fs::read_to_string(&meta_path) {
            Err(_) => {
                self.diagnostics.push(
                    Diagnostic::new(
                        &meta_path,
                        0,
                        0,
                        format!("template `{name}` has no template.yaml"),
                    )
                    .with_hint("add one with `sample:` data to check and preview the template"),
                );
                TemplateFile {
                    description: None,
                    fallback: None,
                    sample: None,
                }
            }
            Ok(text) => {
                match serde_saphyr::from_str_with_options(&text, kontor_time::yaml_options()) {
                    Ok(meta) => meta,
                    Err(e) => {
                        self.diagnostics
                            .push(crate::diagnostics::yaml_error(&meta_path, &e));
                        return;
                    }
                }
            }
        };
        let sample = meta.sample.unwrap_or(Json::Object(Default::default()));
        let mut locales = BTreeSet::new();
        let mut variables = Vec::new();
        for file in files_with_suffix(folder, ".hbs") {
            let file_name = file_name(&file).to_string();
            let mut pieces = file_name.trim_end_matches(".hbs").splitn(2, '.');
            let (Some(locale), Some(part)) = (pieces.next(), pieces.next()) else {
                self.diagnostics.push(
                    Diagnostic::new(&file, 0, 0, format!("`{file_name}` is not LOCALE.PART.hbs"))
                        .with_hint("name template files like `de.subject.hbs`, `de.text.hbs`, `de.html.hbs`"),
                );
                continue;
            };
            if !PARTS.contains(&part) {
                self.diagnostics.push(
                    Diagnostic::new(&file, 0, 0, format!("unknown part `{part}`"))
                        .with_hint("a template has the parts subject, text and html"),
                );
                continue;
            }
            let Some(source) = self.read(&file) else {
                continue;
            };
            let registry = if part == "html" {
                &mut self.html
            } else {
                &mut self.plain
            };
            if let Err(e) = registry.register_template_string(&key(&name, locale, part), &source) {
                self.diagnostics.push(template_error(&file, &e));
                continue;
            }
            match Template::compile(&source) {
                Ok(template) => {
                    let (used, partials) = used_variables(&template);
                    // What the partials it uses (and theirs) read counts too, at the
                    // partial's own file and position.
                    let mut in_partials: Vec<(PathBuf, u32, u32, String)> = Vec::new();
                    let mut seen = BTreeSet::new();
                    let mut pending = partials;
                    while let Some(partial) = pending.pop() {
                        if !seen.insert(partial.clone()) {
                            continue;
                        }
                        if let Some(usage) = self.partials.get(&partial) {
                            in_partials.extend(
                                usage
                                    .variables
                                    .iter()
                                    .map(|(l, c, p)| (usage.file.clone(), *l, *c, p.clone())),
                            );
                            pending.extend(usage.partials.iter().cloned());
                        }
                    }
                    for (partial_file, line, column, path) in &in_partials {
                        if !provided(&sample, path) {
                            self.diagnostics.push(
                                Diagnostic::new(
                                    partial_file,
                                    *line,
                                    *column,
                                    format!(
                                        "`{path}` is not in the sample data of `{name}` (which uses this partial in {})",
                                        file_name
                                    ),
                                )
                                .with_hint(format!(
                                    "add `{path}` under `sample:` in {}",
                                    meta_path.display()
                                )),
                            );
                        }
                    }
                    variables.extend(in_partials.into_iter().map(|(file, line, column, path)| {
                        Usage {
                            file,
                            line,
                            column,
                            path,
                        }
                    }));
                    variables.extend(used.into_iter().map(|(line, column, path)| Usage {
                        file: file.clone(),
                        line,
                        column,
                        path,
                    }));
                    for (line, column, path) in missing_variables(&template, &sample) {
                        self.diagnostics.push(
                            Diagnostic::new(
                                &file,
                                line,
                                column,
                                format!("`{path}` is not in the sample data of `{name}`"),
                            )
                            .with_hint(format!(
                                "add `{path}` under `sample:` in {} (and pass it from the step)",
                                meta_path.display()
                            )),
                        );
                    }
                }
                Err(e) => self.diagnostics.push(template_error(&file, &e)),
            }
            locales.insert(locale.to_string());
        }
        for locale in &locales {
            for part in PARTS {
                if !folder.join(format!("{locale}.{part}.hbs")).is_file() {
                    self.diagnostics.push(
                        Diagnostic::new(
                            folder,
                            0,
                            0,
                            format!("locale `{locale}` of `{name}` has no {part}"),
                        )
                        .with_hint(format!("add {locale}.{part}.hbs")),
                    );
                }
            }
        }
        let fallback = meta.fallback.unwrap_or_else(|| "de".into());
        if !locales.is_empty() && !locales.contains(&fallback) {
            self.diagnostics.push(Diagnostic::new(
                &meta_path,
                0,
                0,
                format!("the fallback locale `{fallback}` has no files"),
            ));
        }
        self.templates.insert(
            name.clone(),
            EmailTemplate {
                name,
                description: meta.description,
                fallback,
                sample,
                locales,
                variables,
            },
        );
    }

    pub fn get(&self, name: &str) -> Option<&EmailTemplate> {
        self.templates.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.templates.keys().map(String::as_str)
    }

    /// Renders `name` in `locale` (or its fallback) with `data`.
    pub fn render(&self, name: &str, locale: &str, data: &Json) -> Result<Rendered, RenderError> {
        let template = self
            .templates
            .get(name)
            .ok_or_else(|| RenderError::UnknownTemplate(name.into()))?;
        let locale = if template.locales.contains(locale) {
            locale
        } else if template.locales.contains(&template.fallback) {
            template.fallback.as_str()
        } else {
            return Err(RenderError::NoLocale {
                template: name.into(),
                locale: locale.into(),
                fallback: template.fallback.clone(),
            });
        };
        let mut data = data.clone();
        if let Some(object) = data.as_object_mut() {
            object.insert("locale".into(), Json::String(locale.to_string()));
        }
        let part = |registry: &Handlebars<'static>, part: &'static str| {
            registry
                .render(&key(name, locale, part), &data)
                .map_err(|e| RenderError::Render {
                    template: name.into(),
                    locale: locale.into(),
                    part,
                    message: e.to_string(),
                })
        };
        let subject = part(&self.plain, "subject")?.trim().to_string();
        crate::run::check_header_value(&subject).map_err(|problem| {
            RenderError::HeaderInjection {
                template: name.into(),
                problem,
            }
        })?;
        Ok(Rendered {
            locale: locale.to_string(),
            subject,
            text: part(&self.plain, "text")?,
            html: part(&self.html, "html")?,
        })
    }
}

fn key(name: &str, locale: &str, part: &str) -> String {
    format!("{name}/{locale}.{part}")
}

fn file_name(path: &Path) -> &str {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
}

fn files_with_suffix(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|e| {
            e.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file() && file_name(p).ends_with(suffix))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn template_error(file: &Path, e: &handlebars::TemplateError) -> Diagnostic {
    let (line, column) = e.pos().map(|(l, c)| (l as u32, c as u32)).unwrap_or((0, 0));
    Diagnostic::new(
        file,
        line,
        column,
        format!("invalid template: {}", e.reason()),
    )
}

#[cfg(test)]
mod tests;
