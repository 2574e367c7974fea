//! The plugin host as seen from outside: the compile cache, the plugin
//! directory, and the startup errors a bad plugin set produces.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use std::time::{Duration, Instant};

use serde_json::json;

use crate::server::{BIN, Server, exec_args, structured, text, tool_error};
use crate::sshd::{Sshd, TEST_PASSWORD, TEST_USER};

/// Tools the built-in components export.
pub const BUILTIN_TOOLS: usize = crate::server::BUILT_IN_TOOLS.len();

pub use crate::server::{guest_wasm, install_plugin};

fn builtin_wasm() -> PathBuf {
    guest_wasm("ssh_tools")
}

/// The hostile component asks for much; the operator grants it the test
/// host and `id`, but no credentials and no shell.
pub const HOSTILE_MANIFEST: &str = r#"
[requests]
hosts = ["*"]
users = ["*"]
commands = [["id"]]
shell = true
credentials = true
all_sessions = true
"#;
pub const HOSTILE_GRANT: &str = r#"
[plugins.hostile]
hosts = ["127.0.0.1"]
users = ["mcpssh-test"]
commands = [["id"]]
"#;

/// A server with the hostile test component in its plugin directory.
pub async fn with_hostile_plugin(extra: &[&str]) -> Server {
    let mut builder = install_plugin(
        Server::builder(),
        &guest_wasm("hostile_tools"),
        "hostile",
        Some(HOSTILE_MANIFEST),
        HOSTILE_GRANT,
    );
    for a in extra {
        builder = builder.arg(*a);
    }
    builder.spawn().await
}

/// The server survived: a built-in tool still answers.
pub async fn still_serves(server: &Server) {
    let res = server.call("list_sessions", json!({})).await;
    assert_eq!(res.is_error, Some(false), "{}", text(&res));
}

/// Calls the hostile `tool` under a 1 s guest budget: it must fail naming
/// the limit, well before the hour it would take, and the server serves on.
pub async fn stopped_at_a_one_second_limit(tool: &str) {
    let server = with_hostile_plugin(&["--guest-cpu-limit", "1"]).await;
    let started = Instant::now();
    let res = server.call(tool, json!({})).await;
    let took = started.elapsed();
    let msg = tool_error(&res);
    assert!(
        msg.contains("hostile.wasm") && msg.contains("exceeded its time limit of 1000 ms"),
        "{msg}"
    );
    // 1 s of budget plus start-up on a loaded machine.
    assert!(took < Duration::from_secs(10), "stopped after {took:?}");
    still_serves(&server).await;
}

#[tokio::test]
async fn a_guest_in_an_endless_loop_is_stopped() {
    stopped_at_a_one_second_limit("hostile_spin").await;
}

#[tokio::test]
async fn a_guest_panic_is_a_tool_error_and_the_next_call_works() {
    let server = with_hostile_plugin(&[]).await;
    for _ in 0..2 {
        let res = server.call("hostile_trap", json!({})).await;
        assert_eq!(res.is_error, Some(true));
        assert!(text(&res).contains("hostile.wasm"), "{}", text(&res));
    }
    assert!(
        server.log().contains("deliberate panic"),
        "guest stderr not logged"
    );
    still_serves(&server).await;
}

#[tokio::test]
async fn a_memory_bomb_is_stopped_at_the_limit() {
    let server = with_hostile_plugin(&["--guest-memory-limit", "64"]).await;
    let res = server.call("hostile_grow", json!({})).await;
    assert_eq!(res.is_error, Some(true));
    assert!(text(&res).contains("hostile.wasm"), "{}", text(&res));
    still_serves(&server).await;
}

#[tokio::test]
async fn a_guest_sees_no_files_environment_or_stdout() {
    let server = with_hostile_plugin(&[]).await;
    let res = server.call("hostile_snoop", json!({})).await;
    assert_eq!(res.is_error, Some(false), "{}", text(&res));
    assert_eq!(
        structured(&res),
        &json!({"file": false, "dir": false, "env_vars": 0})
    );
    assert!(server.log().contains("hostile stderr line"));
    assert!(!server.log().contains("hostile stdout line"));
    still_serves(&server).await;
}

#[tokio::test]
async fn a_plugin_may_not_supply_credentials() {
    let sshd = Sshd::start();
    let server = with_hostile_plugin(&[]).await;
    let res = server
        .call(
            "hostile_supply_credentials",
            json!({"host": "127.0.0.1", "port": sshd.port(), "username": TEST_USER, "password": TEST_PASSWORD}),
        )
        .await;
    assert_eq!(res.is_error, Some(true));
    let msg = text(&res);
    assert!(
        msg.starts_with("Denied") && msg.contains("credentials"),
        "{msg}"
    );
    assert!(!sshd.log().contains("Accepted"), "the plugin logged in");
}

