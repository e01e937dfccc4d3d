use super::*;
use serde_json::json;

fn write(dir: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

#[test]
fn the_shipped_recall_notice_renders_in_both_locales() {
    let set = TemplateSet::load(Path::new("../workflows/templates"));
    assert!(set.diagnostics.is_empty(), "{:?}", set.diagnostics);
    let sample = set.get("recall-notice").unwrap().sample.clone();
    let de = set.render("recall-notice", "de", &sample).unwrap();
    assert_eq!(
        de.subject,
        "Sicherheitsrückruf KX-200: Bitte vereinbaren Sie einen Termin"
    );
    assert!(de.text.contains("Bäckerei Groß die Geräte"), "{}", de.text);
    assert!(de.text.contains("  - KX200-4711"));
    assert!(
        de.html.contains("<strong>KX-200</strong>") && de.html.contains("Kältetechnik Süd GmbH")
    );
    let en = set.render("recall-notice", "en", &sample).unwrap();
    assert!(en.subject.starts_with("Safety recall KX-200"));
    // An unknown locale falls back to German.
    assert_eq!(
        set.render("recall-notice", "fr", &sample).unwrap().locale,
        "de"
    );
}

#[test]
fn html_is_escaped_but_subject_and_text_are_not() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            ("t/template.yaml", "sample: {name: x}\n"),
            ("t/de.subject.hbs", "Hallo {{name}}"),
            ("t/de.text.hbs", "Hallo {{name}}"),
            ("t/de.html.hbs", "<a title={{name}}>{{name}}</a>"),
        ],
    );
    let set = TemplateSet::load(dir.path());
    assert!(set.diagnostics.is_empty(), "{:?}", set.diagnostics);
    let r = set
        .render("t", "de", &json!({"name": "Müller & Söhne <b>'`=\""}))
        .unwrap();
    assert_eq!(r.subject, "Hallo Müller & Söhne <b>'`=\"");
    assert_eq!(r.text, "Hallo Müller & Söhne <b>'`=\"");
    assert_eq!(
        r.html,
        "<a title=Müller &amp; Söhne &lt;b&gt;&#x27;&#x60;&#x3D;&quot;>Müller &amp; Söhne &lt;b&gt;&#x27;&#x60;&#x3D;&quot;</a>"
    );
    let err = set
        .render("t", "de", &json!({"name": "x\r\nBcc: all@example.com"}))
        .unwrap_err();
    assert!(matches!(err, RenderError::HeaderInjection { .. }), "{err}");
    let err = set
        .render("t", "de", &json!({"name": "Anna\0"}))
        .unwrap_err();
    assert!(err.to_string().contains("NUL"), "{err}");
}

#[test]
fn check_reports_variables_of_every_branch_with_their_position() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            ("t/template.yaml", "sample:\n  name: Groß\n  items: [1]\n"),
            ("t/de.subject.hbs", "Hallo {{name}}"),
            (
                "t/de.text.hbs",
                "{{#if vip}}\nLiebe/r {{name}}\n{{else}}\nHallo {{nmae}}\n{{/if}}\n{{#each items}}{{this.price}}{{/each}}",
            ),
            ("t/de.html.hbs", "<p>{{@root.name}}</p>"),
        ],
    );
    let set = TemplateSet::load(dir.path());
    let found: Vec<String> = set
        .diagnostics
        .iter()
        .map(|d| format!("{}:{}:{}", d.line, d.column, d.message))
        .collect();
    assert_eq!(
        found,
        [
            "1:1:`vip` is not in the sample data of `t`".to_string(),
            "4:7:`nmae` is not in the sample data of `t`".to_string(),
        ],
        "the else branch counts; #each items are relative; {:?}",
        set.diagnostics
    );
    assert!(set.diagnostics[0].file.ends_with("t/de.text.hbs"));
}

#[test]
fn broken_templates_are_diagnostics() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            ("t/template.yaml", "sample: {}\n"),
            ("t/de.subject.hbs", "{{#if x}}unclosed"),
            ("t/de.text.hbs", "ok"),
            ("t/de.footer.hbs", "?"),
        ],
    );
    let set = TemplateSet::load(dir.path());
    let messages: Vec<String> = set.diagnostics.iter().map(|d| d.to_string()).collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("de.subject.hbs") && m.contains("invalid template")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("unknown part `footer`")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("has no html")),
        "{messages:?}"
    );
}

#[test]
fn variables_read_in_partials_count_for_the_templates_that_use_them() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            (
                "partials/frame.hbs",
                "<p>{{company.name}}</p>{{> @partial-block}}{{> footer}}",
            ),
            ("partials/footer.hbs", "<small>{{company.phone}}</small>"),
            ("t/template.yaml", "sample: {name: x, company: {name: y}}\n"),
            ("t/de.subject.hbs", "Hallo {{name}}"),
            ("t/de.text.hbs", "Hallo {{name}}"),
            ("t/de.html.hbs", "{{#> frame}}Hallo {{name}}{{/frame}}"),
        ],
    );
    let set = TemplateSet::load(dir.path());
    let messages: Vec<String> = set.diagnostics.iter().map(|d| d.to_string()).collect();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(
        messages[0].contains("partials/footer.hbs:1:8")
            && messages[0].contains("`company.phone` is not in the sample data of `t`"),
        "{messages:?}"
    );
    let used: Vec<&str> = set
        .get("t")
        .unwrap()
        .variables
        .iter()
        .map(|u| u.path.as_str())
        .collect();
    for path in ["name", "company.name", "company.phone"] {
        assert!(used.contains(&path), "{path} in {used:?}");
    }
}

#[test]
fn templates_too_deep_to_render_safely_are_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let deep = format!(
        "Hallo\n{}x{}",
        "{{#if name}}".repeat(3_000),
        "{{/if}}".repeat(3_000)
    );
    write(
        dir.path(),
        &[
            ("t/template.yaml", "sample: {name: x}\n"),
            ("t/de.subject.hbs", "Hallo"),
            ("t/de.text.hbs", &deep),
            ("t/de.html.hbs", "<p>Hallo</p>"),
        ],
    );
    let set = TemplateSet::load(dir.path());
    let messages: Vec<String> = set.diagnostics.iter().map(|d| d.to_string()).collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("t/de.text.hbs:2:385")
                && m.contains("blocks nest more than 32 deep")),
        "{messages:?}"
    );
    // What was refused is not rendered: the text part is missing, not a crash.
    assert!(set.render("t", "de", &json!({"name": "x"})).is_err());
}

#[test]
fn partials_that_include_each_other_are_refused_and_never_render() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            ("partials/a.hbs", "A{{> b}}"),
            ("partials/b.hbs", "B{{> a}}"),
            ("partials/footer.hbs", "Grüße"),
            ("t/template.yaml", "sample: {}\n"),
            ("t/de.subject.hbs", "Hallo"),
            ("t/de.text.hbs", "{{> a}} {{> footer}}"),
            ("t/de.html.hbs", "<p>{{> footer}}</p>"),
        ],
    );
    let set = TemplateSet::load(dir.path());
    let messages: Vec<String> = set.diagnostics.iter().map(|d| d.to_string()).collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("partials/a.hbs") && m.contains("a → b → a")),
        "{messages:?}"
    );
    let error = set.render("t", "de", &json!({})).unwrap_err().to_string();
    assert!(error.contains("text"), "{error}");
}
