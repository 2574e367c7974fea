//! `mcp-ssh-session doctor [HOST]`: the local report on a prepared HOME,
//! and each connection step against real sshd and Dropbear servers, with
//! the failures a user meets (a changed key, a closed port) and their
//! fixes.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::dropbear_server::Dropbear;
use crate::server::{BIN, guest_wasm, shared_cache};
use crate::sshd::{SshAgent, Sshd, TEST_PASSWORD, TEST_USER, free_port};

/// What one `doctor` run printed, and whether it exited 0.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit ok: {}\n--- stdout\n{}\n--- stderr\n{}",
            self.ok, self.stdout, self.stderr
        )
    }
}

/// A HOME of its own: `~/.ssh`, no agent, no system ssh_config.
fn home() -> tempfile::TempDir {
    let home = tempfile::Builder::new()
        .prefix("mcpssh-doctor-")
        .tempdir()
        .unwrap();
    std::fs::create_dir_all(home.path().join(".ssh")).unwrap();
    home
}

/// Runs `mcp-ssh-session [flags] doctor [args]` with `HOME` set to `home`,
/// `env` added and `stdin` written.
fn doctor(home: &Path, flags: &[&str], args: &[&str], env: &[(&str, &str)], stdin: &str) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.arg("--system-ssh-config")
        .arg("none")
        .arg("--cache-dir")
        .arg(shared_cache());
    if !flags.contains(&"--plugins") {
        cmd.arg("--no-plugins");
    }
    cmd.args(flags)
        .arg("doctor")
        .args(args)
        .env("HOME", home)
        .env("MCP_SSH_LOG", "info")
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn target(sshd_port: u16) -> String {
    format!("{TEST_USER}@127.0.0.1:{sshd_port}")
}

#[test]
fn doctor_without_a_host_lists_plugins_with_grants_and_a_world_writable_known_hosts() {
    let home = home();
    let plugins = home.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(guest_wasm("disk_usage"), plugins.join("disk_usage.wasm")).unwrap();
    let manifest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../guest-tools/examples/disk-usage/disk_usage.toml"),
    )
    .unwrap();
    std::fs::write(plugins.join("disk_usage.toml"), manifest).unwrap();
    // Built for a WIT major version this host does not serve.
    std::fs::copy(guest_wasm("wit_major_1"), plugins.join("future.wasm")).unwrap();
    let config = home.path().join("config.toml");
    std::fs::write(
        &config,
        concat!(
            "[plugins.disk_usage]\nhosts = [\"*\"]\nusers = [\"*\"]\n",
            "commands = [[\"df\", \"-P\", \"-k\", \"*\"]]\n",
            "[plugins.ghost]\nhosts = [\"*\"]\n",
        ),
    )
    .unwrap();
    let known_hosts = home.path().join(".ssh/known_hosts");
    std::fs::write(&known_hosts, "").unwrap();
    std::fs::set_permissions(&known_hosts, std::fs::Permissions::from_mode(0o666)).unwrap();

    let run = doctor(
        home.path(),
        &[
            "--plugins",
            plugins.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
        &[],
        &[],
        "",
    );
    // Warnings only: the server would start.
    assert!(run.ok, "{run}");
    let out = &run.stdout;
    assert!(
        out.contains("built-in tools: ") && out.contains("execute_command"),
        "{run}"
    );
    assert!(out.contains("disk_usage.wasm: tools disk_usage"), "{run}");
    assert!(
        out.contains(r#"effective grant"#) && out.contains(r#"commands [["df", "-P", "-k", "*"]]"#),
        "{run}"
    );
    assert!(
        out.contains("grants [plugins.ghost], but there is no ghost.wasm"),
        "{run}"
    );
    assert!(
        out.contains(&format!(
            "WARN known_hosts: {} is writable by group or others (mode 0666)",
            known_hosts.display()
        )),
        "{run}"
    );
    assert!(
        out.contains(&format!("fix: chmod 600 '{}'", known_hosts.display())),
        "{run}"
    );
    assert!(
        out.contains("future.wasm: does not load, the server skips it")
            && out.contains("plugin check"),
        "{run}"
    );
    assert!(
        out.contains("no ssh-agent key and no identity file"),
        "{run}"
    );
}

#[test]
fn doctor_reports_a_bad_config_value_and_fails() {
    let home = home();
    let config = home.path().join("config.toml");
    std::fs::write(&config, "[plugins.x]\ncpu_seconds = -1\n").unwrap();
    let run = doctor(
        home.path(),
        &["--config", config.to_str().unwrap()],
        &["--json"],
        &[],
        "",
    );
    assert!(!run.ok, "{run}");
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["ok"], false, "{run}");
    let config_item = report["sections"][0]["items"][0].clone();
    assert_eq!(config_item["status"], "fail", "{run}");
    assert!(
        config_item["detail"]
            .as_str()
            .unwrap()
            .contains("cpu_seconds"),
        "{run}"
    );
    assert!(config_item["fix"].is_string(), "{run}");
}

