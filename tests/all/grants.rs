//! Grants for third-party components, shown with the example `disk_usage`
//! tool loaded from the plugin directory: default deny with a message that
//! says what to add, the intersection of manifest and operator config, and
//! argv matching that no injection gets through.

use std::path::PathBuf;

use serde_json::json;

use crate::plugins::install_plugin;
use crate::server::{Server, text, tool_error};
use crate::sshd::{Sshd, TEST_USER};

fn disk_usage_wasm() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/guest-tools/wasm32-wasip2/release/disk_usage.wasm")
}

fn disk_usage_manifest() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../guest-tools/examples/disk-usage/disk_usage.toml");
    std::fs::read_to_string(path).unwrap()
}

async fn server_with(config: &str) -> Server {
    install_plugin(
        Server::builder(),
        &disk_usage_wasm(),
        "disk_usage",
        Some(&disk_usage_manifest()),
        config,
    )
    .spawn()
    .await
}

fn args(sshd: &Sshd, host: &str, path: &str) -> serde_json::Value {
    json!({"host": host, "port": sshd.port(), "username": TEST_USER, "path": path})
}

const GRANT: &str = r#"
[plugins.disk_usage]
hosts = ["127.0.0.1"]
users = ["mcpssh-test"]
commands = [["df", "-P", "-k", "*"]]
"#;

#[tokio::test]
async fn an_ungranted_plugin_is_listed_but_denied_with_what_to_add() {
    let sshd = Sshd::start();
    let server = server_with("").await;
    let tools = server.client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "disk_usage"));
    let res = server
        .call("disk_usage", args(&sshd, "127.0.0.1", "/"))
        .await;
    let msg = tool_error(&res);
    assert!(
        msg.starts_with("Denied: component disk_usage is not granted"),
        "{msg}"
    );
    assert!(
        msg.contains("[plugins.disk_usage]") && msg.contains("config.toml"),
        "{msg}"
    );
    assert!(
        msg.contains(r#"commands = [["df", "-P", "-k", "*"]]"#),
        "{msg}"
    );
    assert!(!sshd.log().contains("Accepted"), "it connected anyway");
}

#[tokio::test]
async fn a_granted_plugin_runs_its_command_on_the_operators_session() {
    let sshd = Sshd::start();
    let server = server_with(GRANT).await;
    server.exec(&sshd, "true").await;
    let res = server
        .call("disk_usage", args(&sshd, "127.0.0.1", "/"))
        .await;
    assert_eq!(res.is_error, Some(false), "{}", text(&res));
    assert!(text(&res).starts_with("Filesystem"), "{}", text(&res));
}

#[tokio::test]
async fn injection_through_an_argument_stays_one_argument() {
    let sshd = Sshd::start();
    let server = server_with(GRANT).await;
    server.exec(&sshd, "true").await;
    let marker = |n: u32| format!("/tmp/mcpssh-pwned-{}-{n}", sshd.port());
    let attempts = [
        format!("/; touch {}", marker(1)),
        format!("/ && touch {}", marker(2)),
        format!("/\ntouch {}", marker(3)),
        format!("$(touch {})", marker(4)),
        format!("`touch {}`", marker(5)),
        format!("/' ; touch {} ; '", marker(6)),
    ];
    for path in &attempts {
        let res = server
            .call("disk_usage", args(&sshd, "127.0.0.1", path))
            .await;
        // df ran and failed on a path that does not exist.
        let msg = tool_error(&res);
        assert!(
            msg.contains("df failed") && msg.contains("No such file"),
            "{path:?}: {msg}"
        );
    }
    for n in 1..=6 {
        assert!(
            !std::path::Path::new(&marker(n)).exists(),
            "attempt {n} ran a command"
        );
    }
}

#[tokio::test]
async fn the_operator_narrows_what_the_manifest_requests() {
    let sshd = Sshd::start();
    let server = server_with(&GRANT.replace("127.0.0.1", "127.0.0.2")).await;
    server.exec(&sshd, "true").await;
    let res = server
        .call("disk_usage", args(&sshd, "127.0.0.1", "/"))
        .await;
    let msg = tool_error(&res);
    assert!(
        msg.contains("\"127.0.0.1\" is not among the granted hosts [\"127.0.0.2\"]"),
        "{msg}"
    );
}

#[test]
fn an_unknown_config_key_is_a_startup_error() {
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("config.toml");
    std::fs::write(&config, "[plugins.x]\nhosts = [\"*\"]\nsuper_user = true\n").unwrap();
    let out = std::process::Command::new(crate::server::BIN)
        .arg("--config")
        .arg(&config)
        .env("HOME", home.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("super_user"), "{err}");
}
