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