#[test]
fn doctor_reaches_sshd_with_an_agent_key_and_records_no_new_host_key() {
    let sshd = Sshd::start();
    let agent = SshAgent::start_with(&sshd.client_key());
    let home = home();
    let sock = agent.socket().to_str().unwrap().to_string();
    let run = doctor(
        home.path(),
        &[],
        &[&target(sshd.port())],
        &[("SSH_AUTH_SOCK", &sock)],
        "",
    );
    assert!(run.ok, "{run}\n{}", sshd.log());
    let out = &run.stdout;
    assert!(
        out.contains(&format!("TCP connect: to 127.0.0.1:{}", sshd.port())),
        "{run}"
    );
    assert!(
        out.contains("SSH handshake: server SSH-2.0-OpenSSH"),
        "{run}"
    );
    assert!(
        out.contains(&format!("host key: {}", sshd.host_key_fingerprint())),
        "{run}"
    );
    assert!(
        out.contains("NEW: under accept-new the server records it"),
        "{run}"
    );
    assert!(out.contains("auth methods offered: publickey"), "{run}");
    assert!(
        out.contains(&format!(
            "logged in as {TEST_USER} with ssh-agent key SHA256:"
        )),
        "{run}"
    );
    assert!(out.contains("login shell: /bin/sh"), "{run}");
    assert!(out.contains("process-group stop: works"), "{run}");
    assert!(
        out.contains("MaxSessions: 10: the server refused session 11"),
        "{run}"
    );
    assert!(
        out.contains(&format!("{}: works", target(sshd.port()))),
        "{run}"
    );
    // accept-new, but doctor writes nothing.
    let known_hosts = home.path().join(".ssh/known_hosts");
    assert!(!known_hosts.exists(), "doctor recorded the host key");

    // Once known, doctor names the line that vouches for it; a key file
    // from ssh_config logs in.
    let line = std::fs::read_to_string(sshd.host_key_public()).unwrap();
    let key = line
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    std::fs::write(
        &known_hosts,
        format!("# comment\n[127.0.0.1]:{} {key}\n", sshd.port()),
    )
    .unwrap();
    std::fs::write(
        home.path().join(".ssh/config"),
        format!(
            "Host box\n HostName 127.0.0.1\n Port {}\n User {TEST_USER}\n IdentityFile {}\n",
            sshd.port(),
            sshd.client_key().display()
        ),
    )
    .unwrap();
    let run = doctor(home.path(), &[], &["box"], &[], "");
    assert!(run.ok, "{run}");
    assert!(
        run.stdout
            .contains(&format!("known: {} line 2", known_hosts.display())),
        "{run}"
    );
    assert!(
        run.stdout.contains(&format!(
            "destination: box is HostName 127.0.0.1, User {TEST_USER}, Port {}",
            sshd.port()
        )),
        "{run}"
    );
    assert!(
        run.stdout
            .contains(&format!("with key {}", sshd.client_key().display())),
        "{run}"
    );
}

#[test]
fn doctor_refuses_a_changed_host_key_with_both_fingerprints_and_the_removal_line() {
    let mut sshd = Sshd::start();
    let home = home();
    let known_hosts = home.path().join(".ssh/known_hosts");
    let line = std::fs::read_to_string(sshd.host_key_public()).unwrap();
    let key = line
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    std::fs::write(&known_hosts, format!("[127.0.0.1]:{} {key}\n", sshd.port())).unwrap();
    let old = sshd.host_key_fingerprint();
    sshd.change_host_key();
    let new = sshd.host_key_fingerprint();
    let run = doctor(home.path(), &[], &[&target(sshd.port())], &[], "");
    eprintln!("{run}");
    assert!(!run.ok, "{run}");
    let out = &run.stdout;
    assert!(out.contains("FAIL host key: the host key of"), "{run}");
    assert!(out.contains(&old) && out.contains(&new), "{run}");
    assert!(
        out.contains(&format!(
            "ssh-keygen -f '{}' -R '[127.0.0.1]:{}'",
            known_hosts.display(),
            sshd.port()
        )),
        "{run}"
    );
    assert!(out.contains("does NOT work"), "{run}");
}

