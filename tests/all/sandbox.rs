//! The sandbox's walls under attack by hostile components: a guest that
//! waits instead of computing, one that imports WASI it was not given, and
//! floods of log lines, denials and progress reports.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::plugins::{
    BUILTIN_TOOLS, HOSTILE_GRANT, HOSTILE_MANIFEST, guest_wasm, install_plugin, still_serves,
    with_hostile_plugin,
};
use crate::server::{BIN, Server, structured, tool_error};
use crate::sshd::TEST_USER;

#[tokio::test]
async fn a_guest_that_sleeps_is_stopped_at_its_time_limit() {
    // An hour of sleep, which epochs alone never saw.
    crate::plugins::stopped_at_a_one_second_limit("hostile_sleep").await;
}

#[tokio::test]
async fn a_component_whose_list_tools_sleeps_is_skipped_and_the_server_starts() {
    let started = Instant::now();
    let server = install_plugin(
        Server::builder(),
        &guest_wasm("sleepy_list"),
        "sleepy",
        None,
        "",
    )
    .arg("--guest-cpu-limit")
    .arg("1")
    .spawn()
    .await;
    // It used to hang initialize for the hour the guest sleeps.
    assert!(
        started.elapsed() < Duration::from_secs(50),
        "initialize took {:?}",
        started.elapsed()
    );
    let tools = server.client.list_all_tools().await.unwrap();
    assert_eq!(tools.len(), BUILTIN_TOOLS);
    let log = server.log();
    assert!(
        log.contains("sleepy.wasm") && log.contains("exceeded its time limit"),
        "{log}"
    );
    still_serves(&server).await;
}

/// `plugin check` on a fixture, killed if it takes longer than `limit`.
fn plugin_check_within(wasm: &str, limit: Duration) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("candidate.wasm");
    std::fs::copy(guest_wasm(wasm), &file).unwrap();
    let stderr = dir.path().join("stderr");
    let mut child = Command::new(BIN)
        .args([
            "--cache-dir",
            crate::server::shared_cache().to_str().unwrap(),
            "plugin",
            "check",
        ])
        .arg(&file)
        .env("HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let status = crate::server::exit_within(&mut child, limit, || format!("plugin check {wasm}"));
    (
        status.success(),
        std::fs::read_to_string(&stderr).unwrap_or_default(),
    )
}

#[test]
fn plugin_check_fails_within_seconds_on_a_component_whose_list_tools_sleeps() {
    // The 2 s list-tools budget, plus compiling on a loaded machine.
    let (ok, err) = plugin_check_within("sleepy_list", Duration::from_secs(60));
    assert!(!ok, "it passed");
    assert!(err.contains("exceeded its time limit"), "{err}");
}

#[tokio::test]
async fn a_component_importing_sockets_is_skipped_naming_the_interface() {
    let server = install_plugin(
        Server::builder(),
        &guest_wasm("net_probe"),
        "netprobe",
        None,
        "",
    )
    .spawn()
    .await;
    let tools = server.client.list_all_tools().await.unwrap();
    assert_eq!(tools.len(), BUILTIN_TOOLS);
    let log = server.log();
    assert!(
        log.contains("netprobe.wasm: not a usable tool component") && log.contains("wasi:sockets"),
        "{log}"
    );
    let (ok, err) = plugin_check_within("net_probe", Duration::from_secs(120));
    assert!(!ok && err.contains("wasi:sockets"), "{err}");
}

#[tokio::test]
async fn a_log_flood_is_capped_per_call_and_cannot_forge_lines() {
    let server = with_hostile_plugin(&["--guest-cpu-limit", "1"]).await;
    let before = server.log().len();
    let res = server.call("hostile_log_flood", json!({})).await;
    assert!(
        tool_error(&res).contains("time limit"),
        "{}",
        tool_error(&res)
    );
    let log = server.log();
    let written = log.len() - before;
    assert!(written < 100 << 10, "{written} bytes logged for one call");
    assert!(
        log.contains("bytes of log dropped"),
        "no notice of the drop"
    );
    assert!(
        !log.lines().any(|l| l.starts_with("FORGED-LINE")),
        "a guest forged a log line"
    );
    still_serves(&server).await;
}

