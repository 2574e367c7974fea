//! OpenSSH client compatibility: `~/.ssh/config` (aliases, Include, Match,
//! first value wins, the system file), user names and ports from it,
//! keyboard-interactive, certificates, a real ssh-agent, and known_hosts in
//! full (hashed entries the real `ssh` accepts, several files,
//! `@cert-authority`, `@revoked`). Jump hosts are in [`crate::jump`].

use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::server::{
    Server, password_args, session_names, stdout, structured, succeeded, text, tool_error,
};
use crate::sshd::{Options, SshAgent, Sshd, TEST_PASSWORD, TEST_USER};

/// An alias with `HostName`, `User`, `Port` and a token-expanded
/// `IdentityFile`: the call names only the alias and the command.
#[tokio::test]
async fn an_alias_gets_hostname_user_port_and_identity_from_ssh_config() {
    let sshd = Sshd::start();
    let keys = tempfile::tempdir().unwrap();
    // %r and %h in the file name: only the right expansion finds the key.
    let key = keys.path().join(format!("{TEST_USER}@127.0.0.1"));
    std::fs::copy(sshd.client_key(), &key).unwrap();
    let config = format!(
        "Host db-prod\n  HostName 127.0.0.1\n  User {TEST_USER}\n  Port {port}\n  \
         IdentityFile {dir}/%r@%h\n",
        port = sshd.port(),
        dir = keys.path().display()
    );
    let server = Server::builder().ssh_config(&config).spawn().await;
    let res = server
        .call(
            "execute_command",
            json!({"host": "db-prod", "command": "id -un"}),
        )
        .await;
    succeeded(&res);
    assert_eq!(stdout(&res).trim(), TEST_USER);
    let shown = format!("db-prod ({TEST_USER}@127.0.0.1:{})", sshd.port());
    assert_eq!(structured(&res)["session"], shown.as_str());

    let list = server.call("list_sessions", json!({})).await;
    assert_eq!(session_names(&list), std::slice::from_ref(&shown));
    assert!(text(&list).contains(&shown), "{}", text(&list));

    // The same host by its real name rides on the same session.
    let res = server
        .call(
            "execute_command",
            json!({"host": "127.0.0.1", "port": sshd.port(), "username": TEST_USER,
                   "command": "true"}),
        )
        .await;
    succeeded(&res);
    assert_eq!(sshd.log().matches("Accepted publickey").count(), 1);

    let closed = server
        .call("close_session", json!({"host": "db-prod"}))
        .await;
    assert_eq!(structured(&closed)["session"], shown.as_str());
    assert_eq!(structured(&closed)["closed"], true);
    let list = server.call("list_sessions", json!({})).await;
    assert!(session_names(&list).is_empty());
}

/// Explicit arguments beat ssh_config, as on `ssh`'s command line.
#[tokio::test]
async fn explicit_arguments_beat_ssh_config() {
    let sshd = Sshd::start();
    let config = format!(
        "Host *\n  User nobody-such\n  Port 1\n  IdentityFile {}\n",
        sshd.client_key().display()
    );
    let server = Server::builder().ssh_config(&config).spawn().await;
    // The config alone points at port 1 and a user that does not exist.
    let res = server
        .call(
            "execute_command",
            json!({"host": "127.0.0.1", "command": "true"}),
        )
        .await;
    let err = tool_error(&res);
    assert!(err.contains("127.0.0.1:1"), "{err}");
    let res = server
        .call(
            "execute_command",
            json!({"host": "127.0.0.1", "username": TEST_USER, "port": sshd.port(),
                   "command": "id -un"}),
        )
        .await;
    succeeded(&res);
    assert_eq!(stdout(&res).trim(), TEST_USER);
}