#[test]
fn doctor_says_a_closed_port_refuses_and_fails() {
    let home = home();
    let port = free_port();
    let run = doctor(home.path(), &[], &[&target(port)], &[], "");
    eprintln!("{run}");
    assert!(!run.ok, "{run}");
    assert!(
        run.stdout.contains(&format!(
            "FAIL TCP connect: cannot connect to 127.0.0.1:{port}: Connection refused"
        )),
        "{run}"
    );
    assert!(
        run.stdout
            .contains(&format!("nothing listens on 127.0.0.1:{port}")),
        "{run}"
    );
}

#[test]
fn doctor_logs_in_with_a_password_from_stdin_and_never_shows_it() {
    let sshd = Sshd::start();
    let home = home();
    // Built-ins compiled at trace would log megabytes: warm the cache.
    doctor(home.path(), &[], &[], &[], "");
    let run = doctor(
        home.path(),
        &[],
        &["--password-stdin", &target(sshd.port())],
        &[("MCP_SSH_LOG", "trace")],
        &format!("{TEST_PASSWORD}\n"),
    );
    assert!(run.ok, "{run}");
    assert!(
        run.stdout
            .contains(&format!("logged in as {TEST_USER} with password")),
        "{run}"
    );
    assert!(
        !run.stdout.contains(TEST_PASSWORD),
        "the password is on stdout"
    );
    assert!(
        !run.stderr.contains(TEST_PASSWORD),
        "the password is on stderr"
    );
    assert!(run.stderr.contains("TRACE"), "not logging at trace: {run}");
}

#[test]
fn doctor_on_dropbear_reports_the_shell_and_a_working_stop() {
    let dropbear = Dropbear::start();
    let home = home();
    let run = doctor(
        home.path(),
        &[],
        &["--password-stdin", &target(dropbear.port())],
        &[],
        &format!("{TEST_PASSWORD}\n"),
    );
    eprintln!("{run}");
    assert!(run.ok, "{run}\n{}", dropbear.log());
    let out = &run.stdout;
    assert!(
        out.contains("SSH handshake: server SSH-2.0-dropbear"),
        "{run}"
    );
    assert!(out.contains("login shell: /bin/sh"), "{run}");
    // Dropbear does not make commands group leaders; the launcher's
    // setsid does.
    assert!(
        out.contains("ok   later commands: leads its own session"),
        "{run}"
    );
    assert!(out.contains("process-group stop: works"), "{run}");
}

#[test]
fn doctor_through_a_jump_host_lists_the_jump_and_connects_through_it() {
    let jump = Sshd::start();
    let target_sshd = Sshd::start();
    let home = home();
    let block = |alias: &str, sshd: &Sshd, extra: &str| {
        format!(
            "Host {alias}\n  HostName 127.0.0.1\n  Port {}\n  User {TEST_USER}\n  \
             IdentityFile {}\n{extra}",
            sshd.port(),
            sshd.client_key().display()
        )
    };
    let config = [
        block("inner", &target_sshd, "  ProxyJump hop\n"),
        block("hop", &jump, ""),
    ]
    .concat();
    std::fs::write(home.path().join(".ssh/config"), config).unwrap();
    let run = doctor(home.path(), &[], &["inner"], &[], "");
    eprintln!("{run}");
    assert!(run.ok, "{run}");
    let out = &run.stdout;
    assert!(out.contains("route: ProxyJump through hop"), "{run}");
    assert!(
        out.contains(&format!(
            "jump host hop ({TEST_USER}@127.0.0.1:{}): TCP connect",
            jump.port()
        )),
        "{run}"
    );
    assert!(
        out.contains(&format!(
            "tunnel: jump host hop ({TEST_USER}@127.0.0.1:{}) opened a channel to 127.0.0.1:{}",
            jump.port(),
            target_sshd.port()
        )),
        "{run}"
    );
    assert!(out.contains("inner: works"), "{run}");
}
