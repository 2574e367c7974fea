//! Host-key checking against known_hosts: accept-new records, a changed key
//! is refused naming both fingerprints, strict refuses the unknown.

use serde_json::json;

use crate::server::{Server, exec_args, password_args, text, tool_error};
use crate::sshd::{Sshd, TEST_PASSWORD, TEST_USER};

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

/// `sshd`'s current host key as `ALGORITHM BASE64`.
fn host_key(sshd: &Sshd) -> String {
    let key = std::fs::read_to_string(sshd.host_key_public()).unwrap();
    key.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

/// The known_hosts line of `sshd`'s current host key for `[127.0.0.1]:port`.
fn known_line(sshd: &Sshd) -> String {
    format!("[127.0.0.1]:{} {}\n", sshd.port(), host_key(sshd))
}

#[tokio::test]
async fn a_host_known_by_ed25519_that_shows_only_rsa_is_refused_before_any_password_is_sent() {
    let mut sshd = Sshd::start();
    let server = Server::start().await;
    server.exec(&sshd, "true").await;
    let known = std::fs::read_to_string(server.known_hosts()).unwrap();
    let old = sshd.host_key_fingerprint();
    server.call("close_all_sessions", json!({})).await;
    sshd.change_host_key_type("rsa");
    let new = sshd.host_key_fingerprint();

    let strict = Server::builder().arg("--host-key-policy").arg("strict");
    std::fs::write(strict.home().join(".ssh/known_hosts"), &known).unwrap();
    let strict = strict.spawn().await;
    for (policy, server) in [("accept-new", &server), ("strict", &strict)] {
        let res = server
            .call(
                "execute_command",
                password_args(&sshd, TEST_PASSWORD, "echo should-not-run"),
            )
            .await;
        let msg = tool_error(&res);
        assert!(msg.contains("CHANGED"), "{policy}: {msg}");
        assert!(msg.contains(&old) && msg.contains(&new), "{policy}: {msg}");
        assert!(msg.contains("ssh-keygen -f"), "{policy}: {msg}");
        // Nothing learnt: the ed25519 line alone.
        assert_eq!(
            std::fs::read_to_string(server.known_hosts()).unwrap(),
            known,
            "{policy}"
        );
    }
    // Refused before authenticating: the impostor never saw a password.
    let log = sshd.log();
    assert!(!log.contains("password for"), "sshd saw a password:\n{log}");
}

#[tokio::test]
async fn a_host_with_a_known_rsa_key_and_a_new_ed25519_key_negotiates_the_known_one() {
    let mut sshd = Sshd::start();
    sshd.change_host_key_type("rsa");
    let builder = Server::builder().arg("--host-key-policy").arg("strict");
    std::fs::write(builder.home().join(".ssh/known_hosts"), known_line(&sshd)).unwrap();
    // ed25519 is the default first choice: only offering the known type
    // first makes the server show its RSA key.
    sshd.add_host_key_type("ed25519");
    let server = builder.spawn().await;
    server.exec(&sshd, "true").await;
}

#[tokio::test]
async fn concurrent_first_contacts_with_different_users_learn_one_key() {
    let sshd = Sshd::start();
    // Many other hosts make each check take a while, so the contacts
    // overlap between reading the file and recording the key.
    let key = host_key(&sshd);
    let others: String = (0..3_000)
        .map(|i| format!("[10.9.{}.{}]:22 {key}\n", i / 250, i % 250))
        .collect();
    let builder = Server::builder();
    let known_hosts = builder.home().join(".ssh/known_hosts");
    std::fs::write(&known_hosts, &others).unwrap();
    let server = builder.spawn().await;
    let calls = (0..16).map(|i| {
        let user = if i % 2 == 0 {
            TEST_USER.to_string()
        } else {
            format!("mcpssh-nouser-{i}")
        };
        server.call(
            "execute_command",
            json!({
                "host": "127.0.0.1",
                "port": sshd.port(),
                "username": user,
                "password": TEST_PASSWORD,
                "command": "true",
            }),
        )
    });
    futures::future::join_all(calls).await;
    let known = std::fs::read_to_string(known_hosts).unwrap();
    let learnt = known.strip_prefix(&others).unwrap_or(&known);
    assert_eq!(learnt, known_line(&sshd), "lines learnt:\n{learnt}");
}
