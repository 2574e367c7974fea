//! The audit log: a JSON line per tool call and per SSH command, allowed or
//! denied, with no secret in it, in a file only this user can read: created
//! 0600, narrowed to 0600, and never reached through a symlink.

use std::os::unix::fs::PermissionsExt;

use serde_json::{Value, json};

use crate::server::{Server, exec_args};
use crate::sshd::{Sshd, TEST_PASSWORD, TEST_USER};

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

#[tokio::test]
async fn every_call_and_command_is_audited_without_secrets() {
    let sshd = Sshd::start();
    let builder = Server::builder();
    let log = builder.home().join("audit").join("audit.jsonl");
    let server = builder
        .arg("--audit-log")
        .arg(log.display().to_string())
        .spawn()
        .await;

    let args = json!({"host": "127.0.0.1", "port": sshd.port(), "username": TEST_USER,
                      "password": TEST_PASSWORD, "command": "echo audited; exit 3"});
    server.call("execute_command", args).await;
    server
        .call("execute_command", exec_args(&sshd, "true"))
        .await;
    server.call("list_sessions", json!({})).await;
    let _ = server
        .try_call("execute_command", json!({"host": "h"}))
        .await;

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains(TEST_PASSWORD),
        "the password is in the audit log"
    );
    let mode = std::fs::metadata(&log).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let entries = lines(&log);
    let ssh: Vec<&Value> = entries
        .iter()
        .filter(|e| e["kind"] == "ssh_command")
        .collect();
    assert_eq!(ssh.len(), 2, "{entries:#?}");
    let first = ssh[0];
    assert_eq!(first["component"], "built-in:ssh-tools");
    assert_eq!(first["tool"], "execute_command");
    assert_eq!(
        first["target"],
        format!("{TEST_USER}@127.0.0.1:{}", sshd.port())
    );
    assert_eq!(first["command"], "echo audited; exit 3");
    assert_eq!(first["decision"], "allowed");
    assert_eq!(first["exit_status"], 3);
    assert_eq!(first["bytes_out"], 8);
    assert!(first["duration_ms"].is_u64());
    assert!(first["time"].as_str().unwrap().ends_with('Z'));

    let calls: Vec<&Value> = entries
        .iter()
        .filter(|e| e["kind"] == "tool_call")
        .collect();
    let tools: Vec<&str> = calls.iter().map(|e| e["tool"].as_str().unwrap()).collect();
    assert_eq!(
        tools,
        [
            "execute_command",
            "execute_command",
            "list_sessions",
            "execute_command"
        ]
    );
    assert_eq!(calls[3]["decision"], "denied: invalid arguments");
}

#[tokio::test]
async fn a_denied_plugin_command_is_audited_as_denied() {
    let sshd = Sshd::start();
    let builder = crate::plugins::install_plugin(
        Server::builder(),
        &crate::plugins::guest_wasm("hostile_tools"),
        "hostile",
        Some("[requests]\nhosts = [\"*\"]\nusers = [\"*\"]\ncommands = [[\"id\"]]\n"),
        "[plugins.hostile]\nhosts = [\"*\"]\nusers = [\"*\"]\ncommands = [[\"id\"]]\n",
    );
    let log = builder.home().join("audit.jsonl");
    let server = builder
        .arg("--audit-log")
        .arg(log.display().to_string())
        .spawn()
        .await;
    let args = json!({"host": "127.0.0.1", "port": sshd.port(), "username": TEST_USER,
                      "command": "id; cat /etc/shadow"});
    server.call("hostile_shell", args).await;
    let denied: Vec<Value> = lines(&log)
        .into_iter()
        .filter(|e| e["kind"] == "ssh_command")
        .collect();
    assert_eq!(denied.len(), 1);
    assert_eq!(
        denied[0]["component"].as_str().unwrap().rsplit('/').next(),
        Some("hostile.wasm")
    );
    assert_eq!(denied[0]["command"], "id; cat /etc/shadow");
    assert!(
        denied[0]["decision"]
            .as_str()
            .unwrap()
            .starts_with("denied: "),
        "{:?}",
        denied[0]
    );
}

/// Runs the server with an empty stdin (it stops once tools are loaded,
/// as initialization then fails): its stderr.
async fn start_with_audit_log(builder: &crate::server::Builder, log: &std::path::Path) -> String {
    let mut command = builder.command();
    let out = command
        .arg("--audit-log")
        .arg(log)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn an_audit_log_that_is_a_symlink_or_someone_elses_file_is_refused_at_startup() {
    let builder = Server::builder();
    let target = builder.home().join("victim");
    std::fs::write(&target, "untouched\n").unwrap();
    let link = builder.home().join("audit.jsonl");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let stderr = start_with_audit_log(&builder, &link).await;
    assert!(
        stderr.contains("audit log") && stderr.contains("symbolic link"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched\n");
    let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
    assert_ne!(mode, 0o600, "the symlink's target was chmodded");

    let builder = Server::builder();
    let theirs = builder.home().join("theirs.jsonl");
    std::fs::write(&theirs, "").unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), None).unwrap();
    let stderr = start_with_audit_log(&builder, &theirs).await;
    assert!(stderr.contains("owned by uid 65534"), "{stderr}");
}

#[tokio::test]
async fn an_existing_audit_log_readable_by_others_is_narrowed_to_0600() {
    let builder = Server::builder();
    let log = builder.home().join("audit.jsonl");
    std::fs::write(&log, "").unwrap();
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o644)).unwrap();
    let stderr = start_with_audit_log(&builder, &log).await;
    assert!(stderr.contains("narrowing it to 0600"), "{stderr}");
    let mode = std::fs::metadata(&log).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[tokio::test]
async fn a_refused_listing_or_closing_of_sessions_is_audited_as_denied() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let arg = log.display().to_string();
    let server = crate::plugins::with_hostile_plugin(&["--audit-log", &arg]).await;
    server.call("hostile_sessions", json!({})).await;
    let refused: Vec<Value> = lines(&log)
        .into_iter()
        .filter(|e| e["kind"] == "ssh_sessions")
        .collect();
    let operations: Vec<&str> = refused
        .iter()
        .map(|e| e["operation"].as_str().unwrap())
        .collect();
    assert_eq!(operations, ["list-sessions", "close-all-sessions"]);
    for entry in &refused {
        assert_eq!(entry["tool"], "hostile_sessions");
        let decision = entry["decision"].as_str().unwrap();
        assert!(
            decision.starts_with("denied: ") && decision.contains("sessions"),
            "{entry}"
        );
    }
}
