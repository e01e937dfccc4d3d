//! Limits that keep a template file, however hostile, from taking the server down.
//!
//! Handlebars renders by recursion: once per nested block (`{{#if}}`, `{{#each}}`), per
//! nested subexpression and per partial a partial includes. So a template file may be at
//! most [`MAX_TEMPLATE_BYTES`] long and nest blocks and subexpressions at most
//! [`MAX_NESTING`] deep; partials are named, never computed (`{{> (lookup …)}}`), and
//! partials that include each other in a circle are refused at load
//! ([`crate::diagnostics::circles`]). Checked on the text before handlebars parses it, so what is
//! refused never reaches the parser either.

/// Largest template or partial file accepted.
pub const MAX_TEMPLATE_BYTES: usize = 512 * 1024;
/// Deepest nesting of blocks, or of subexpressions within one tag.
pub const MAX_NESTING: usize = 32;

/// A limit a template's text breaks, with the 1-based line and column of the tag.
#[derive(Debug, PartialEq)]
pub struct Refused {
    pub line: u32,
    pub column: u32,
    pub message: String,
}

/// Checks a template file's size, before it is read.
pub fn check_size(bytes: u64) -> Result<(), Refused> {
    if bytes <= MAX_TEMPLATE_BYTES as u64 {
        return Ok(());
    }
    Err(Refused {
        line: 1,
        column: 1,
        message: format!("the template is {bytes} bytes long; the limit is {MAX_TEMPLATE_BYTES}"),
    })
}

/// Checks the size and nesting of a template's text.
pub fn check(source: &str) -> Result<(), Refused> {
    check_size(source.len() as u64)?;
    let mut depth = 0usize;
    let mut rest = source;
    while let Some(open) = rest.find("{{") {
        let at = source.len() - rest.len() + open;
        let tag = &rest[open + 2..];
        // Comments may hold anything, `}}` included in the `{{!-- --}}` form.
        let (body, after) = if let Some(comment) = tag.strip_prefix("!--") {
            match comment.find("--}}") {
                Some(end) => ("", &comment[end + 4..]),
                None => break,
            }
        } else {
            match tag.find("}}") {
                Some(end) => (&tag[..end], &tag[end + 2..]),
                None => break,
            }
        };
        rest = after;
        let body = body.trim_start_matches(['{', '~']).trim_start();
        let refuse = |message: String| {
            let (line, column) = position(source, at);
            Err(Refused {
                line,
                column,
                message,
            })
        };
        if body.starts_with('!') {
            continue;
        }
        if let Some(block) = body.strip_prefix('#') {
            depth += 1;
            if depth > MAX_NESTING {
                return refuse(format!(
                    "blocks nest more than {MAX_NESTING} deep; split the template into partials"
                ));
            }
            if block
                .strip_prefix('>')
                .is_some_and(|p| p.trim_start().starts_with('('))
            {
                return refuse(dynamic_partial());
            }
        } else if body.starts_with('/') {
            depth = depth.saturating_sub(1);
        } else if body
            .strip_prefix('>')
            .is_some_and(|p| p.trim_start().starts_with('('))
        {
            return refuse(dynamic_partial());
        }
        let mut parens = 0usize;
        for c in body.chars() {
            match c {
                '(' => {
                    parens += 1;
                    if parens > MAX_NESTING {
                        return refuse(format!("subexpressions nest more than {MAX_NESTING} deep"));
                    }
                }
                ')' => parens = parens.saturating_sub(1),
                _ => {}
            }
        }
    }
    Ok(())
}

fn dynamic_partial() -> String {
    "a partial's name must be written out, not computed: `{{> name}}`".into()
}

fn position(source: &str, offset: usize) -> (u32, u32) {
    let before = &source[..offset];
    let line = before.matches('\n').count() as u32 + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u32 + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_blocks_and_subexpressions_are_refused_with_their_position() {
        let deep = format!(
            "Hallo\n  {}x{}",
            "{{#if a}}".repeat(3_000),
            "{{/if}}".repeat(3_000)
        );
        let refused = check(&deep).unwrap_err();
        assert!(refused.message.contains("nest more than 32"), "{refused:?}");
        assert_eq!(refused.line, 2);
        assert_eq!(refused.column, 3 + 9 * 32);
        let parens = format!(
            "{{{{lookup {}a{} 'x'}}}}",
            "(lookup ".repeat(40),
            ")".repeat(40)
        );
        assert!(
            check(&parens)
                .unwrap_err()
                .message
                .contains("subexpressions")
        );
        assert!(check("{{> (lookup . 'name')}}").is_err());
        assert!(check("{{#> (whichever)}}x{{/whichever}}").is_err());
        assert!(check(&"x".repeat(MAX_TEMPLATE_BYTES + 1)).is_err());
    }

    #[test]
    fn everyday_templates_pass() {
        let template = "{{!-- Hinweis: {{#if}} im Kommentar zählt nicht --}}\
            Sehr geehrte{{#if (eq anrede \"Herr\")}}r{{/if}} {{name}},\n\
            {{#each geraete}}{{#if seriennummer}}- {{seriennummer}}{{/if}}{{/each}}\n\
            {{> footer}}{{{html_block}}}";
        assert_eq!(check(template), Ok(()));
        let nested = format!("{}x{}", "{{#if a}}".repeat(32), "{{/if}}".repeat(32));
        assert_eq!(check(&nested), Ok(()));
    }

    #[test]
    fn partials_in_a_circle_are_found() {
        let includes: std::collections::BTreeMap<String, Vec<String>> = [
            ("footer", vec!["legal"]),
            ("legal", vec!["footer"]),
            ("self", vec!["self"]),
            ("header", vec!["logo"]),
            ("logo", vec![]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
        .collect();
        let cycles = crate::diagnostics::circles(&includes);
        assert_eq!(
            cycles.keys().collect::<Vec<_>>(),
            ["footer", "legal", "self"]
        );
        assert_eq!(cycles["footer"], ["footer", "legal", "footer"]);
        assert_eq!(cycles["self"], ["self", "self"]);
    }
}