/// `Include` with a glob, `Match host` on the resolved name, the system
/// file after the user's, first value wins, and unknown keywords ignored
/// with a debug line.
#[tokio::test]
async fn include_match_and_the_system_file_resolve_like_ssh() {
    let sshd = Sshd::start();
    let server_dir = tempfile::tempdir().unwrap();
    let d = server_dir.path();
    std::fs::create_dir(d.join("conf.d")).unwrap();
    std::fs::write(
        d.join("conf.d/50-web.conf"),
        "Host web\n  HostName 127.0.0.1\n  SendEnv LANG\n  ForwardX11 no\n",
    )
    .unwrap();
    let user_config = format!(
        "Include {}/conf.d/*.conf\n\
         Match host 127.0.0.1\n  IdentityFile {}\n\
         Match originalhost web\n  Port {}\n",
        d.display(),
        sshd.client_key().display(),
        sshd.port()
    );
    // The system file comes second: its Port loses, its User is used.
    let system = d.join("ssh_config");
    std::fs::write(&system, format!("Host *\n  Port 1\n  User {TEST_USER}\n")).unwrap();
    let server = Server::builder()
        .ssh_config(&user_config)
        .arg("--system-ssh-config")
        .arg(system.display().to_string())
        .spawn()
        .await;
    let res = server
        .call(
            "execute_command",
            json!({"host": "web", "command": "id -un"}),
        )
        .await;
    succeeded(&res);
    assert_eq!(stdout(&res).trim(), TEST_USER);
    let log = server.log();
    assert!(
        log.contains("ssh_config keywords not acted on") && log.contains("forwardx11"),
        "no debug line for the ignored keywords:\n{log}"
    );
}

/// A malformed config is a clear tool error naming the file and line, and
/// the server keeps serving.
#[tokio::test]
async fn a_malformed_ssh_config_is_a_clear_error() {
    let server = Server::builder()
        .ssh_config("Host x\n  Port banana\n")
        .spawn()
        .await;
    let res = server
        .call("execute_command", json!({"host": "x", "command": "true"}))
        .await;
    let err = tool_error(&res);
    assert!(err.contains("line 2") && err.contains("banana"), "{err}");
    succeeded(&server.call("list_sessions", json!({})).await);
}

/// Keyboard-interactive is answered from the password when the server
/// offers nothing else (PAM asks "Password:").
#[tokio::test]
async fn keyboard_interactive_only_servers_take_the_password() {
    let sshd = Sshd::start_with(
        "UsePAM yes\nKbdInteractiveAuthentication yes\nPasswordAuthentication no\n",
    );
    let server = Server::start().await;
    let args = |password: &str| password_args(&sshd, password, "id -un");
    let res = server.call("execute_command", args("wrong-password")).await;
    let err = tool_error(&res);
    // The `password` method is not offered: only keyboard-interactive
    // counts as a refusal of the password.
    assert!(
        err.contains("the server rejected password (keyboard-interactive) (it accepts"),
        "{err}"
    );
    assert!(!err.contains("wrong-password"), "{err}");
    let res = server.call("execute_command", args(TEST_PASSWORD)).await;
    succeeded(&res);
    assert_eq!(stdout(&res).trim(), TEST_USER);
    assert!(
        sshd.log().contains("Accepted keyboard-interactive/pam"),
        "{}",
        sshd.log()
    );
}

/// A password for a server that takes keys only: the error says what the
/// server accepts instead of blaming the password.
#[tokio::test]
async fn a_password_for_a_keys_only_server_says_what_it_accepts() {
    let sshd = Sshd::start_with("PasswordAuthentication no\n");
    let server = Server::start().await;
    let res = server
        .call(
            "execute_command",
            password_args(&sshd, TEST_PASSWORD, "true"),
        )
        .await;
    let err = tool_error(&res);
    assert!(err.contains("accepts only publickey"), "{err}");
}

/// `PreferredAuthentications` orders and limits the methods tried.
#[tokio::test]
async fn preferred_authentications_limits_the_methods() {
    let sshd = Sshd::start();
    let config = "Host *\n  PreferredAuthentications publickey\n";
    let server = Server::builder().ssh_config(config).spawn().await;
    let res = server
        .call(
            "execute_command",
            password_args(&sshd, TEST_PASSWORD, "true"),
        )
        .await;
    let err = tool_error(&res);
    assert!(err.contains("ssh_config allows publickey,"), "{err}");
    assert!(!sshd.log().contains("Accepted password"), "{}", sshd.log());
}

