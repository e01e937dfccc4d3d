//! Compiler-style diagnostics for workflow, calendar and config files.
//!
//! `kontor check`, the server's workflow listing and the loader all report problems as
//! [`Diagnostic`]s: `file:line:column: error: message` followed by an optional hint, so an
//! editor can jump to the spot and a person knows what to change. [`yaml_error`] turns a
//! YAML parse error of any of these files into one.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// One problem found in a file, with where it is and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based line; 0 when the problem concerns the whole file.
    pub line: u32,
    /// 1-based column; 0 when unknown.
    pub column: u32,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn new(file: &Path, line: u32, column: u32, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.to_path_buf(),
            line,
            column,
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
            if self.column > 0 {
                write!(f, ":{}", self.column)?;
            }
        }
        write!(f, ": error: {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  = hint: {hint}")?;
        }
        Ok(())
    }
}

/// A serde-saphyr parse error as a diagnostic.
pub fn yaml_error(path: &Path, error: &serde_saphyr::Error) -> Diagnostic {
    let (line, column) = error
        .location()
        .map(|l| (l.line() as u32, l.column() as u32))
        .unwrap_or((0, 0));
    let full = error.to_string();
    // The library's message may append its own location and a source snippet; keep the
    // first line, which names the problem.
    let message = full
        .lines()
        .next()
        .unwrap_or("invalid YAML")
        .trim()
        .trim_start_matches("error: ")
        .to_string();
    // The position is reported separately; drop the library's " at line L, column C".
    let message = match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message,
    };
    let mut diagnostic = Diagnostic::new(path, line, column, message.clone());
    if message.contains("unknown field") {
        diagnostic = diagnostic.with_hint("check the spelling; the expected keys are listed above");
    } else if message.contains("missing field") {
        diagnostic = diagnostic.with_hint("add the missing key");
    }
    diagnostic
}

/// The lines of a file as YAML (and editors) count them: a line ends at LF, CR LF or a
/// lone CR, so a position the YAML parser reports names the line shown here.
pub fn source_lines(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut lines = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        if bytes[i] == b'\n' || bytes[i] == b'\r' {
            lines.push(&text[start..i]);
            if bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
                i += 1;
            }
            start = i + 1;
        }
        i += 1;
    }
    if start < text.len() {
        lines.push(&text[start..]);
    }
    lines
}

/// Suggests the closest of `candidates` to `name`, for "did you mean ...?" hints.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, c)| *d <= c.chars().count().max(name.chars().count()) / 3 + 1)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            current.push(
                (previous[j] + cost)
                    .min(previous[j + 1] + 1)
                    .min(current[j] + 1),
            );
        }
        previous = current;
    }
    previous[b.len()]
}

/// Names that lead back to themselves along `edges` (a partial including partials, a
/// workflow starting workflows): each such name with one circle through it, from the name
/// back to the name (`["a", "b", "a"]`). Files that refer to each other in a circle are
/// reported by the loader, never followed at run time.
pub fn circles(
    edges: &std::collections::BTreeMap<String, Vec<String>>,
) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut found = std::collections::BTreeMap::new();
    for start in edges.keys() {
        // Depth-first from `start`, remembering the path; a path back to `start` is a circle.
        let mut pending = vec![vec![start.clone()]];
        let mut seen = std::collections::BTreeSet::new();
        while let Some(path) = pending.pop() {
            let last = path.last().expect("paths are never empty");
            for next in edges.get(last).into_iter().flatten() {
                if next == start {
                    let mut circle = path.clone();
                    circle.push(start.clone());
                    found.entry(start.clone()).or_insert(circle);
                } else if seen.insert(next.clone()) {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    pending.push(longer);
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_end_at_lf_crlf_and_a_lone_cr() {
        assert_eq!(source_lines("a\nb\r\nc\rd"), ["a", "b", "c", "d"]);
        assert_eq!(source_lines("a\n\n"), ["a", ""]);
        assert_eq!(source_lines(""), Vec::<&str>::new());
    }

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(closest("qualifiy", ["qualify", "route"]), Some("qualify"));
        assert_eq!(closest("xyz", ["qualify", "route"]), None);
    }

    #[test]
    fn renders_like_a_compiler() {
        let d = Diagnostic::new(Path::new("workflows/a.yaml"), 3, 7, "unknown step `x`")
            .with_hint("did you mean `y`?");
        assert_eq!(
            d.to_string(),
            "workflows/a.yaml:3:7: error: unknown step `x`\n  = hint: did you mean `y`?"
        );
    }
}