#[tokio::test]
async fn a_plugin_may_not_see_or_close_sessions() {
    let sshd = Sshd::start();
    let server = with_hostile_plugin(&[]).await;
    server
        .call("execute_command", exec_args(&sshd, "true"))
        .await;
    let res = server.call("hostile_sessions", json!({})).await;
    assert_eq!(structured(&res)["seen"], 0);
    assert!(
        structured(&res)["closed"]
            .as_str()
            .unwrap()
            .contains("Denied")
    );
    let listed = server.call("list_sessions", json!({})).await;
    assert_eq!(structured(&listed)["sessions"].as_array().unwrap().len(), 1);
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
    // Mapped from the entries, not copied: only the code that runs is in
    // the server's memory.
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", warm.pid)).unwrap();
    let artifacts: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    assert_eq!(artifacts.len(), 3, "{artifacts:?}");
    for artifact in &artifacts {
        let name = artifact.display().to_string();
        assert!(maps.contains(&name), "{name} is not mapped:\n{maps}");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

/// A cache on a `noexec` mount (as `/tmp` often is) cannot be mapped
/// executable: a warm start copies its entries instead of compiling again.
/// The mount is made in a mount namespace of the test's own (`unshare -m`).
#[test]
fn a_compile_cache_on_a_noexec_mount_is_still_used() {
    let mount = tempfile::tempdir().unwrap();
    let dir = mount.path().display().to_string();
    // Each start ends with stdin, before `initialize`; only its log counts.
    let start = format!(
        "for run in cold warm; do \
         \"$0\" --no-plugins --log mcp_ssh_session::plugins=debug --cache-dir '{dir}/c' \
         </dev/null 2>\"{dir}/$run.log\"; done; cat '{dir}/warm.log'"
    );
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs -o noexec mcpssh-noexec '{dir}' && sh -c \"$1\" \"$0\"",
        ))
        .arg(BIN)
        .arg(&start)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{log}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(log.contains("copying it"), "{log}");
    assert_eq!(log.matches("loaded from compile cache").count(), 3, "{log}");
    assert!(!log.contains("compiled component"), "compiled again: {log}");
}

#[tokio::test]
async fn a_corrupt_cache_entry_is_recompiled_not_loaded() {
    use std::os::unix::fs::PermissionsExt;
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
        // Entries are read-only, for their owner too.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, bytes).unwrap();
    }
    let server = Server::builder()
        .arg("--cache-dir")
        .arg(dir.display().to_string())
        .spawn()
        .await;
    assert!(server.log().contains("corrupt"), "{}", server.log());
    let tools = server.client.list_all_tools().await.unwrap();
    assert_eq!(tools.len(), BUILTIN_TOOLS);
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
    assert_eq!(
        server.client.list_all_tools().await.unwrap().len(),
        BUILTIN_TOOLS
    );
    assert!(server.log().contains("junk.wasm"), "{}", server.log());
}

/// A component built against the frozen mcp-ssh:tools@0.1.0 WIT, before
/// progress and jobs existed, still loads and runs on this host.
#[tokio::test]
async fn a_component_built_against_wit_0_1_0_still_loads_and_runs() {
    let sshd = Sshd::start();
    let grant = "hosts = [\"127.0.0.1\"]\nusers = [\"*\"]\nshell = true\n";
    let server = install_plugin(
        Server::builder(),
        &guest_wasm("legacy_tools"),
        "legacy",
        Some(&format!("[requests]\n{grant}")),
        &format!("[plugins.legacy]\n{grant}ports = [{}]\n", sshd.port()),
    )
    .spawn()
    .await;
    let tools = server.client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "legacy_hostname"));
    // Plugins use the operator's sessions: open one with the built-in tool.
    server.exec(&sshd, "true").await;
    let res = server
        .call(
            "legacy_hostname",
            json!({"host": "127.0.0.1", "port": sshd.port(), "username": TEST_USER}),
        )
        .await;
    assert_eq!(res.is_error, Some(false), "{}", text(&res));
    assert_eq!(text(&res), "legacy-ok\n");
}

#[tokio::test]
async fn a_plugin_without_a_shell_grant_cannot_run_command_lines() {
    let sshd = Sshd::start();
    let server = with_hostile_plugin(&[]).await;
    server.exec(&sshd, "true").await;
    for command in ["id", "id; touch /tmp/x", "id && id", "id\nid"] {
        let res = server
            .call(
                "hostile_shell",
                json!({"host": "127.0.0.1", "port": sshd.port(), "username": TEST_USER, "command": command}),
            )
            .await;
        let msg = crate::server::tool_error(&res);
        assert!(msg.contains("may not run shell command lines"), "{msg}");
    }
}

#[tokio::test]
async fn an_ungranted_host_is_denied() {
    let sshd = Sshd::start();
    let server = with_hostile_plugin(&[]).await;
    let res = server
        .call(
            "hostile_shell",
            json!({"host": "127.0.0.2", "port": sshd.port(), "username": TEST_USER, "command": "id"}),
        )
        .await;
    let msg = crate::server::tool_error(&res);
    assert!(
        msg.contains("\"127.0.0.2\" is not among the granted hosts"),
        "{msg}"
    );
}