/// A user certificate from `CertificateFile`: the key alone is not in
/// authorized_keys, so only the certificate can log in.
#[tokio::test]
async fn certificate_file_logs_in_with_a_user_certificate() {
    let sshd = Sshd::start_opts(Options {
        user_ca: true,
        ..Options::default()
    });
    let key = sshd.cert_key();
    let cert = PathBuf::from(format!("{}-cert.pub", key.display()));
    // Moved away from `KEY-cert.pub`, so only CertificateFile names it.
    let elsewhere = sshd.dir().join("the-cert.pub");
    std::fs::rename(&cert, &elsewhere).unwrap();
    let config = |with_cert: bool| {
        format!(
            "Host ca-host\n  HostName 127.0.0.1\n  Port {}\n  User {TEST_USER}\n  \
             IdentityFile {}\n{}",
            sshd.port(),
            key.display(),
            if with_cert {
                format!("  CertificateFile {}\n", elsewhere.display())
            } else {
                String::new()
            }
        )
    };
    let without = Server::builder().ssh_config(&config(false)).spawn().await;
    let res = without
        .call(
            "execute_command",
            json!({"host": "ca-host", "command": "true"}),
        )
        .await;
    tool_error(&res);

    let server = Server::builder().ssh_config(&config(true)).spawn().await;
    let res = server
        .call(
            "execute_command",
            json!({"host": "ca-host", "command": "id -un"}),
        )
        .await;
    succeeded(&res);
    assert_eq!(stdout(&res).trim(), TEST_USER);
    assert!(
        sshd.log().contains("Accepted publickey") && sshd.log().contains("ID mcpssh-test-user"),
        "{}",
        sshd.log()
    );
}

fn bare(sshd: &Sshd) -> Value {
    json!({"host": "127.0.0.1", "port": sshd.port(), "username": TEST_USER,
           "command": "id -un"})
}

/// `IdentityAgent` names the agent's socket when `SSH_AUTH_SOCK` is unset;
/// `IdentitiesOnly yes` keeps the agent's keys out.
#[tokio::test]
async fn identity_agent_and_identities_only() {
    let sshd = Sshd::start();
    let agent = SshAgent::start_with(&sshd.client_key());
    let agent_line = format!("  IdentityAgent {}\n", agent.socket().display());
    let config = format!("Host *\n{agent_line}");
    let server = Server::builder().ssh_config(&config).spawn().await;
    let res = server.call("execute_command", bare(&sshd)).await;
    succeeded(&res);

    let only = format!("Host *\n  IdentitiesOnly yes\n{agent_line}");
    let server = Server::builder().ssh_config(&only).spawn().await;
    let err = tool_error(&server.call("execute_command", bare(&sshd)).await);
    assert!(err.contains("Authentication failed"), "{err}");
}

/// `HashKnownHosts yes`: the entry written under accept-new is hashed, and
/// the real `ssh` accepts it with `StrictHostKeyChecking yes`.
#[tokio::test]
async fn hashed_known_hosts_entries_are_accepted_by_real_ssh() {
    let sshd = Sshd::start();
    let server = Server::builder()
        .ssh_config("Host *\n  HashKnownHosts yes\n")
        .spawn()
        .await;
    let res = server
        .call(
            "execute_command",
            json!({"host": "127.0.0.1", "port": sshd.port(), "username": TEST_USER,
                   "key_filename": sshd.client_key(), "command": "true"}),
        )
        .await;
    succeeded(&res);
    let known = std::fs::read_to_string(server.known_hosts()).unwrap();
    assert!(
        known.starts_with("|1|") && !known.contains("127.0.0.1"),
        "{known}"
    );
    let out = Command::new("ssh")
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            server.known_hosts().display()
        ))
        .arg("-o")
        .arg("GlobalKnownHostsFile=/dev/null")
        .arg("-i")
        .arg(sshd.client_key())
        .arg("-p")
        .arg(sshd.port().to_string())
        .arg(format!("{TEST_USER}@127.0.0.1"))
        .arg("echo real-ssh-ok")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "real-ssh-ok",
        "ssh refused our entry: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Keys are looked up in every `UserKnownHostsFile` and the
