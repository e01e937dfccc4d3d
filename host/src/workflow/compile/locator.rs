//! Spans → file positions: where in the file a value (or a character inside it) is, so
//! a diagnostic can say `file:line:column`.

use std::path::Path;

use serde_saphyr::Spanned;

use crate::diagnostics::Diagnostic;

/// Maps spans to file positions, adjusting for the opening quote of quoted scalars so a
/// column inside an expression lands on the right character.
pub struct Locator<'a> {
    pub path: &'a Path,
    lines: Vec<&'a str>,
}

impl<'a> Locator<'a> {
    pub fn new(path: &'a Path, text: &'a str) -> Self {
        Locator {
            path,
            lines: crate::diagnostics::source_lines(text),
        }
    }

    /// A diagnostic at the start of `spanned`.
    pub fn at<T>(&self, spanned: &Spanned<T>, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(
            self.path,
            spanned.referenced.line() as u32,
            spanned.referenced.column() as u32,
            message,
        )
    }

    /// Where `text` is first written at or after the start of `spanned` (line, column of
    /// its first character): a scalar nested in a map or list has no span of its own, but
    /// its expression is written out in the file.
    pub fn written_after<T>(&self, spanned: &Spanned<T>, text: &str) -> Option<(u32, u32)> {
        let first = spanned.referenced.line() as usize;
        let from_column = spanned.referenced.column() as usize;
        self.lines
            .iter()
            .enumerate()
            .skip(first.saturating_sub(1))
            .find_map(|(i, line)| {
                let skip = if i + 1 == first {
                    line.char_indices()
                        .nth(from_column.saturating_sub(1))
                        .map_or(line.len(), |(b, _)| b)
                } else {
                    0
                };
                let found = line[skip..].find(text)? + skip;
                Some((i as u32 + 1, line[..found].chars().count() as u32 + 1))
            })
    }

    /// Position of the character `offset` chars into a single-line scalar that starts at
    /// the span (`inner_line` is the 1-based line within the scalar).
    pub fn inside<T>(
        &self,
        spanned: &Spanned<T>,
        inner_line: u32,
        inner_column: u32,
        message: impl Into<String>,
    ) -> Diagnostic {
        let line = spanned.referenced.line() as u32;
        let column = spanned.referenced.column() as u32;
        if inner_line > 1 {
            return Diagnostic::new(self.path, line, column, message);
        }
        let quoted = self
            .lines
            .get(line.saturating_sub(1) as usize)
            .and_then(|l| l.chars().nth(column.saturating_sub(1) as usize))
            .is_some_and(|c| c == '"' || c == '\'');
        Diagnostic::new(
            self.path,
            line,
            column + u32::from(quoted) + inner_column.saturating_sub(1),
            message,
        )
    }
}
