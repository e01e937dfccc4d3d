//! The `kontor` command line as a user runs it.

use std::process::Command;

use kontor_tests::{kontor_bin, shipped_workflows};

fn kontor(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(kontor_bin())
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_accepts_the_shipped_workflows() {
    let (code, stdout, stderr) = kontor(&["check", shipped_workflows().to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stderr.contains("4 workflow file(s) checked, no problems"),
        "{stderr}"
    );
}

#[test]
fn check_reports_problems_like_a_compiler_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lead.yaml");
    std::fs::write(
        &file,
        "name: lead\ninput:\n  type: object\n  properties:\n    email: { type: string }\nsteps:\n  - id: a\n    set:\n      to: \"${input.emial}\"\n    next: b\n",
    )
    .unwrap();
    let (code, stdout, stderr) = kontor(&["check", file.to_str().unwrap()]);
    assert_eq!(code, 1);
    let path = file.display().to_string();
    assert!(
        stdout.contains(&format!(
            "{path}:9:14: error: `input.emial` is not in the workflow's input schema"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("= hint: did you mean `input.email`?"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{path}:10:11: error: there is no step `b`")),
        "{stdout}"
    );
    assert!(stderr.contains("2 problem(s) found"), "{stderr}");

    let (code, _, stderr) = kontor(&["check", "/no/such/folder"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no such file or folder"));
}

#[test]
fn unknown_config_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kontor.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:0\"\n[engine]\nworkerz = 2\n").unwrap();
    let (code, _, stderr) = kontor(&[
        "--config",
        config.to_str().unwrap(),
        "check",
        shipped_workflows().to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("workerz"), "{stderr}");
}

#[test]
fn email_preview_renders_subject_text_and_html() {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("preview.html");
    let data = dir.path().join("data.json");
    std::fs::write(
        &data,
        r#"{"company": {"name": "Kühl & Co. KG", "address": "Hauptstraße 1"}, "customer": {"name": "Jürgen <Weiß>", "salutation": "Hallo"},
            "series": "KX-200", "serial_numbers": ["A-1"], "appointment_url": "https://x.example/r/1", "deadline": "1.8.2026"}"#,
    )
    .unwrap();
    let config = dir.path().join("kontor.toml");
    std::fs::write(
        &config,
        format!(
            "workflows_dir = {:?}\n",
            shipped_workflows().display().to_string()
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = kontor(&[
        "--config",
        config.to_str().unwrap(),
        "email",
        "preview",
        "recall-notice",
        "--locale",
        "en",
        "--data",
        data.to_str().unwrap(),
        "--html-out",
        html.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("Subject: Safety recall KX-200: please book an appointment"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Dear Jürgen <Weiß>,"),
        "text is not HTML-escaped: {stdout}"
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("Dear Jürgen &lt;Weiß&gt;,"), "{page}");
    assert!(
        page.contains("<html lang=\"en\">") && page.contains("Kühl &amp; Co. KG"),
        "{page}"
    );
}
