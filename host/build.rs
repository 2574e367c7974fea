//! Builds the built-in tool components (`guest-tools/`, for wasm32-wasip2)
//! and generates `builtin_components.rs`, which embeds them in the binary.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The guest crates whose components ship inside the host, by library name.
const BUILTIN: &[&str] = &["ssh_tools", "job_tools"];
const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let root = manifest_dir.parent().unwrap_or(&manifest_dir).to_path_buf();
    let guests = root.join("guest-tools");
    let out_dir = PathBuf::from(env("OUT_DIR"));
    println!(
        "cargo:rerun-if-changed={}",
        guests.join("Cargo.toml").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        guests.join("Cargo.lock").display()
    );
    for dir in ["sdk", "ssh-tools", "job-tools", "examples", "test-fixtures"] {
        println!("cargo:rerun-if-changed={}", guests.join(dir).display());
    }
    println!("cargo:rerun-if-changed={}", root.join("wit").display());

    // A target dir of its own: sharing the host's would make the two cargo
    // processes wait on each other's lock.
    let target_dir = root.join("target").join("guest-tools");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&guests)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            TARGET,
            "--target-dir",
        ])
        .arg(&target_dir);
    // Settings meant for the host build must not leak into the guest build.
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
    let status = cmd
        .status()
        .unwrap_or_else(|e| fail(&format!("cannot run cargo: {e}")));
    if !status.success() {
        fail(&format!(
            "building the guest tools failed (see above). If the target is missing: rustup target add {TARGET}"
        ));
    }

    let mut generated =
        String::from("/// (name, component bytes) of each built-in tool component.\n");
    generated.push_str("pub static COMPONENTS: &[(&str, &[u8])] = &[\n");
    for name in BUILTIN {
        let wasm = target_dir
            .join(TARGET)
            .join("release")
            .join(format!("{name}.wasm"));
        if !wasm.exists() {
            fail(&format!("{} was not built", wasm.display()));
        }
        let copy = out_dir.join(format!("{name}.wasm"));
        std::fs::copy(&wasm, &copy).unwrap_or_else(|e| fail(&format!("copying {name}: {e}")));
        generated.push_str(&format!(
            "    ({:?}, include_bytes!({:?})),\n",
            name.replace('_', "-"),
            copy.display().to_string()
        ));
    }
    generated.push_str("];\n");
    write(&out_dir.join("builtin_components.rs"), &generated);
}

fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| fail(&format!("{key} is not set")))
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text)
        .unwrap_or_else(|e| fail(&format!("writing {}: {e}", path.display())));
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1)
}