#[tokio::test]
async fn stdout_and_stderr_spam_is_contained() {
    let server = with_hostile_plugin(&[]).await;
    let res = server.call("hostile_spam", json!({})).await;
    assert_eq!(text(&res), "spammed");
    let log = server.log();
    let lines = log
        .lines()
        .filter(|l| l.contains("guest stderr: spam"))
        .count();
    assert!(lines > 0 && lines <= 50, "{lines} stderr lines logged");
    assert!(
        log.contains("more bytes not logged"),
        "no notice of what was dropped"
    );
    still_serves(&server).await;
}

#[tokio::test]
async fn a_huge_result_is_refused() {
    let server = with_hostile_plugin(&[]).await;
    let res = server.call("hostile_huge", json!({})).await;
    let msg = crate::server::tool_error(&res);
    assert!(
        msg.contains("hostile.wasm") && msg.contains("more than the 80 MB limit"),
        "{msg}"
    );
    still_serves(&server).await;
}

async fn server_with_only(wasm: &str, name: &str) -> Server {
    install_plugin(Server::builder(), &guest_wasm(wasm), name, None, "")
        .spawn()
        .await
}

#[tokio::test]
async fn a_component_with_an_invalid_schema_is_skipped() {
    let server = server_with_only("bad_schema", "bad").await;
    assert_eq!(
        server.client.list_all_tools().await.unwrap().len(),
        BUILTIN_TOOLS
    );
    let log = server.log();
    assert!(
        log.contains("bad.wasm") && log.contains("input schema of tool bad_schema"),
        "{log}"
    );
    still_serves(&server).await;
}

#[tokio::test]
async fn a_component_built_against_another_wit_major_version_is_refused() {
    let server = server_with_only("wit_major_1", "future").await;
    assert_eq!(
        server.client.list_all_tools().await.unwrap().len(),
        BUILTIN_TOOLS
    );
    let log = server.log();
    assert!(
        log.contains("future.wasm: not a usable tool component"),
        "{log}"
    );
    assert!(
        log.contains("mcp-ssh:tools/") && log.contains("1.0.0"),
        "{log}"
    );
    still_serves(&server).await;
}

/// `plugin check FILE` with the manifest (if any) beside it.
pub fn plugin_check(wasm: &str, manifest: Option<&str>) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("candidate.wasm");
    std::fs::copy(guest_wasm(wasm), &file).unwrap();
    if let Some(m) = manifest {
        std::fs::write(dir.path().join("candidate.toml"), m).unwrap();
    }
    let out = Command::new(BIN)
        .args([
            "--cache-dir",
            crate::server::shared_cache().to_str().unwrap(),
            "plugin",
            "check",
        ])
        .arg(&file)
        .env("HOME", dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn plugin_check_reports_tools_and_the_grants_requested() {
    let manifest = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../guest-tools/examples/disk-usage/disk_usage.toml"),
    )
    .unwrap();
    let (ok, out, err) = plugin_check("disk_usage", Some(&manifest));
    assert!(ok, "{err}");
    assert!(out.starts_with("ok: "), "{out}");
    assert!(out.contains("disk_usage: Disk usage"), "{out}");
    assert!(
        out.contains(r#"commands = [["df", "-P", "-k", "*"]]"#),
        "{out}"
    );
    assert!(out.contains("[plugins.candidate]"), "{out}");
}

#[test]
fn plugin_check_rejects_what_the_server_would_not_load() {
    for (wasm, expect) in [
        ("wit_major_1", "not a usable tool component"),
        ("bad_schema", "input schema of tool bad_schema"),
        ("ssh_tools", "tool name clash"),
    ] {
        let (ok, out, err) = plugin_check(wasm, None);
        assert!(!ok, "{wasm} passed: {out}");
        assert!(out.is_empty(), "{out}");
        assert!(err.contains(expect), "{wasm}: {err}");
    }
}

#[tokio::test]
async fn the_operator_sets_cpu_and_memory_limits_per_component() {
    let grant = format!("{HOSTILE_GRANT}cpu_seconds = 0.5\nmemory_mib = 32\n");
    let server = install_plugin(
        Server::builder(),
        &guest_wasm("hostile_tools"),
        "hostile",
        Some(HOSTILE_MANIFEST),
        &grant,
    )
    .spawn()
    .await;
    let started = Instant::now();
    let res = server.call("hostile_spin", json!({})).await;
    let msg = crate::server::tool_error(&res);
    assert!(msg.contains("time limit of 500 ms"), "{msg}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let res = server.call("hostile_grow", json!({})).await;
    let msg = crate::server::tool_error(&res);
    assert!(msg.contains("memory limit of 32 MiB"), "{msg}");
    still_serves(&server).await;
}
