//! The `kontor` command line as a user runs it.

use std::process::Command;

use kontor_tests::{kontor_bin, refused_plugins, shipped_workflows, test_plugins};

fn kontor(args: &[&str]) -> (i32, String, String) {
    kontor_with(args, &test_plugins())
}

/// Runs the CLI with `plugins` as its plugins folder.
fn kontor_with(args: &[&str], plugins: &std::path::Path) -> (i32, String, String) {
    let cache = std::env::temp_dir().join("kontor-cli-test-plugin-cache");
    let out = Command::new(kontor_bin())
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("KONTOR_PLUGINS_DIR", plugins)
        .env("KONTOR_PLUGINS_CACHE_DIR", cache)
        .output()
        .unwrap();
    exit_and_output(&out)
}

/// Exit code, stdout and stderr of a finished command.
fn exit_and_output(out: &std::process::Output) -> (i32, String, String) {
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
        stderr.contains("5 workflow file(s) checked, no problems"),
        "{stderr}"
    );
}

#[test]
fn check_reports_missing_and_unloadable_plugins() {
    let empty = tempfile::tempdir().unwrap();
    let (code, stdout, _) = kontor_with(
        &["check", shipped_workflows().to_str().unwrap()],
        empty.path(),
    );
    assert_eq!(code, 1);
    // Where the shipped workflow names the plugin.
    let source = std::fs::read_to_string(shipped_workflows().join("lead-routing.yaml")).unwrap();
    let line = source
        .lines()
        .position(|l| l.trim() == "plugin: lead-scoring")
        .unwrap()
        + 1;
    assert!(
        stdout.contains(&format!(
            "lead-routing.yaml:{line}:13: error: there is no plugin `lead-scoring`"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("hint: build it with `kontor plugin build lead-scoring`"),
        "{stdout}"
    );

    let (code, stdout, _) = kontor_with(
        &["check", shipped_workflows().to_str().unwrap()],
        &refused_plugins(),
    );
    assert_eq!(code, 1);
    assert!(
        stdout.contains("future-contract.wasm: error: ") && stdout.contains("kontor:plugin@1.0.0"),
        "{stdout}"
    );
    assert!(stdout.contains("wrong-world.wasm: error: "), "{stdout}");
}

#[test]
fn plugin_test_and_inspect_run_a_component_in_the_sandbox() {
    let (code, stdout, stderr) = kontor(&[
        "plugin",
        "test",
        "lead-scoring",
        "--input",
        r#"{"country": "CH", "title": "Geschäftsführer", "event_visited": true}"#,
        "--config",
        r#"{"grade_a": 40}"#,
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let output: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(output["score"], 15 + 15 + 15);
    assert_eq!(output["grade"], "A");
    assert!(stderr.contains("ok: lead-scoring 0.1.0 in "), "{stderr}");
    assert!(stderr.contains("fuel used "), "{stderr}");
    assert!(stderr.contains("peak memory "), "{stderr}");

    let (code, _, stderr) = kontor(&[
        "plugin",
        "test",
        "lead-scoring",
        "--input",
        r#"{"employees": -3}"#,
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("failed (invalid-input)"), "{stderr}");
    assert!(stderr.contains("/employees"), "{stderr}");

    let (code, stdout, _) = kontor(&["plugin", "inspect", "lead-scoring"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("world:     step (kontor:plugin@0.3.0)"),
        "{stdout}"
    );
    assert!(stdout.contains("kontor:plugin/handler@0.3.0"), "{stdout}");
    assert!(
        stdout.contains("requests:  http [], secrets [], kv false"),
        "{stdout}"
    );
    assert!(
        stdout.contains("granted:   http [], private_networks [], secrets [], kv false"),
        "{stdout}"
    );

    // An ERP connector: its world, its functions, and a call through `--call`.
    let (code, stdout, _) = kontor(&["plugin", "inspect", "erp-fixture"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("world:     erp-connector (kontor:plugin@0.3.0)"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "buyers-of-series       (series, delivered_from?, delivered_to?, cursor?, limit?)"
        ),
        "{stdout}"
    );
    let (code, stdout, stderr) = kontor(&[
        "plugin",
        "test",
        "erp-fixture",
        "--call",
        "customer-by-vat-id",
        "--input",
        r#"{"vat_id": "DE 811 234 567"}"#,
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let customer: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(customer["name"], "Müller Kältetechnik GmbH");
    let (code, _, stderr) = kontor(&[
        "plugin",
        "test",
        "erp-fixture",
        "--call",
        "customer-by-vat",
        "--input",
        r#"{"vat_id": "DE811234567"}"#,
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("failed (invalid-input)")
            && stderr.contains("`customer-by-vat` is not a function of the erp-connector world"),
        "{stderr}"
    );
    let wrong = refused_plugins().join("wrong-world.wasm");
    let (code, stdout, _) = kontor(&["plugin", "inspect", wrong.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stdout.contains("wasi:cli/run@0.2"), "{stdout}");
    assert!(
        stdout.contains("does not implement Kontor's `step` world"),
        "{stdout}"
    );
}

#[test]
fn plugin_new_scaffolds_a_crate_in_the_plugins_workspace() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(dir.path().join("sdk")).unwrap();
    std::fs::write(
        dir.path().join("sdk/Cargo.toml"),
        "[package]\nname = \"kontor-sdk\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::write(
        plugins.join("Cargo.toml"),
        "[workspace]\nresolver = \"3\"\nmembers = [\"lead-scoring\"]\n",
    )
    .unwrap();
    let (code, stdout, stderr) = kontor_with(&["plugin", "new", "next-best-offer"], &plugins);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let lib = std::fs::read_to_string(plugins.join("next-best-offer/src/lib.rs")).unwrap();
    assert!(lib.contains("export_step!(NextBestOffer);"), "{lib}");
    let manifest = std::fs::read_to_string(plugins.join("next-best-offer/Cargo.toml")).unwrap();
    assert!(
        manifest.contains("kontor-sdk = { path = \"../../sdk\" }"),
        "{manifest}"
    );
    let workspace = std::fs::read_to_string(plugins.join("Cargo.toml")).unwrap();
    assert!(
        workspace.contains("members = [\"lead-scoring\", \"next-best-offer\"]"),
        "{workspace}"
    );
    let (code, _, stderr) = kontor_with(&["plugin", "new", "next-best-offer"], &plugins);
    assert_eq!(code, 1);
    assert!(stderr.contains("exists already"), "{stderr}");
    let (code, stdout, stderr) =
        kontor_with(&["plugin", "new", "sap-erp", "--connector"], &plugins);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let lib = std::fs::read_to_string(plugins.join("sap-erp/src/lib.rs")).unwrap();
    assert!(lib.contains("export_connector!(SapErp);"), "{lib}");
    assert!(lib.contains("secrets::get(\"sap-erp-token\")"), "{lib}");
    assert!(stdout.contains("secrets = [\"sap-erp-token\"]"), "{stdout}");
    let (code, _, stderr) = kontor_with(&["plugin", "new", "Bad_Name"], &plugins);
    assert_eq!(code, 1);
    assert!(stderr.contains("is not a plugin name"), "{stderr}");
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

    // A bare file name, from the folder it is in: the same problems, not "ok".
    let out = Command::new(kontor_bin())
        .args(["check", "lead.yaml"])
        .current_dir(dir.path())
        .env("KONTOR_PLUGINS_DIR", test_plugins())
        .env(
            "KONTOR_PLUGINS_CACHE_DIR",
            std::env::temp_dir().join("kontor-cli-test-plugin-cache"),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("lead.yaml:10:11: error: there is no step `b`"),
        "{stdout}"
    );
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

#[test]
fn email_preview_prints_everything_and_writes_files_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(kontor_bin())
            .args(args)
            .current_dir(dir.path())
            .env("KONTOR_WORKFLOWS_DIR", shipped_workflows())
            .output()
            .unwrap();
        exit_and_output(&out)
    };
    let (code, stdout, stderr) = run(&["email", "preview", "recall-notice"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("Locale:  de"), "{stdout}");
    assert!(stdout.contains("Subject: Sicherheitsrückruf"), "{stdout}");
    assert!(
        stdout.contains("--- HTML part ---") && stdout.contains("<html lang=\"de\">"),
        "{stdout}"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
    assert!(
        left.is_empty(),
        "the preview wrote into the current folder: {left:?}"
    );

    let (code, stdout, stderr) = run(&["email", "preview", "recall-notice", "--out", "previews"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let file = dir.path().join("previews/preview-recall-notice-de.html");
    assert!(
        stdout.contains("HTML part written to previews/preview-recall-notice-de.html"),
        "{stdout}"
    );
    assert!(!stdout.contains("<html"), "{stdout}");
    let page = std::fs::read_to_string(&file).unwrap();
    assert!(page.contains("<html lang=\"de\">"), "{page}");
}

/// How a shell's completion script names a subcommand of `kontor`.
type SubcommandEntry = fn(&str) -> String;

#[test]
fn completions_name_every_subcommand_without_a_config() {
    // Each shell spells a long option its own way: `--listen` or fish's `-l listen`.
    let entries: [(&str, SubcommandEntry, &str); 3] = [
        ("bash", |c| format!("kontor,{c})"), "--listen"),
        ("zsh", |c| format!("'{c}:"), "--listen"),
        ("fish", |c| format!("-f -a \"{c}\""), "-l listen"),
    ];
    for (shell, entry, listen_option) in entries {
        // A missing config file fails every other command; completions need none.
        let (code, script, stderr) =
            kontor(&["--config", "/no/such/kontor.toml", "completions", shell]);
        assert_eq!(code, 0, "{shell}: {stderr}");
        for command in [
            "serve",
            "check",
            "bench",
            "plugin",
            "email",
            "secret",
            "token",
            "completions",
        ] {
            assert!(
                script.contains(&entry(command)),
                "the {shell} script lacks `{command}`"
            );
        }
        assert!(
            script.contains(listen_option),
            "the {shell} script lacks {listen_option}"
        );
    }
    let (code, _, stderr) = kontor(&["completions", "tcsh"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("invalid value 'tcsh'"), "{stderr}");
}

/// `kontor --config FILE` reads the file's relative paths from the file's folder: the
/// email benchmark finds the workflows' templates from any working directory.
#[test]
fn a_config_files_relative_paths_are_its_folders() {
    let home = tempfile::tempdir().unwrap();
    kontor_tests::copy_tree(&shipped_workflows(), &home.path().join("flows"));
    std::fs::write(
        home.path().join("kontor.toml"),
        "workflows_dir = \"flows\"\ndatabase_url = \"sqlite://data/kontor.db\"\n",
    )
    .unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let config = home.path().join("kontor.toml");
    let out = Command::new(kontor_bin())
        .args(["--config", config.to_str().unwrap()])
        .args(["bench", "email", "--messages", "20", "--dkim", "off"])
        .current_dir(elsewhere.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("20"), "{stdout}");
}

#[test]
fn check_reports_territory_problems_at_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("territories")).unwrap();
    let file = dir.path().join("territories/north.yaml");
    std::fs::write(
        &file,
        "fallback: rest\nteams:\n  rest: { members: [a] }\n  north: { members: [b] }\nrules:\n  - { name: north, team: north, priority: 20, postal_codes: { DE: [\"2\"] } }\n  - { name: hamburg, team: nrth, priority: 10, postal_codes: { DE: [\"20-22\"] } }\n",
    )
    .unwrap();
    // The territory file alone, and its folder: the same two problems.
    for target in [file.clone(), dir.path().to_path_buf()] {
        let (code, stdout, stderr) = kontor(&["check", target.to_str().unwrap()]);
        assert_eq!(code, 1, "{stdout}{stderr}");
        let path = file.display().to_string();
        assert!(
            stdout.contains(&format!(
                "{path}:7:28: error: rule `hamburg` names unknown team `nrth`"
            )),
            "{stdout}"
        );
        assert!(
            stdout.contains("= hint: declared teams: north, rest"),
            "{stdout}"
        );
        assert!(
            stdout.contains(&format!("{path}:7:5: error: rule `hamburg` can never win")),
            "{stdout}"
        );
        assert!(stderr.contains("2 problem(s) found"), "{stderr}");
    }
}

#[test]
fn team_members_are_marked_absent_and_back_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let team = |args: &[&str]| {
        let out = Command::new(kontor_bin())
            .arg("team")
            .args(args)
            .env(
                "KONTOR_DATABASE_URL",
                format!("sqlite://{}/kontor.db", dir.path().display()),
            )
            .env("KONTOR_WORKFLOWS_DIR", shipped_workflows())
            .output()
            .unwrap();
        exit_and_output(&out)
    };
    let (code, _, err) = team(&[
        "absent",
        "sued",
        "lena.maier",
        "--from",
        "2026-12-21",
        "--until",
        "2027-01-07",
    ]);
    assert_eq!(code, 0, "{err}");
    // Dates are their start in Berlin.
    assert!(
        err.contains("lena.maier in sued: active, absent from 2026-12-20T23:00:00+00:00 until 2027-01-06T23:00:00+00:00"),
        "{err}"
    );
    let (code, out, _) = team(&["list"]);
    assert_eq!(code, 0);
    let lena = out
        .lines()
        .find(|l| l.starts_with("sued\tlena.maier\t"))
        .unwrap();
    assert_eq!(
        lena,
        "sued\tlena.maier\t30\t0\tyes\t2026-12-20T23:00:00+00:00\t2027-01-06T23:00:00+00:00\tyes"
    );
    let (code, _, err) = team(&["deactivate", "sued", "lena.maier"]);
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = team(&["list"]);
    assert!(out.contains("sued\tlena.maier\t30\t0\tno\t"), "{out}");
    let (code, _, err) = team(&["present", "sued", "lena.maier"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("inactive, present"), "{err}");
    let (code, _, err) = team(&["absent", "sued", "nobody"]);
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "team `sued` has no member `nobody` (members: josef.huber, lena.maier, xaver.bauer)"
        ),
        "{err}"
    );
    let (code, _, err) = team(&["absent", "sued", "lena.maier", "--until", "gestern"]);
    assert_eq!(code, 1);
    assert!(err.contains("--until: `gestern` is neither"), "{err}");
}

#[test]
fn simulate_routes_a_file_without_writing_and_shows_what_a_rule_change_moves() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kontor.db");
    let run = |args: &[&str]| {
        let out = Command::new(kontor_bin())
            .args(args)
            .current_dir(dir.path())
            .env("KONTOR_DATABASE_URL", format!("sqlite://{}", db.display()))
            .env("KONTOR_WORKFLOWS_DIR", shipped_workflows())
            .env("KONTOR_PLUGINS_DIR", test_plugins())
            .env(
                "KONTOR_PLUGINS_CACHE_DIR",
                std::env::temp_dir().join("kontor-cli-test-plugin-cache"),
            )
            .output()
            .unwrap();
        exit_and_output(&out)
    };
    // A database with some state: Anna is away.
    let (code, _, err) = run(&["team", "absent", "nord-maschinenbau", "anna.schroeder"]);
    assert_eq!(code, 0, "{err}");
    let before = std::fs::read(&db).unwrap();
    let leads = dir.path().join("messe.csv");
    std::fs::write(
        &leads,
        "external_id;company;country;postal_code;industry;products;employees;title;quote_requested\n\
         M-1;Werft Nord GmbH;DE;20095;maschinenbau;A;300;Geschäftsführer;ja\n\
         M-2;Klinik Alster;DE;22767;medizintechnik;A;300;Geschäftsführerin;ja\n\
         M-3;Bäckerei Groß;DE;80331;lebensmittel;C;40;Inhaber;nein\n\
         M-4;Wiener Kälte;AT;1010;lebensmittel;A;12000;CEO;ja\n",
    )
    .unwrap();
    let (code, out, err) = run(&["simulate", leads.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let line = |id: &str| {
        out.lines()
            .find(|l| l.contains(&format!("\t{id}\t")))
            .unwrap_or_else(|| panic!("{id} in\n{out}"))
    };
    // Anna is absent, so Jens gets the machinery lead; the reasons say so.
    assert!(
        line("M-1").contains("\tnord-maschinenbau\tjens.petersen\t"),
        "{out}"
    );
    assert!(
        line("M-1").contains("`nord-machinery` and `nord-product-a` share priority 50"),
        "{out}"
    );
    assert!(line("M-2").contains("\tnord-alle\t"), "{out}");
    assert!(line("M-4").contains("\tkey-accounts\t"), "{out}");
    assert!(out.contains("team\tleads\tper member"), "{out}");
    // Nothing was written: the database file is byte for byte what it was.
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "simulate changed the database"
    );

    // Without the team-2 rule the medical-technology lead would go to inside sales.
    let old = dir.path().join("old");
    std::fs::create_dir(&old).unwrap();
    std::fs::copy(
        shipped_workflows().join("territories/sales.yaml"),
        old.join("sales.yaml"),
    )
    .unwrap();
    let new = dir.path().join("new");
    std::fs::create_dir(&new).unwrap();
    let text = std::fs::read_to_string(old.join("sales.yaml")).unwrap();
    let start = text.find("  - name: nord-product-a").unwrap();
    let end = text[start..].find("\n\n").unwrap() + start;
    std::fs::write(
        new.join("sales.yaml"),
        format!("{}{}", &text[..start], &text[end + 2..]),
    )
    .unwrap();
    let (code, out, err) = run(&[
        "simulate",
        leads.to_str().unwrap(),
        "--territories",
        new.to_str().unwrap(),
        "--compare",
        old.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}{out}");
    assert!(
        out.contains("1 of 4 lead(s) would move to another team:"),
        "{out}"
    );
    assert!(
        out.contains("line 3\tM-2\tnord-alle → inside-sales"),
        "{out}"
    );
    assert_eq!(std::fs::read(&db).unwrap(), before);

    // A bad row: its line and field, nothing done.
    std::fs::write(
        &leads,
        "external_id,company,country,postal_code\nB-1,X,DE,2009\n",
    )
    .unwrap();
    let (code, _, err) = run(&["simulate", leads.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("messe.csv:2: error: postal_code: `2009` is not a postal code of DE"),
        "{err}"
    );
}

#[test]
fn leads_import_checks_every_row_first_then_stores_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kontor.db");
    let run = |args: &[&str]| {
        let out = Command::new(kontor_bin())
            .args(args)
            .current_dir(dir.path())
            .env("KONTOR_DATABASE_URL", format!("sqlite://{}", db.display()))
            .env("KONTOR_WORKFLOWS_DIR", shipped_workflows())
            .output()
            .unwrap();
        exit_and_output(&out)
    };
    let file = dir.path().join("leads.jsonl");
    std::fs::write(
        &file,
        "{\"external_id\": \"J-1\", \"company\": \"Müller\", \"country\": \"DE\", \"postal_code\": \"20095\"}\n\
         {\"external_id\": \"J-2\", \"company\": \"Huber\", \"country\": \"DE\", \"postal_code\": \"8033\"}\n",
    )
    .unwrap();
    let (code, _, err) = run(&["leads", "import", file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("leads.jsonl:2: error: postal_code:"), "{err}");
    assert!(err.contains("nothing was done"), "{err}");
    std::fs::write(
        &file,
        "{\"external_id\": \"J-1\", \"company\": \"Müller\", \"country\": \"DE\", \"postal_code\": \"20095\"}\n\
         {\"external_id\": \"J-2\", \"company\": \"Huber\", \"country\": \"DE\", \"postal_code\": \"80331\"}\n",
    )
    .unwrap();
    let (code, _, err) = run(&["leads", "import", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("imported 2 new lead(s); 0 known already"),
        "{err}"
    );
    let (code, _, err) = run(&["leads", "import", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("imported 0 new lead(s); 2 known already"),
        "{err}"
    );
    std::fs::write(
        &file,
        "{\"external_id\": \"J-1\", \"company\": \"Müller & Söhne\", \"country\": \"DE\"}\n",
    )
    .unwrap();
    let (code, _, err) = run(&["leads", "import", file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "leads.jsonl:1: error: external_id: `J-1` was delivered before with other fields"
        ),
        "{err}"
    );
}