/// `GlobalKnownHostsFile`; `@revoked` in any of them refuses the key.
#[tokio::test]
async fn several_known_hosts_files_and_revocation() {
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let host_key = std::fs::read_to_string(sshd.dir().join("host_ed25519.pub")).unwrap();
    let host_key: String = host_key
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let global = dir.path().join("global");
    std::fs::write(&global, format!("[127.0.0.1]:{} {host_key}\n", sshd.port())).unwrap();
    let config = |revoked: bool| {
        let revoked_file = dir.path().join("revoked");
        std::fs::write(
            &revoked_file,
            if revoked {
                format!("@revoked * {host_key}\n")
            } else {
                String::new()
            },
        )
        .unwrap();
        format!(
            "Host *\n  StrictHostKeyChecking yes\n  UserKnownHostsFile {}/empty {}\n  \
             GlobalKnownHostsFile {}\n  IdentityFile {}\n",
            dir.path().display(),
            revoked_file.display(),
            global.display(),
            sshd.client_key().display()
        )
    };
    let args = json!({"host": "127.0.0.1", "port": sshd.port(), "username": TEST_USER,
                      "command": "true"});
    let server = Server::builder().ssh_config(&config(false)).spawn().await;
    succeeded(&server.call("execute_command", args.clone()).await);

    let server = Server::builder().ssh_config(&config(true)).spawn().await;
    let err = tool_error(&server.call("execute_command", args).await);
    assert!(err.contains("@revoked"), "{err}");
    assert_eq!(sshd.log().matches("Accepted publickey").count(), 1);
}

/// A host certificate is trusted through an `@cert-authority` line alone,
/// and refused when the authority is a different one.
#[tokio::test]
async fn cert_authority_vouches_for_host_certificates() {
    let sshd = Sshd::start_opts(Options {
        host_cert_principals: Some("127.0.0.1".into()),
        ..Options::default()
    });
    let other_ca = Sshd::start_opts(Options {
        host_cert_principals: Some("127.0.0.1".into()),
        ..Options::default()
    });
    let run = |ca: String| {
        let args = json!({"host": "127.0.0.1", "port": sshd.port(), "username": TEST_USER,
                          "key_filename": sshd.client_key(), "command": "true"});
        async move {
            let server = Server::builder()
                .ssh_config("Host *\n  StrictHostKeyChecking yes\n")
                .spawn()
                .await;
            std::fs::write(
                server.known_hosts(),
                format!("@cert-authority [127.0.0.1]:* {ca}\n"),
            )
            .unwrap();
            server.call("execute_command", args).await
        }
    };
    succeeded(&run(sshd.host_ca()).await);
    let err = tool_error(&run(other_ca.host_ca()).await);
    assert!(err.contains("not in the known_hosts files"), "{err}");
}

