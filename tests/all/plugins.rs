//! The plugin host as seen from outside: the compile cache, the plugin
//! directory, and the startup errors a bad plugin set produces.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::server::{BIN, Server};

/// The built-in component as build.rs built it.
fn builtin_wasm() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/guest-tools/wasm32-wasip2/release/ssh_tools.wasm")
}

/// Runs the server until it exits on its own (a startup failure).
fn startup_failure(args: &[&str], home: &std::path::Path) -> String {
    let out = Command::new(BIN)
        .args(args)
        .env("HOME", home)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "the server started");
    assert!(
        out.stdout.is_empty(),
        "stdout: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn a_warm_compile_cache_skips_compilation() {
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().join("c");
    let cold = Server::builder()
        .arg("--cache-dir")
        .arg(dir.display().to_string())
        .spawn()
        .await;
    assert!(cold.log().contains("compiled"), "{}", cold.log());
    drop(cold);
    let warm = Server::builder()
        .arg("--cache-dir")
        .arg(dir.display().to_string())
        .spawn()
        .await;
    assert!(
        warm.log().contains("loaded from compile cache"),
        "{}",
        warm.log()
    );
    assert!(!warm.log().contains("compiled component"), "{}", warm.log());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

#[tokio::test]
async fn a_corrupt_cache_entry_is_recompiled_not_loaded() {
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().join("c");
    drop(
        Server::builder()
            .arg("--cache-dir")
            .arg(dir.display().to_string())
            .spawn()
            .await,
    );
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
    }
    let server = Server::builder()
        .arg("--cache-dir")
        .arg(dir.display().to_string())
        .spawn()
        .await;
    assert!(server.log().contains("corrupt"), "{}", server.log());
    let tools = server.client.list_all_tools().await.unwrap();
    assert_eq!(tools.len(), 4);
}

#[test]
fn two_components_exporting_one_tool_name_is_a_startup_error() {
    let home = tempfile::tempdir().unwrap();
    let plugins = home.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::copy(builtin_wasm(), plugins.join("copy.wasm")).unwrap();
    let cache = crate::server::shared_cache();
    let err = startup_failure(
        &[
            "--plugins",
            plugins.to_str().unwrap(),
            "--cache-dir",
            cache.to_str().unwrap(),
        ],
        home.path(),
    );
    assert!(
        err.contains("tool name clash") && err.contains("copy.wasm"),
        "{err}"
    );
}

#[test]
fn a_missing_plugin_directory_given_explicitly_is_a_startup_error() {
    let home = tempfile::tempdir().unwrap();
    let err = startup_failure(&["--plugins", "/nonexistent/plugins"], home.path());
    assert!(err.contains("/nonexistent/plugins"), "{err}");
}

#[tokio::test]
async fn a_file_that_is_not_a_component_is_skipped_with_an_error() {
    let builder = Server::builder();
    let plugins = builder.home().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::write(plugins.join("junk.wasm"), b"\0asm garbage").unwrap();
    let server = builder
        .arg("--plugins")
        .arg(plugins.display().to_string())
        .spawn()
        .await;
    assert_eq!(server.client.list_all_tools().await.unwrap().len(), 4);
    assert!(server.log().contains("junk.wasm"), "{}", server.log());
}
