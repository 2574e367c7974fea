//! Host-key checking against known_hosts: accept-new records, a changed key
//! is refused naming both fingerprints, strict refuses the unknown.

use serde_json::json;

use crate::server::{Server, exec_args, text, tool_error};
use crate::sshd::Sshd;

#[tokio::test]
async fn accept_new_records_the_host_key() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    server.exec(&sshd, "true").await;
    let known = std::fs::read_to_string(server.known_hosts()).unwrap();
    let recorded = std::fs::read_to_string(sshd.dir().join("host_ed25519.pub")).unwrap();
    let key = recorded
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        known.contains(&format!("[127.0.0.1]:{} {key}", sshd.port())),
        "known_hosts:\n{known}"
    );
    // OpenSSH's own client accepts what we wrote.
    let out = std::process::Command::new("ssh-keygen")
        .arg("-F")
        .arg(format!("[127.0.0.1]:{}", sshd.port()))
        .arg("-f")
        .arg(server.known_hosts())
        .output()
        .unwrap();
    assert!(out.status.success(), "ssh-keygen -F did not find the entry");
}

#[tokio::test]
async fn a_changed_host_key_is_refused_naming_both_fingerprints() {
    let mut sshd = Sshd::start();
    let server = Server::start().await;
    server.exec(&sshd, "true").await;
    let old = sshd.host_key_fingerprint();
    server.call("close_all_sessions", json!({})).await;
    sshd.change_host_key();
    let new = sshd.host_key_fingerprint();
    assert_ne!(old, new);

    let res = server
        .call("execute_command", exec_args(&sshd, "echo should-not-run"))
        .await;
    let msg = tool_error(&res);
    assert!(msg.starts_with("Host key rejected"), "{msg}");
    assert!(msg.contains(&old) && msg.contains(&new), "{msg}");
    assert!(
        msg.contains(&format!("[127.0.0.1]:{}", sshd.port())),
        "{msg}"
    );
    // Refused before authenticating: no credential went to the impostor.
    assert_eq!(sshd.log().matches("Accepted publickey").count(), 1);
    // The old entry is kept, not overwritten.
    let known = std::fs::read_to_string(server.known_hosts()).unwrap();
    assert_eq!(known.lines().count(), 1);
}

#[tokio::test]
async fn a_changed_host_key_is_refused_on_reconnect_too() {
    let mut sshd = Sshd::start();
    let server = Server::start().await;
    server.exec(&sshd, "true").await;
    // The session is still cached: the reconnect after the restart must
    // check the key as strictly as a first connection.
    sshd.change_host_key();
    let res = server
        .call(
            "execute_command",
            crate::server::bare_args(&sshd, "echo should-not-run"),
        )
        .await;
    assert_eq!(res.is_error, Some(true));
    assert!(text(&res).contains("CHANGED"), "{}", text(&res));
}

#[tokio::test]
async fn strict_policy_refuses_an_unknown_host() {
    let sshd = Sshd::start();
    let server = Server::builder()
        .arg("--host-key-policy")
        .arg("strict")
        .spawn()
        .await;
    let res = server
        .call("execute_command", exec_args(&sshd, "true"))
        .await;
    let msg = tool_error(&res);
    assert!(
        msg.contains("strict") && msg.contains(&sshd.host_key_fingerprint()),
        "{msg}"
    );
    assert!(
        !server.known_hosts().exists()
            || std::fs::read_to_string(server.known_hosts())
                .unwrap()
                .is_empty()
    );
}

#[tokio::test]
async fn hashed_known_hosts_entries_are_understood() {
    let sshd = Sshd::start();
    let builder = Server::builder().arg("--host-key-policy").arg("strict");
    let known = builder.home().join(".ssh/known_hosts");
    let key = std::fs::read_to_string(sshd.dir().join("host_ed25519.pub")).unwrap();
    let key = key.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    std::fs::write(&known, format!("[127.0.0.1]:{} {key}\n", sshd.port())).unwrap();
    // Let OpenSSH hash the file, as HashKnownHosts does.
    let hashed = std::process::Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&known)
        .output()
        .unwrap();
    assert!(hashed.status.success());
    assert!(std::fs::read_to_string(&known).unwrap().starts_with("|1|"));
    let server = builder.spawn().await;
    server.exec(&sshd, "true").await;
}

#[tokio::test]
async fn policy_off_accepts_any_key_and_records_nothing() {
    let mut sshd = Sshd::start();
    let server = Server::builder()
        .arg("--host-key-policy")
        .arg("off")
        .spawn()
        .await;
    server.exec(&sshd, "true").await;
    server.call("close_all_sessions", json!({})).await;
    sshd.change_host_key();
    server.exec(&sshd, "true").await;
    assert!(!server.known_hosts().exists());
}
