//! Authentication: password, key files (plain and encrypted), ssh-agent,
//! default keys, and the errors for each way it can go wrong.

use serde_json::json;

use crate::server::{Server, bare_args, exec_args, password_args, stdout, text, tool_error};
use crate::sshd::{KEY_PASSPHRASE, SshAgent, Sshd, TEST_PASSWORD, TEST_USER};

#[tokio::test]
async fn password_auth_works_and_the_password_is_never_logged() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    let res = server
        .call(
            "execute_command",
            password_args(&sshd, TEST_PASSWORD, "whoami"),
        )
        .await;
    assert_eq!(res.is_error, Some(false), "{}", text(&res));
    assert_eq!(stdout(&res), format!("{TEST_USER}\n"));
    let listed = server.call("list_sessions", json!({})).await;
    assert!(!text(&listed).contains(TEST_PASSWORD));
    assert!(
        !server.log().contains(TEST_PASSWORD),
        "the password is in the log"
    );
}

#[tokio::test]
async fn a_wrong_password_is_an_auth_error() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    let res = server
        .call(
            "execute_command",
            password_args(&sshd, "not-the-password", "true"),
        )
        .await;
    let msg = tool_error(&res);
    assert!(msg.starts_with("Authentication failed"), "{msg}");
    assert!(
        msg.contains("password") && msg.contains(&sshd.port().to_string()),
        "{msg}"
    );
    assert!(!msg.contains("not-the-password"));
    assert!(!server.log().contains("not-the-password"));
}

#[tokio::test]
async fn a_wrong_password_cannot_ride_on_a_cached_session() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    server.exec(&sshd, "true").await;
    let res = server
        .call(
            "execute_command",
            password_args(&sshd, "wrong", "echo leaked"),
        )
        .await;
    assert_eq!(
        res.is_error,
        Some(true),
        "a wrong password rode on the cached session"
    );
    assert!(
        text(&res).starts_with("Authentication failed"),
        "{}",
        text(&res)
    );
    // The session opened with the key is untouched.
    let res = server
        .call("execute_command", bare_args(&sshd, "echo still"))
        .await;
    assert_eq!(stdout(&res), "still\n");
}

#[tokio::test]
async fn a_correct_new_password_is_verified_before_it_is_used() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    server.exec(&sshd, "true").await;
    let res = server
        .call(
            "execute_command",
            password_args(&sshd, TEST_PASSWORD, "echo ok"),
        )
        .await;
    assert_eq!(stdout(&res), "ok\n");
    assert_eq!(
        sshd.log().matches("Accepted password").count(),
        1,
        "{}",
        sshd.log()
    );
}

#[tokio::test]
async fn a_missing_key_file_is_a_clear_error() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    let mut args = exec_args(&sshd, "true");
    args["key_filename"] = json!("/nonexistent/id_ed25519");
    let res = server.call("execute_command", args).await;
    let msg = tool_error(&res);
    assert!(
        msg.contains("/nonexistent/id_ed25519") && msg.contains("does not exist"),
        "{msg}"
    );
}

#[tokio::test]
async fn an_encrypted_key_works_with_its_passphrase() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    let mut args = exec_args(&sshd, "echo unlocked");
    args["key_filename"] = json!(sshd.encrypted_key());

    let res = server.call("execute_command", args.clone()).await;
    assert_eq!(res.is_error, Some(true));
    assert!(text(&res).contains("passphrase"), "{}", text(&res));

    args["passphrase"] = json!("wrong passphrase");
    let res = server.call("execute_command", args.clone()).await;
    assert_eq!(res.is_error, Some(true));
    assert!(
        text(&res).contains("could not be decrypted"),
        "{}",
        text(&res)
    );

    args["passphrase"] = json!(KEY_PASSPHRASE);
    let res = server.call("execute_command", args).await;
    assert_eq!(stdout(&res), "unlocked\n", "{}", text(&res));
    assert!(!server.log().contains(KEY_PASSPHRASE));
}

#[tokio::test]
async fn default_keys_in_home_are_used_without_credentials() {
    let sshd = Sshd::start();
    let builder = Server::builder();
    std::fs::copy(sshd.client_key(), builder.home().join(".ssh/id_ed25519")).unwrap();
    let server = builder.spawn().await;
    let res = server
        .call("execute_command", bare_args(&sshd, "echo default"))
        .await;
    assert_eq!(stdout(&res), "default\n", "{}", text(&res));
}

#[tokio::test]
async fn no_credentials_and_no_keys_says_what_to_pass() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    let res = server
        .call("execute_command", bare_args(&sshd, "true"))
        .await;
    let msg = tool_error(&res);
    assert!(
        msg.contains("password") && msg.contains("key_filename"),
        "{msg}"
    );
}

/// A real ssh-agent holding the key; the tool call names no credential.
#[tokio::test]
async fn ssh_agent_keys_are_used_without_credentials() {
    let sshd = Sshd::start();
    let agent = SshAgent::start_with(&sshd.client_key());
    let server = Server::builder()
        .env("SSH_AUTH_SOCK", agent.socket().display().to_string())
        .spawn()
        .await;
    let res = server
        .call("execute_command", bare_args(&sshd, "echo agent"))
        .await;
    assert_eq!(stdout(&res), "agent\n", "{}", text(&res));
}

#[tokio::test]
async fn a_refused_port_is_a_connect_error() {
    let server = Server::start().await;
    let port = crate::sshd::free_port();
    let res = server
        .call(
            "execute_command",
            json!({"host": "127.0.0.1", "port": port, "username": TEST_USER, "command": "true", "password": "x"}),
        )
        .await;
    assert_eq!(res.is_error, Some(true));
    assert!(
        text(&res).starts_with("Connection failed"),
        "{}",
        text(&res)
    );
}

#[tokio::test]
async fn an_unknown_host_is_a_connect_error() {
    let server = Server::start().await;
    let res = server
        .call(
            "execute_command",
            json!({"host": "no-such-host.invalid", "username": "u", "command": "true", "password": "x"}),
        )
        .await;
    let msg = tool_error(&res);
    assert!(
        msg.starts_with("Connection failed") && msg.contains("no-such-host.invalid"),
        "{msg}"
    );
}
