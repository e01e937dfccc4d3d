//! Builds the shipped plugins (`plugins/NAME/` → `plugins/NAME.wasm`) when they are
//! missing or their sources changed, so that a fresh clone serves the samples with one
//! command: `cargo run --release -p kontor -- serve`. The wasm32-wasip2 target is added
//! through rustup the first time. `KONTOR_SKIP_PLUGIN_BUILD=1` skips all of it (a host
//! built without the plugins; `kontor check` then names the missing files).

#[path = "build/wasm.rs"]
mod wasm;

use std::path::PathBuf;

/// The shipped plugins: the members of `plugins/Cargo.toml`.
const SHIPPED: &[&str] = &["lead-scoring", "erp-fixture", "odata-erp"];

fn main() {
    println!("cargo:rerun-if-env-changed=KONTOR_SKIP_PLUGIN_BUILD");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build/wasm.rs");
    if std::env::var_os("KONTOR_SKIP_PLUGIN_BUILD").is_some_and(|v| v != "0") {
        return;
    }
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest.parent().expect("host/ is inside the repository");
    let plugins = root.join("plugins");
    println!("cargo:rerun-if-changed={}", root.join("sdk").display());
    wasm::rerun_if_changed(&plugins, SHIPPED);
    let target = wasm::target_dir();
    if let Err(problem) =
        wasm::ensure_target_installed().and_then(|()| wasm::build(&plugins, &target))
    {
        panic!("{problem}\n(KONTOR_SKIP_PLUGIN_BUILD=1 builds the server without its plugins)");
    }
    for package in SHIPPED {
        let built = wasm::artifact(&target, package).unwrap_or_else(|| {
            panic!(
                "cargo built no component for `{package}` in {}",
                target.display()
            )
        });
        let installed = plugins.join(format!("{package}.wasm"));
        wasm::install(&built, &installed)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", installed.display()));
    }
}