#[tokio::test]
async fn huge_denied_hosts_users_argv_and_commands_stay_small_in_every_log() {
    let audit_dir = tempfile::tempdir().unwrap();
    let audit = audit_dir.path().join("audit.jsonl");
    let audit_arg = audit.display().to_string();
    let server = with_hostile_plugin(&["--audit-log", &audit_arg]).await;
    let before = server.log().len();
    let res = server
        .call(
            "hostile_huge_denials",
            json!({"port": 1, "username": TEST_USER}),
        )
        .await;
    let errors = structured(&res)["errors"].as_array().unwrap().clone();
    assert_eq!(errors.len(), 4);
    for e in &errors {
        let e = e.as_str().unwrap();
        // A 1 MiB host or user name is refused before the grant is even
        // consulted: it cannot be resolved.
        assert!(
            e.starts_with("Denied") || e.starts_with("Invalid argument"),
            "{}",
            &e[..e.len().min(300)]
        );
        assert!(e.len() < 2 << 10, "a denial of {} bytes", e.len());
    }
    let written = server.log().len() - before;
    assert!(written < 100 << 10, "{written} bytes logged for one call");
    let text = std::fs::read_to_string(&audit).unwrap();
    let denied: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("\"ssh_command\"") && l.contains("\"denied: "))
        .collect();
    assert_eq!(denied.len(), 4, "{}", &text[..text.len().min(2000)]);
    for line in text.lines() {
        assert!(
            line.len() < 16 << 10,
            "an audit line of {} bytes",
            line.len()
        );
        let _: Value = serde_json::from_str(line).unwrap();
    }
    assert!(text.contains("more bytes cut"), "no marker of the cut");
}

#[tokio::test]
async fn guest_progress_reaches_the_client_finite_and_short() {
    let builder = install_plugin(
        Server::builder(),
        &guest_wasm("hostile_tools"),
        "hostile",
        Some(HOSTILE_MANIFEST),
        HOSTILE_GRANT,
    );
    let mut child = builder
        .command()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for msg in [
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}),
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{
            "name": "hostile_progress_flood", "arguments": {}, "_meta": {"progressToken": "flood"}}}),
    ] {
        stdin
            .write_all(format!("{msg}\n").as_bytes())
            .await
            .unwrap();
    }
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut progress = Vec::new();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let msg: Value = serde_json::from_str(&line).unwrap();
            if msg["id"] == 2 {
                return msg;
            }
            if msg["method"] == "notifications/progress" {
                progress.push(msg["params"].clone());
            }
        }
        panic!("the server closed stdout");
    };
    let response = tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("no answer in 60 s");
    assert_eq!(response["result"]["isError"], false, "{response}");
    assert!(progress.len() >= 2, "{} notifications", progress.len());
    for p in &progress {
        let value = p["progress"].as_f64();
        assert!(
            value.is_some_and(f64::is_finite),
            "progress {}",
            p["progress"]
        );
        let total = &p["total"];
        assert!(
            total.is_null() && p.get("total").is_none() || total.as_f64().is_some(),
            "total {total}"
        );
        let message = p["message"].as_str().unwrap_or_default();
        assert!(
            message.len() <= 1100,
            "a message of {} bytes",
            message.len()
        );
    }
    drop(stdin);
}

#[tokio::test]
async fn a_signal_answers_guests_that_spin_or_sleep_and_the_server_leaves() {
    // A cancelled guest keeps a short grace of its own time, not the
    // rest of its budget: these two never return, and must be answered
    // within rmcp's drain after SIGTERM, not dropped unanswered.
    let server = with_hostile_plugin(&["--guest-cpu-limit", "60"]).await;
    let spin = server.try_call("hostile_spin", json!({}));
    let sleep = server.try_call("hostile_sleep", json!({}));
    let signal = async {
        // Both calls are in their guests by then (sequencing, not a
        // measure: a late signal only makes the guests run longer).
        tokio::time::sleep(Duration::from_secs(1)).await;
        let sent = Command::new("kill")
            .args(["-TERM", &server.pid.to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    };
    // A hang check: without the cut, each runs out its 60 s budget.
    let (spin, sleep, ()) = tokio::time::timeout(Duration::from_secs(45), async {
        tokio::join!(spin, sleep, signal)
    })
    .await
    .expect("the calls were neither answered nor dropped");
    for (tool, res) in [("hostile_spin", spin), ("hostile_sleep", sleep)] {
        let res = res.unwrap_or_else(|e| panic!("{tool}: no answer: {e}\n{}", server.log()));
        let msg = tool_error(&res);
        assert!(msg.contains("cancelled by the client"), "{tool}: {msg}");
    }
    let proc = format!("/proc/{}", server.pid);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::path::Path::new(&proc).exists()
        && std::fs::read_to_string(format!("{proc}/stat")).is_ok_and(|s| !s.contains(") Z "))
    {
        assert!(Instant::now() < deadline, "the server did not leave");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
