//! Builds the WebAssembly plugins the tests run in the real sandbox: the hostile test
//! plugins of `tests/plugins/` and the shipped plugins of `plugins/`, for
//! `wasm32-wasip2`, with `host/build/wasm.rs` (into the folder the host's build script
//! uses too, so the shipped plugins compile once).
//!
//! Components that load are copied to `$OUT_DIR/plugins/NAME.wasm` (tests find the
//! folder in `KONTOR_TEST_PLUGINS`), those the host must refuse to `$OUT_DIR/refused/`
//! (`KONTOR_TEST_REFUSED_PLUGINS`), and those that load only with grants to
//! `$OUT_DIR/granted/` (`KONTOR_TEST_GRANTED_PLUGINS`). The Python conformance plugin
//! is built there with componentize-py (`pip install componentize-py==0.25.1`).

#[path = "../host/build/wasm.rs"]
mod wasm;

use std::path::{Path, PathBuf};
use std::process::Command;

/// Components built to be refused at load.
const REFUSED: &[&str] = &["wrong-world", "future-contract"];
/// Components that load only with grants (kept out of the folder servers load).
const GRANTED: &[&str] = &["conformance", "greedy"];

const WORKSPACES: &[(&str, &[&str])] = &[
    (
        "tests/plugins",
        &[
            "hostile",
            "wrong-world",
            "future-contract",
            "conformance",
            "greedy",
        ],
    ),
    ("plugins", &["lead-scoring", "erp-fixture", "odata-erp"]),
];

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap())
        .parent()
        .unwrap()
        .to_path_buf();
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    // The same folder host/build.rs compiles the shipped plugins into: built once.
    let target = wasm::target_dir();
    let plugins = out.join("plugins");
    let refused = out.join("refused");
    let granted = out.join("granted");
    for folder in [&plugins, &refused, &granted] {
        let _ = std::fs::remove_dir_all(folder);
        std::fs::create_dir_all(folder).unwrap();
    }
    println!("cargo:rerun-if-changed={}", root.join("sdk").display());
    println!(
        "cargo:rerun-if-changed={}",
        root.join("host/build/wasm.rs").display()
    );
    wasm::ensure_target_installed().unwrap_or_else(|problem| panic!("{problem}"));
    for (workspace, packages) in WORKSPACES {
        let dir = root.join(workspace);
        wasm::rerun_if_changed(&dir, packages);
        wasm::build(&dir, &target).unwrap_or_else(|problem| panic!("{problem}"));
        for package in *packages {
            let built = wasm::artifact(&target, package).unwrap_or_else(|| {
                panic!(
                    "cargo built {workspace} but no component for `{package}` is in {}",
                    target.display()
                )
            });
            let folder = if REFUSED.contains(package) {
                &refused
            } else if GRANTED.contains(package) {
                &granted
            } else {
                &plugins
            };
            wasm::install(&built, &folder.join(format!("{package}.wasm"))).unwrap();
        }
    }
    build_python(
        &root.join("tests/plugins/python/conformance"),
        &root.join("sdk/wit"),
        &granted.join("conformance-python.wasm"),
    );
    println!("cargo:rustc-env=KONTOR_TEST_PLUGINS={}", plugins.display());
    println!(
        "cargo:rustc-env=KONTOR_TEST_GRANTED_PLUGINS={}",
        granted.display()
    );
    println!(
        "cargo:rustc-env=KONTOR_TEST_REFUSED_PLUGINS={}",
        refused.display()
    );
}

/// Builds a Python step plugin with componentize-py against the step world.
fn build_python(app: &Path, wit: &Path, output: &Path) {
    println!("cargo:rerun-if-changed={}", app.display());
    println!("cargo:rerun-if-changed={}", wit.display());
    // Through python3, so the tool need not be on PATH (pip's script folder varies).
    let status = Command::new("python3")
        .args([
            "-c",
            "import sys; from componentize_py import script; sys.argv[0] = 'componentize-py'; sys.exit(script())",
        ])
        .arg("-d")
        .arg(wit)
        .args(["-w", "step", "componentize", "-p"])
        .arg(app)
        .arg("app")
        .arg("-o")
        .arg(output)
        .status()
        .unwrap_or_else(|e| {
            panic!("cannot run python3 ({e}); install Python 3 and `python3 -m pip install componentize-py==0.25.1`")
        });
    assert!(
        status.success(),
        "componentize-py could not build {} (is it installed? `python3 -m pip install componentize-py==0.25.1`)",
        app.display()
    );
}
