//! Builds the built-in tool components (the `BUILTIN` crates of
//! `guest-tools/`, for wasm32-wasip2) and generates `builtin_components.rs`,
//! which embeds them, deflated, in the binary. Test fixtures and the
//! example are the tests' to build (`tests/all/server.rs`), not every host
//! build's.

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
        String::from("/// (name, deflated component bytes) of each built-in tool component.\n");
    generated.push_str("pub static COMPONENTS: &[(&str, &[u8])] = &[\n");
    for package in BUILTIN {
        let lib = package.replace('-', "_");
        let wasm = guest_build::wasm_path(&target_dir, &lib);
        if !wasm.exists() {
            fail(&format!("{} was not built", wasm.display()));
        }
        let deflated = out_dir.join(format!("{lib}.wasm.deflate"));
        deflate(&wasm, &deflated);
        generated.push_str(&format!(
            "    ({package:?}, include_bytes!({:?})),\n",
            deflated.display().to_string()
        ));
    }
    generated.push_str("];\n");
    write(&out_dir.join("builtin_components.rs"), &generated);

    println!("cargo:rerun-if-env-changed=MCP_SSH_SESSION_PORTABLE");
    let portable = std::env::var_os("MCP_SSH_SESSION_PORTABLE").is_some();
    if !portable && glibc_has_relr() {
        // The binary is position-independent, so every pointer in its
        // tables has a relocation: 1.7 MB of them in the usual format,
        // 15 KB packed (glibc 2.36 and later read it).
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    if !portable && default_linker_is_lld() {
        // Generic code instantiated for different types often compiles to
        // the same machine code (drop glue above all): one copy of each
        // (0.46 MB). Rust promises no distinct address for a function.
        println!("cargo:rustc-link-arg-bins=-Wl,--icf=all");
    }
}

/// Whether the binary is linked by the LLD that rustc ships and uses by
/// default for x86_64 Linux with glibc (Rust 1.90 and later): no linker
/// named for the target, in the environment or a cargo config (cargo then
/// sets `RUSTC_LINKER`), nor in the flags. Other linkers may not know
/// `--icf`.
fn default_linker_is_lld() -> bool {
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let target = std::env::var("TARGET").unwrap_or_default();
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    target == "x86_64-unknown-linux-gnu"
        && std::env::var_os("RUSTC_LINKER").is_none()
        && !["linker", "link-self-contained", "fuse-ld"]
            .iter()
            .any(|f| flags.contains(f))
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

/// Writes `wasm` deflated to `to`: a component is a third of its size so
/// (0.9 MB of built-ins in 0.3 MB), and the binary already has the
/// inflater, for SSH compression.
fn deflate(wasm: &Path, to: &Path) {
    use std::io::Write;
    let bytes =
        std::fs::read(wasm).unwrap_or_else(|e| fail(&format!("reading {}: {e}", wasm.display())));
    let mut encoder =
        flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    let deflated = encoder
        .write_all(&bytes)
        .and_then(|()| encoder.finish())
        .unwrap_or_else(|e| fail(&format!("deflating {}: {e}", wasm.display())));
    std::fs::write(to, deflated)
        .unwrap_or_else(|e| fail(&format!("writing {}: {e}", to.display())));
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