/// `ConnectTimeout` bounds connecting: a server that accepts the TCP
/// connection and never speaks SSH fails the call after it.
#[tokio::test]
async fn connect_timeout_from_ssh_config_bounds_a_silent_server() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let server = Server::builder()
        .ssh_config("Host silent\n  HostName 127.0.0.1\n  ConnectTimeout 1\n")
        .spawn()
        .await;
    let started = std::time::Instant::now();
    let res = server
        .call(
            "execute_command",
            json!({"host": "silent", "port": port, "username": TEST_USER, "command": "true"}),
        )
        .await;
    let err = tool_error(&res);
    assert!(err.contains("longer than 1 s"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

/// `ServerAliveInterval` and `ServerAliveCountMax`: a server that stops
/// answering is found dead by keepalives and leaves the session list; the
/// next call reconnects once it answers again.
#[tokio::test]
async fn server_alive_settings_detect_a_frozen_server() {
    let sshd = Sshd::start();
    let config = format!(
        "Host frozen\n  HostName 127.0.0.1\n  Port {}\n  User {TEST_USER}\n  \
         IdentityFile {}\n  ServerAliveInterval 1\n  ServerAliveCountMax 1\n",
        sshd.port(),
        sshd.client_key().display()
    );
    let server = Server::builder().ssh_config(&config).spawn().await;
    let run = json!({"host": "frozen", "command": "true"});
    succeeded(&server.call("execute_command", run.clone()).await);
    sshd.freeze_connections(true);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let list = server.call("list_sessions", json!({})).await;
        if session_names(&list).is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the frozen session is still listed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    sshd.freeze_connections(false);
    succeeded(&server.call("execute_command", run).await);
    assert_eq!(sshd.log().matches("Accepted publickey").count(), 2);
}

/// An edit to `~/.ssh/config` applies at the next call: resolutions are
/// cached only while the files they were read from are unchanged.
#[tokio::test]
async fn edits_to_ssh_config_apply_at_the_next_call() {
    let sshd = Sshd::start();
    let config = |port: u16| {
        format!(
            "Host moving\n  HostName 127.0.0.1\n  Port {port}\n  User {TEST_USER}\n  \
             IdentityFile {}\n",
            sshd.client_key().display()
        )
    };
    let builder = Server::builder().ssh_config(&config(1));
    let path = builder.home().join(".ssh").join("config");
    let server = builder.spawn().await;
    let run = json!({"host": "moving", "command": "true"});
    let err = tool_error(&server.call("execute_command", run.clone()).await);
    assert!(err.contains(":1"), "{err}");
    std::fs::write(&path, config(sshd.port())).unwrap();
    succeeded(&server.call("execute_command", run).await);
}

/// A malformed `StrictHostKeyChecking`, `ProxyJump` or
/// `PreferredAuthentications` in `~/.ssh/config` fails the call with the
/// file and line, before any connection: nothing runs, the server is never
/// contacted, and a host whose block is well-formed still works.
#[tokio::test]
async fn a_malformed_typed_value_names_file_and_line_and_nothing_runs() {
    let sshd = Sshd::start();
    let marker = tempfile::tempdir().unwrap();
    let ran = marker.path().join("ran");
    std::fs::set_permissions(
        marker.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    // Each alias reaches the real server; only its own bad line differs.
    let config = format!(
        "Host bad-policy\n  StrictHostKeyChecking sometimes\n\
         Host bad-jump\n  ProxyJump user@\n\
         Host bad-methods\n  PreferredAuthentications publickey,gssapi\n\
         Host *\n  HostName 127.0.0.1\n  Port {}\n  User {TEST_USER}\n  IdentityFile {}\n",
        sshd.port(),
        sshd.client_key().display()
    );
    let builder = Server::builder().ssh_config(&config);
    let file = builder.home().join(".ssh").join("config");
    let server = builder.spawn().await;
    let command = format!("touch {}", ran.display());
    for (host, line, says) in [
        ("bad-policy", 2, "StrictHostKeyChecking \"sometimes\""),
        ("bad-jump", 4, "ProxyJump \"user@\""),
        ("bad-methods", 6, "unknown authentication method \"gssapi\""),
    ] {
        let res = server
            .call("execute_command", json!({"host": host, "command": command}))
            .await;
        let err = tool_error(&res);
        let at = format!("{} line {line}: ", file.display());
        assert!(err.contains(&at) && err.contains(says), "{host}: {err}");
    }
    assert!(!ran.exists(), "a command ran despite the malformed config");
    assert!(
        !sshd.log().contains("Accepted"),
        "the server was contacted:\n{}",
        sshd.log()
    );
    let res = server
        .call(
            "execute_command",
            json!({"host": "good", "command": command}),
        )
        .await;
    succeeded(&res);
    assert!(ran.exists(), "the well-formed host did not run the command");
}
