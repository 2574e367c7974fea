//! Building guest components (`guest-tools/`, for wasm32-wasip2): the one
//! cargo command that `host/build.rs` runs for the built-in components and
//! the integration tests run for their fixtures (`tests/all/server.rs`
//! includes this file), so both build with the same settings into the same
//! place and share what they compiled.

use std::path::{Path, PathBuf};
use std::process::Command;

pub const TARGET: &str = "wasm32-wasip2";

/// The guest builds' target dir under the host's: a dir of its own, since
/// sharing the host's would make the two cargo processes wait on each
/// other's lock.
pub fn guest_target_dir(host_target_dir: &Path) -> PathBuf {
    host_target_dir.join("guest-tools")
}

/// The component a guest crate builds to, by its library name
/// (`ssh_tools`, `hostile_tools`).
pub fn wasm_path(guest_target_dir: &Path, lib: &str) -> PathBuf {
    guest_target_dir
        .join(TARGET)
        .join("release")
        .join(format!("{lib}.wasm"))
}

/// `cargo build --release` in `guest-tools/` (under the repository `root`)
/// of `packages`, or of the whole guest workspace when `packages` is empty.
pub fn build(root: &Path, guest_target_dir: &Path, packages: &[&str]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root.join("guest-tools"))
        .args(["build", "--release", "--locked", "--target", TARGET])
        .arg("--target-dir")
        .arg(guest_target_dir);
    if packages.is_empty() {
        cmd.arg("--workspace");
    }
    for p in packages {
        cmd.args(["-p", p]);
    }
    // Settings meant for the host build (or for the test run) must not leak
    // into the guest build.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        let host_only = key.starts_with("CARGO_") && key != "CARGO_HOME"
            || key.starts_with("CLIPPY_")
            || matches!(
                key.as_str(),
                "RUSTFLAGS" | "RUSTC_WRAPPER" | "RUSTC_WORKSPACE_WRAPPER"
            );
        if host_only {
            cmd.env_remove(&key);
        }
    }
    let status = cmd.status().map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "building the guest components failed (see above). If the target is missing: rustup target add {TARGET}"
        ))
    }
}
