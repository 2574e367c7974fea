//! Grants for third-party components, shown with the example `disk_usage`
//! tool loaded from the plugin directory: default deny with a message that
//! says what to add, the intersection of manifest and operator config, and
//! argv matching that no injection gets through; hosts, addresses and ports
//! checked where the call really goes; CPU and memory budgets; and the
//! concurrency limit held by background jobs (with the hostile fixture).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use crate::plugins::{guest_wasm, install_plugin};
use crate::server::{Server, exec_args, structured, text, tool_error};
use crate::sshd::{Sshd, TEST_USER};

fn disk_usage_wasm() -> PathBuf {
    guest_wasm("disk_usage")
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

/// [`GRANT`] with `hosts` replaced, allowing `ports`.
fn grant(hosts: &str, ports: &[u16]) -> String {
    GRANT.replace(r#"["127.0.0.1"]"#, hosts) + &format!("ports = {ports:?}\n")
}

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
    let server = server_with(&grant(r#"["127.0.0.1"]"#, &[sshd.port()])).await;
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
    let server = server_with(&grant(r#"["127.0.0.1"]"#, &[sshd.port()])).await;
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
    let server = server_with(&grant(r#"["127.0.0.2"]"#, &[sshd.port()])).await;
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

/// Opens the operator's session to `host` on `port` with the built-in tool,
/// so a plugin (which brings no credentials) could use it.
async fn open_session(server: &Server, sshd: &Sshd, host: &str, port: u16) {
    let mut args = exec_args(sshd, "true");
    args["host"] = json!(host);
    args["port"] = json!(port);
    let res = server.call("execute_command", args).await;
    assert_ne!(res.is_error, Some(true), "{}", text(&res));
}

#[tokio::test]
async fn a_star_in_a_host_pattern_stays_within_one_dns_label() {
    let sshd = Sshd::start();
    // ssh_config gives the port, so the grant needs no `ports`.
    let server = install_plugin(
        Server::builder().ssh_config(&format!("Host *\n  Port {}\n", sshd.port())),
        &disk_usage_wasm(),
        "disk_usage",
        Some(&disk_usage_manifest()),
        &GRANT.replace(r#"["127.0.0.1"]"#, r#"["127.0.0.*"]"#),
    )
    .spawn()
    .await;
    server.exec(&sshd, "true").await;
    let res = server
        .call("disk_usage", args(&sshd, "127.0.0.1", "/"))
        .await;
    assert!(text(&res).starts_with("Filesystem"), "{}", text(&res));
    for evil in ["127.0.0.1.attacker.example", "127.0.0.010", "127.0.0.1."] {
        let res = server.call("disk_usage", args(&sshd, evil, "/")).await;
        let msg = tool_error(&res);
        assert!(
            msg.starts_with(&format!(
                "Denied: host {evil:?} is not among the granted hosts"
            )),
            "{evil}: {msg}"
        );
    }
}

#[tokio::test]
async fn only_granted_ports_are_reached_and_the_default_is_ssh_configs() {
    let sshd = Sshd::start_ports(2);
    let (granted, other) = (sshd.ports()[0], sshd.ports()[1]);
    let server = server_with(&grant(r#"["127.0.0.*"]"#, &[granted])).await;
    open_session(&server, &sshd, "127.0.0.1", granted).await;
    open_session(&server, &sshd, "127.0.0.1", other).await;
    let mut call = args(&sshd, "127.0.0.1", "/");
    let res = server.call("disk_usage", call.clone()).await;
    assert!(text(&res).starts_with("Filesystem"), "{}", text(&res));
    call["port"] = json!(other);
    let msg = tool_error(&server.call("disk_usage", call).await);
    assert!(
        msg.starts_with(&format!("Denied: port {other} of host \"127.0.0.1\""))
            && msg.contains(&format!("granted ports [{granted}]")),
        "{msg}"
    );

    // No `ports`, no ssh_config: only 22.
    let server = server_with(GRANT).await;
    open_session(&server, &sshd, "127.0.0.1", granted).await;
    let msg = tool_error(
        &server
            .call("disk_usage", args(&sshd, "127.0.0.1", "/"))
            .await,
    );
    assert!(
        msg.starts_with(&format!("Denied: port {granted} of host"))
            && msg.contains("ssh_config gives for it (22)"),
        "{msg}"
    );
}

#[tokio::test]
async fn an_address_grant_matches_the_address_connected_to_not_the_name() {
    let sshd = Sshd::start();
    let config = "Host proxied\n  HostName 127.0.0.1\n  ProxyCommand /bin/false\n";
    let server = install_plugin(
        Server::builder().ssh_config(config),
        &disk_usage_wasm(),
        "disk_usage",
        Some(&disk_usage_manifest()),
        &grant(r#"["127.0.0.0/8"]"#, &[sshd.port()]),
    )
    .spawn()
    .await;
    open_session(&server, &sshd, "localhost", sshd.port()).await;
    let res = server
        .call("disk_usage", args(&sshd, "localhost", "/"))
        .await;
    assert!(text(&res).starts_with("Filesystem"), "{}", text(&res));
    // Through a ProxyCommand the address is unknown: refused before it runs.
    let msg = tool_error(&server.call("disk_usage", args(&sshd, "proxied", "/")).await);
    assert!(
        msg.starts_with("Denied: host \"proxied\" is granted only by address")
            && msg.contains("ProxyCommand"),
        "{msg}"
    );

    // The name resolves outside the block: refused once the address is known.
    let server = server_with(&grant(r#"["10.0.0.0/8"]"#, &[sshd.port()])).await;
    open_session(&server, &sshd, "localhost", sshd.port()).await;
    let msg = tool_error(
        &server
            .call("disk_usage", args(&sshd, "localhost", "/"))
            .await,
    );
    assert!(
        msg.starts_with("Denied: host \"localhost\" (address 127.0.0.1) is not among")
            && msg.contains("10.0.0.0/8"),
        "{msg}"
    );
}

const HOSTILE_MANIFEST: &str = r#"
[requests]
hosts = ["*"]
users = ["*"]
shell = true
"#;

/// A server with the hostile fixture, granted the shell on `sshd` with
/// `extra` grant lines, its manifest with `manifest_extra`, and `flags`.
async fn hostile(sshd: &Sshd, extra: &str, manifest_extra: &str, flags: &[&str]) -> Server {
    let grant = format!(
        "[plugins.hostile]\nhosts = [\"127.0.0.1\"]\nusers = [\"*\"]\nshell = true\n\
         ports = [{}]\n{extra}",
        sshd.port()
    );
    let mut builder = install_plugin(
        Server::builder(),
        &guest_wasm("hostile_tools"),
        "hostile",
        Some(&format!("{HOSTILE_MANIFEST}{manifest_extra}")),
        &grant,
    );
    for f in flags {
        builder = builder.arg(*f);
    }
    builder.spawn().await
}

fn shell_args(sshd: &Sshd, command: &str) -> serde_json::Value {
    json!({"host": "127.0.0.1", "port": sshd.port(), "username": TEST_USER, "command": command})
}

#[tokio::test]
async fn a_background_job_holds_its_components_concurrency_slot_until_it_ends() {
    let sshd = Sshd::start();
    let server = hostile(&sshd, "max_concurrency = 1\n", "", &[]).await;
    server.exec(&sshd, "true").await;
    let res = server
        .call("hostile_job", shell_args(&sshd, "sleep 2.4711"))
        .await;
    assert_ne!(res.is_error, Some(true), "{}", text(&res));
    let first = text(&res);
    for tool in ["hostile_job", "hostile_shell"] {
        let msg = tool_error(&server.call(tool, shell_args(&sshd, "true")).await);
        assert!(
            msg.starts_with("Error: resource limit reached") && msg.contains("max_concurrency = 1"),
            "{tool}: {msg}"
        );
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let res = server
            .call("get_command_status", json!({"job_id": first}))
            .await;
        if structured(&res)["state"] != "running" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", text(&res));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let res = server.call("hostile_job", shell_args(&sshd, "true")).await;
    assert_ne!(res.is_error, Some(true), "{}", text(&res));
}

#[tokio::test]
async fn a_manifest_cannot_raise_its_budget_above_the_operators_flags() {
    let sshd = Sshd::start();
    let greedy = "cpu_seconds = 3600.0\nmemory_mib = 4096\n";
    let flags = ["--guest-cpu-limit", "1", "--guest-memory-limit", "64"];
    let server = hostile(&sshd, "", greedy, &flags).await;
    let res = tokio::time::timeout(
        Duration::from_secs(30),
        server.call("hostile_spin", json!({})),
    )
    .await
    .expect("the manifest's CPU budget replaced the operator's");
    let msg = tool_error(&res);
    assert!(msg.contains("time limit of 1000 ms"), "{msg}");
    let msg = tool_error(&server.call("hostile_grow", json!({})).await);
    assert!(msg.contains("memory limit of 64 MiB"), "{msg}");
}

#[tokio::test]
async fn a_manifest_with_an_invalid_budget_is_skipped_with_an_error() {
    let sshd = Sshd::start();
    for bad in ["cpu_seconds = inf", "cpu_seconds = nan", "memory_mib = 0"] {
        let server = hostile(&sshd, "", &format!("{bad}\n"), &[]).await;
        let tools = server.client.list_all_tools().await.unwrap();
        assert!(
            !tools.iter().any(|t| t.name.starts_with("hostile")),
            "{bad}"
        );
        let key = bad.split(' ').next().unwrap();
        let log = server.log();
        assert!(
            log.contains("skipping plugin") && log.contains(&format!("{key} = ")),
            "{bad}: {log}"
        );
    }
}

#[test]
fn an_invalid_budget_from_the_operator_is_a_startup_error_naming_the_key() {
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("config.toml");
    let cases = [
        ("cpu_seconds = nan", "[plugins.x] cpu_seconds = NaN"),
        ("cpu_seconds = -inf", "[plugins.x] cpu_seconds = -inf"),
        ("cpu_seconds = 100000.0", "[plugins.x] cpu_seconds = 100000"),
        ("memory_mib = 0", "[plugins.x] memory_mib = 0"),
        // Its `<< 20` overflows 64 bits.
        (
            "memory_mib = 17592186044416",
            "[plugins.x] memory_mib = 17592186044416",
        ),
        ("max_concurrency = 0", "[plugins.x] max_concurrency = 0"),
        (
            "hosts = [\"10.0.0.0/33\"]",
            "[plugins.x] hosts = \"10.0.0.0/33\"",
        ),
    ];
    let run = |args: &[&str]| {
        std::process::Command::new(crate::server::BIN)
            .args(args)
            .env("HOME", home.path())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    for (line, expected) in cases {
        std::fs::write(&config, format!("[plugins.x]\n{line}\n")).unwrap();
        let out = run(&["--no-plugins", "--config", config.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(expected),
            "{line}: {err}"
        );
    }
    for (flag, value) in [
        ("--guest-memory-limit", "17592186044416"),
        ("--guest-cpu-limit", "NaN"),
        ("--guest-cpu-limit", "1e9"),
    ] {
        let out = run(&["--no-plugins", flag, value]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(flag),
            "{flag} {value}: {err}"
        );
    }
}
