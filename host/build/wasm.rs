//! Compiling the WebAssembly plugin workspaces from a build script.
//!
//! Shared by `host/build.rs` (the shipped plugins, so `cargo run -p kontor -- serve` on a
//! fresh clone has them) and `tests/build.rs` (the shipped and the hostile test plugins).
//! Both compile into one folder beside the outer build's target directory, so each
//! plugin compiles once however many build scripts ask for it; a nested cargo on the
//! outer target directory itself would wait forever for its lock.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The target every plugin is compiled for.
pub const TARGET: &str = "wasm32-wasip2";

/// `<outer target dir>/wasm-plugins`, from the build script's `OUT_DIR`
/// (`<target>/<profile>/build/<package>-<hash>/out`): one folder for debug and release
/// builds of the host and the tests alike.
pub fn target_dir() -> PathBuf {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    out.ancestors().nth(4).unwrap_or(&out).join("wasm-plugins")
}

/// Tells cargo to run the build script again when a plugin's sources change.
pub fn rerun_if_changed(workspace: &Path, packages: &[&str]) {
    for file in ["Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", workspace.join(file).display());
    }
    for package in packages {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(package).display()
        );
    }
}

/// Adds the `wasm32-wasip2` standard library to the toolchain running this build when it
/// is missing (a one-time download through rustup).
pub fn ensure_target_installed() -> Result<(), String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("cannot run {rustc}: {e}"))?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if sysroot.join("lib/rustlib").join(TARGET).is_dir() {
        return Ok(());
    }
    println!("cargo:warning=installing the {TARGET} target with rustup (once)");
    let mut rustup = Command::new("rustup");
    rustup.args(["target", "add", TARGET]);
    if let Some(name) = sysroot.file_name().and_then(|n| n.to_str()) {
        // The toolchain folder's name is the toolchain's, e.g. 1.95.0-x86_64-unknown-linux-gnu.
        rustup.args(["--toolchain", name]);
    }
    match rustup.status() {
        Ok(status) if status.success() => Ok(()),
        _ => Err(format!(
            "the {TARGET} target is missing and rustup could not add it; run `rustup target add {TARGET}`"
        )),
    }
}

/// Compiles every plugin of `workspace` (release, `wasm32-wasip2`) into `target`.
pub fn build(workspace: &Path, target: &Path) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--target", TARGET, "--manifest-path"])
        .arg(workspace.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target)
        // The outer build's settings are for the host, not for these guests; the same
        // environment from every build script keeps cargo's fingerprints equal.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        // Under `cargo clippy` the outer build runs rustc through clippy-driver.
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CLIPPY_ARGS")
        .env_remove("CLIPPY_CONF_DIR")
        .status()
        .map_err(|e| format!("cannot run cargo to build {}: {e}", workspace.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "building the plugins in {} failed; see cargo's messages above",
            workspace.display()
        ))
    }
}

/// The component cargo built for `package`, if any.
pub fn artifact(target: &Path, package: &str) -> Option<PathBuf> {
    let dir = target.join(TARGET).join("release");
    [package.replace('-', "_"), package.to_string()]
        .iter()
        .map(|n| dir.join(format!("{n}.wasm")))
        .find(|p| p.exists())
}

/// Copies `from` to `to` unless `to` already holds the same bytes (a running server
/// reloads a plugin whose file changes), writing beside and renaming so nothing ever
/// reads half a file.
pub fn install(from: &Path, to: &Path) -> std::io::Result<()> {
    let bytes = std::fs::read(from)?;
    if std::fs::read(to).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    let name = to.file_name().and_then(|n| n.to_str()).unwrap_or("plugin");
    let partial = to.with_file_name(format!(".{name}.partial"));
    std::fs::write(&partial, &bytes)?;
    std::fs::rename(&partial, to)
}
