//! Which variables a template uses, found by walking its syntax tree (so a variable used
//! only in an `{{else}}` branch counts too), and which of them a sample leaves out.

use handlebars::template::{Parameter, Template, TemplateElement};
use serde_json::Value as Json;

const BLOCK_HELPERS_WITH_NEW_CONTEXT: [&str; 2] = ["each", "with"];
const HELPERS: [&str; 12] = [
    "if", "unless", "each", "with", "lookup", "eq", "ne", "gt", "lt", "and", "or", "not",
];

/// Variables used anywhere in `template` (every branch) that `sample` lacks, with their
/// 1-based positions. Inside `#each`/`#with` only `@root.` paths are checked.
pub(super) fn missing_variables(template: &Template, sample: &Json) -> Vec<(u32, u32, String)> {
    let mut missing: Vec<(u32, u32, String)> = used_variables(template)
        .0
        .into_iter()
        .filter(|(_, _, path)| !provided(sample, path))
        .collect();
    missing.sort();
    missing.dedup_by(|a, b| a.2 == b.2);
    missing
}

/// Every variable path `template` reads from its data (every branch), with positions,
/// and the names of the partials it uses.
pub(super) fn used_variables(template: &Template) -> (Vec<(u32, u32, String)>, Vec<String>) {
    let mut found = Vec::new();
    let mut partials = Vec::new();
    walk(template, 0, &mut found, &mut partials, (1, 1));
    (found, partials)
}

fn walk(
    template: &Template,
    depth: usize,
    found: &mut Vec<(u32, u32, String)>,
    partials: &mut Vec<String>,
    at: (u32, u32),
) {
    for (i, element) in template.elements.iter().enumerate() {
        let position = template
            .mapping
            .get(i)
            .map(|m| (m.0 as u32, m.1 as u32))
            .unwrap_or(at);
        match element {
            TemplateElement::Expression(h)
            | TemplateElement::HtmlExpression(h)
            | TemplateElement::HelperBlock(h) => {
                let name = match &h.name {
                    Parameter::Name(n) => Some(n.as_str()),
                    _ => None,
                };
                let is_helper =
                    !h.params.is_empty() || h.block || name.is_some_and(|n| HELPERS.contains(&n));
                if let Some(path) = parameter_path(&h.name).filter(|_| !is_helper) {
                    note(path, depth, position, found);
                }
                for p in h.params.iter().chain(h.hash.values()) {
                    if let Some(path) = parameter_path(p) {
                        note(path, depth, position, found);
                    }
                }
                let inner = if name.is_some_and(|n| BLOCK_HELPERS_WITH_NEW_CONTEXT.contains(&n)) {
                    depth + 1
                } else {
                    depth
                };
                if let Some(t) = &h.template {
                    walk(t, inner, found, partials, position);
                }
                if let Some(t) = &h.inverse {
                    walk(t, depth, found, partials, position);
                }
            }
            TemplateElement::PartialExpression(d) => {
                if let Parameter::Name(n) = &d.name
                    && depth == 0
                {
                    partials.push(n.clone());
                }
            }
            TemplateElement::PartialBlock(d) | TemplateElement::DecoratorBlock(d) => {
                if let (TemplateElement::PartialBlock(_), Parameter::Name(n)) = (element, &d.name)
                    && depth == 0
                {
                    partials.push(n.clone());
                }
                if let Some(t) = &d.template {
                    walk(t, depth, found, partials, position);
                }
            }
            _ => {}
        }
    }
}

fn parameter_path(parameter: &Parameter) -> Option<String> {
    match parameter {
        Parameter::Path(handlebars::Path::Relative((_, raw))) => Some(raw.clone()),
        Parameter::Name(n) => Some(n.clone()),
        _ => None,
    }
}

fn note(path: String, depth: usize, at: (u32, u32), found: &mut Vec<(u32, u32, String)>) {
    let path = match path.strip_prefix("@root.") {
        Some(rest) => rest.to_string(),
        None if depth > 0 || path.starts_with('@') || path.starts_with("../") || path == "this" => {
            return;
        }
        None => path.strip_prefix("this.").unwrap_or(&path).to_string(),
    };
    found.push((at.0, at.1, path));
}

/// Is `path` in the data a template renders with? (`locale` always is.)
pub(super) fn provided(sample: &Json, path: &str) -> bool {
    path == "locale" || has_path(sample, path)
}

/// Does `data` have `a.b.c`? Stops checking at arrays (their elements vary).
fn has_path(data: &Json, path: &str) -> bool {
    let mut current = data;
    for segment in path.split(['.', '/']).filter(|s| !s.is_empty()) {
        match current {
            Json::Object(map) => match map.get(segment) {
                Some(next) => current = next,
                None => return false,
            },
            Json::Array(_) => return true,
            _ => return false,
        }
    }
    true
}
