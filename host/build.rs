//! Builds the built-in tool components (the `BUILTIN` crates of
//! `guest-tools/`, for wasm32-wasip2) and generates `builtin_components.rs`,
//! which embeds them in the binary. Test fixtures and the example are the
//! tests' to build (`tests/all/server.rs`), not every host build's.

mod guest_build;

use std::path::{Path, PathBuf};

/// The guest packages whose components ship inside the host; each is also
/// the directory it lives in under `guest-tools/`.
const BUILTIN: &[&str] = &["ssh-tools", "job-tools", "file-tools"];

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let root = manifest_dir.parent().unwrap_or(&manifest_dir).to_path_buf();
    let guests = root.join("guest-tools");
    let out_dir = PathBuf::from(env("OUT_DIR"));
    for path in ["Cargo.toml", "Cargo.lock", "sdk"].iter().chain(BUILTIN) {
        println!("cargo:rerun-if-changed={}", guests.join(path).display());
    }
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    println!("cargo:rerun-if-changed=guest_build.rs");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");

    // Where the host's own outputs go, as cargo was told by the
    // environment; a target-dir set in a cargo config file is not visible
    // here, and the guests then build under ./target.
    let host_target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    };
    let target_dir = guest_build::guest_target_dir(&host_target);
    if let Err(e) = guest_build::build(&root, &target_dir, BUILTIN) {
        fail(&e);
    }

    let mut generated =
        String::from("/// (name, component bytes) of each built-in tool component.\n");
    generated.push_str("pub static COMPONENTS: &[(&str, &[u8])] = &[\n");
    for package in BUILTIN {
        let lib = package.replace('-', "_");
        let wasm = guest_build::wasm_path(&target_dir, &lib);
        if !wasm.exists() {
            fail(&format!("{} was not built", wasm.display()));
        }
        let copy = out_dir.join(format!("{lib}.wasm"));
        std::fs::copy(&wasm, &copy).unwrap_or_else(|e| fail(&format!("copying {lib}: {e}")));
        generated.push_str(&format!(
            "    ({package:?}, include_bytes!({:?})),\n",
            copy.display().to_string()
        ));
    }
    generated.push_str("];\n");
    write(&out_dir.join("builtin_components.rs"), &generated);

    println!("cargo:rerun-if-env-changed=MCP_SSH_SESSION_PORTABLE");
    if std::env::var_os("MCP_SSH_SESSION_PORTABLE").is_none() && glibc_has_relr() {
        // The binary is position-independent, so every pointer in its
        // tables has a relocation: 1.7 MB of them in the usual format,
        // 15 KB packed (glibc 2.36 and later read it).
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether the binary is built for the glibc it is built on (no cross
/// build) and that glibc reads packed relocations: a binary with them does
/// not start on an older one. `MCP_SSH_SESSION_PORTABLE` set at build time
/// leaves them out, for a binary to copy to machines with an older glibc
/// (or built with a tool that links against one, such as cargo-zigbuild).
fn glibc_has_relr() -> bool {
    let native = std::env::var("HOST").ok() == std::env::var("TARGET").ok();
    let gnu = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if !native || !gnu {
        return false;
    }
    // "glibc 2.36"
    let Ok(out) = std::process::Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
    else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut version = text
        .trim()
        .strip_prefix("glibc ")
        .unwrap_or("")
        .split('.')
        .map(|n| n.parse::<u32>().ok());
    matches!(
        (version.next(), version.next()),
        (Some(Some(major)), Some(Some(minor))) if (major, minor) >= (2, 36)
    )
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
