//! Snapshot tests of `kontor check`'s messages: every `tests/ui/*.yaml` is broken in one
//! way, and its diagnostics must match `tests/ui/NAME.stderr` exactly.
//!
//! After an intended change of wording, regenerate with `KONTOR_BLESS=1 cargo test -p
//! kontor --test check_ui` and review the diff.

use std::path::{Path, PathBuf};

use kontor::workflow::Catalog;

fn ui_dir() -> PathBuf {
    // Relative, so the snapshots show `tests/ui/x.yaml` on every machine.
    PathBuf::from("tests/ui")
}

fn rendered(catalog: &Catalog, file: &Path) -> String {
    let mut out = String::new();
    for d in catalog.all_diagnostics() {
        if d.file == file {
            out.push_str(&d.to_string());
            out.push('\n');
        }
    }
    out
}

#[test]
fn every_broken_file_has_the_expected_messages() {
    let bless = std::env::var_os("KONTOR_BLESS").is_some();
    // The plugins these files may name: one that loads, one that does not.
    let plugins = kontor::workflow::PluginIndex {
        dir: "plugins".into(),
        plugins: [
            ("lead-scoring".to_string(), None),
            ("erp-fixture".to_string(), None),
            (
                "legacy-erp".to_string(),
                Some("plugins/legacy-erp.wasm was built against kontor:plugin@1.0.0, which this Kontor does not support".to_string()),
            ),
        ]
        .into_iter()
        .collect(),
        worlds: [
            ("lead-scoring".to_string(), kontor_plugins::World::Step),
            ("erp-fixture".to_string(), kontor_plugins::World::ErpConnector),
        ]
        .into_iter()
        .collect(),
    };
    // The email channels of a configuration.
    let channels = ["default".to_string(), "newsletter".to_string()].into();
    let catalog = Catalog::load_with(&ui_dir(), Some(&plugins), Some(&channels));
    let mut files: Vec<PathBuf> = std::fs::read_dir(ui_dir())
        .unwrap()
        .chain(std::fs::read_dir(ui_dir().join("calendars")).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| !p.ends_with("calendars/office.yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 15, "at least 15 kinds of broken file");
    let mut failures = Vec::new();
    for file in &files {
        let actual = rendered(&catalog, file);
        assert!(
            !actual.is_empty(),
            "{} should be reported as broken",
            file.display()
        );
        let snapshot = file.with_extension("stderr");
        if bless {
            std::fs::write(&snapshot, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&snapshot).unwrap_or_default();
        if expected != actual {
            failures.push(format!(
                "--- {}\n+++ actual\n{}\n(expected)\n{}",
                snapshot.display(),
                actual,
                expected
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "snapshot mismatches:\n{}",
        failures.join("\n")
    );
}

#[test]
fn the_shipped_workflows_check_clean() {
    let catalog = Catalog::load(Path::new("../workflows"), None);
    let problems: Vec<String> = catalog
        .all_diagnostics()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    for name in [
        "lead-routing",
        "ticket-escalation",
        "recall-campaign",
        "recall-contact",
    ] {
        assert!(catalog.get(name).is_some(), "{name} should be valid");
    }
    assert!(catalog.calendars.contains_key("service-berlin"));
}

#[test]
fn oversized_and_non_utf8_files_are_invalid_unread_and_never_block_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let small = "name: small\nsteps:\n  - id: done\n    end: {}\n";
    std::fs::write(dir.path().join("small.yaml"), small).unwrap();
    let mut big = String::from(small);
    big.push_str(&"# padding\n".repeat(110_000));
    std::fs::write(dir.path().join("big.yaml"), &big).unwrap();
    std::fs::write(dir.path().join("latin1.yaml"), b"name: Stra\xdfe\n").unwrap();
    std::fs::create_dir(dir.path().join("calendars")).unwrap();
    std::fs::write(
        dir.path().join("calendars/huge.yaml"),
        "# x\n".repeat(300_000),
    )
    .unwrap();

    let catalog = Catalog::load(dir.path(), None);
    let problems: Vec<String> = catalog
        .all_diagnostics()
        .iter()
        .map(ToString::to_string)
        .collect();
    let about = |file: &str| {
        problems
            .iter()
            .find(|p| p.contains(file))
            .unwrap_or_else(|| panic!("nothing about {file}: {problems:?}"))
            .clone()
    };
    assert!(
        about("big.yaml").contains(&format!(
            "big.yaml:1:1: error: the file is {} bytes; the limit is 1048576",
            big.len()
        )),
        "{problems:?}"
    );
    assert!(about("big.yaml").contains("engine.max_workflow_file"));
    assert!(
        about("huge.yaml").contains("the limit is 1048576"),
        "{problems:?}"
    );
    assert!(
        about("latin1.yaml")
            .contains("latin1.yaml:1:1: error: the file is not UTF-8 text (byte 10 is not)"),
        "{problems:?}"
    );
    assert!(matches!(
        catalog.workflows["small"],
        kontor::workflow::WorkflowEntry::Valid(_)
    ));
    assert!(
        catalog.unreadable.is_empty(),
        "content problems, not read failures: {:?}",
        catalog.unreadable
    );

    // The API's listing names the first 20 problems of a file and counts the rest.
    let mut many = String::from("name: many\nsteps:\n");
    for i in 0..25 {
        many.push_str(&format!(
            "  - id: s{i}\n    set: {{ v: \"${{nope{i}}}\" }}\n"
        ));
    }
    std::fs::write(dir.path().join("many.yaml"), many).unwrap();
    let catalog = Catalog::load(dir.path(), None);
    let kontor::workflow::WorkflowEntry::Invalid { diagnostics, .. } = &catalog.workflows["many"]
    else {
        panic!("many.yaml is invalid");
    };
    assert!(diagnostics.len() >= 25, "{diagnostics:?}");
    let listed = catalog.summaries_after(Some("latin1"), 1, |_| true);
    assert_eq!(listed[0].name, "many");
    assert_eq!(listed[0].diagnostics.len(), 20);
    assert_eq!(listed[0].more_diagnostics, diagnostics.len() - 20);

    // The limit is the caller's (`engine.max_workflow_file`).
    let strict = Catalog::load_within(dir.path(), None, None, 16);
    assert!(matches!(
        strict.workflows["small"],
        kontor::workflow::WorkflowEntry::Invalid { .. }
    ));
}
