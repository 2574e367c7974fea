//! Latency of the real server over MCP, against baselines measured in the
//! same run on the same loopback sshd:
//!
//! - warm `execute_command true` vs. a raw russh exec on one reused
//!   connection, and vs. OpenSSH `ssh` with ControlMaster;
//! - the first call on a new session vs. a fresh `ssh` process;
//! - spawn to `initialize` answered, with a cold and a warm compile cache.
//!
//! Run: `cargo bench --bench latency` (add `-- --quick` for a short run).
//! Needs what `scripts/test` installs (sshd, the test account) and root.
//! Prints figures; asserts nothing about time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../tests/all/sshd.rs"]
#[allow(dead_code)]
mod sshd;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use russh::client;
use russh::keys::{PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use serde_json::{Value, json};

use sshd::{Sshd, TEST_PASSWORD, TEST_USER};

const BIN: &str = env!("CARGO_BIN_EXE_mcp-ssh-session");

struct Stats {
    median: Duration,
    p90: Duration,
    p99: Duration,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    Stats {
        median: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// Trusts exactly the fixture's host key.
struct Pinned(PublicKey);

impl client::Handler for Pinned {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return Ok(false);
        };
        Ok(key.key_data() == self.0.key_data())
    }
}

async fn raw_russh(sshd: &Sshd, n: usize) -> Vec<Duration> {
    let host_key = std::fs::read_to_string(sshd.dir().join("host_ed25519.pub")).unwrap();
    let config = client::Config {
        nodelay: true,
        ..client::Config::default()
    };
    let mut handle = client::connect(
        Arc::new(config),
        ("127.0.0.1", sshd.port()),
        Pinned(PublicKey::from_openssh(host_key.trim()).unwrap()),
    )
    .await
    .unwrap();
    let key = russh::keys::load_secret_key(sshd.client_key(), None).unwrap();
    let auth = handle
        .authenticate_publickey(TEST_USER, PrivateKeyWithHashAlg::new(Arc::new(key), None))
        .await
        .unwrap();
    assert!(auth.success());
    let mut times = Vec::with_capacity(n);
    for i in 0..n + 5 {
        let started = Instant::now();
        let mut ch = handle.channel_open_session().await.unwrap();
        ch.exec(true, "true").await.unwrap();
        while ch.wait().await.is_some() {}
        if i >= 5 {
            times.push(started.elapsed());
        }
    }
    times
}

fn ssh_cmd(sshd: &Sshd, dir: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new("ssh");
    c.args([
        "-q",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
    ])
    .arg("-o")
    .arg(format!("UserKnownHostsFile={}", dir.join("kh").display()))
    .arg("-i")
    .arg(sshd.client_key())
    .args(["-p", &sshd.port().to_string()])
    .args(extra)
    .arg(format!("{TEST_USER}@127.0.0.1"))
    .arg("true")
    .stdin(Stdio::null());
    c
}

fn timed(mut c: Command) -> Duration {
    let started = Instant::now();
    let status = c.status().unwrap();
    assert!(status.success());
    started.elapsed()
}

fn control_master(sshd: &Sshd, n: usize) -> Vec<Duration> {
    let dir = tempfile::tempdir().unwrap();
    let cp = format!("ControlPath={}", dir.path().join("cm").display());
    let opts = [
        "-o",
        "ControlMaster=auto",
        "-o",
        &cp,
        "-o",
        "ControlPersist=60",
    ];
    timed(ssh_cmd(sshd, dir.path(), &opts));
    let times = (0..n)
        .map(|_| timed(ssh_cmd(sshd, dir.path(), &opts)))
        .collect();
    let _ = Command::new("ssh")
        .args(["-o", &cp, "-O", "exit", "-p", &sshd.port().to_string()])
        .arg(format!("{TEST_USER}@127.0.0.1"))
        .stderr(Stdio::null())
        .status();
    times
}

fn fresh_ssh(sshd: &Sshd, n: usize) -> Vec<Duration> {
    let dir = tempfile::tempdir().unwrap();
    (0..n)
        .map(|_| timed(ssh_cmd(sshd, dir.path(), &[])))
        .collect()
}

async fn spawn(cache: &Path, home: &Path) -> (RunningService<RoleClient, ()>, Duration) {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("--no-plugins")
        .arg("--cache-dir")
        .arg(cache)
        .arg("--known-hosts")
        .arg(home.join("known_hosts"))
        .env("HOME", home)
        .env("MCP_SSH_LOG", "warn")
        .env_remove("SSH_AUTH_SOCK");
    let started = Instant::now();
    let (transport, _) = TokioChildProcess::builder(cmd)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = ().serve(transport).await.unwrap();
    (client, started.elapsed())
}

async fn call(client: &RunningService<RoleClient, ()>, tool: &str, args: Value) -> Duration {
    let Value::Object(map) = args else {
        unreachable!()
    };
    let started = Instant::now();
    let res = client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(map))
        .await
        .unwrap();
    let took = started.elapsed();
    assert_ne!(res.is_error, Some(true), "{tool} failed: {:?}", res.content);
    took
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (warm_n, ssh_n, first_n, start_n) = if quick {
        (50, 10, 3, 3)
    } else {
        (500, 100, 20, 10)
    };
    let sshd = Sshd::start();
    let home = tempfile::tempdir().unwrap();
    let cache = home.path().join("cache");
    let key_args = |command: &str| {
        json!({"host": "127.0.0.1", "port": sshd.port(), "username": TEST_USER,
               "key_filename": sshd.client_key(), "command": command})
    };
    let password_args = json!({"host": "127.0.0.1", "port": sshd.port(), "username": TEST_USER,
                               "password": TEST_PASSWORD, "command": "true"});
    let bare =
        json!({"host": "127.0.0.1", "port": sshd.port(), "username": TEST_USER, "command": "true"});

    // Spawn to initialize: cold cache first, then warm.
    let mut cold = Vec::new();
    for i in 0..start_n.min(3) {
        let dir = home.path().join(format!("cold-{i}"));
        let (client, took) = spawn(&dir, home.path()).await;
        cold.push(took);
        client.cancel().await.unwrap();
    }
    let mut warm_start = Vec::new();
    for _ in 0..start_n {
        let (client, took) = spawn(&cache, home.path()).await;
        warm_start.push(took);
        client.cancel().await.unwrap();
    }

    let (client, _) = spawn(&cache, home.path()).await;
    // First call on a new session, key and password.
    let mut first_key = Vec::new();
    let mut first_pw = Vec::new();
    for _ in 0..first_n {
        call(&client, "close_all_sessions", json!({})).await;
        first_key.push(call(&client, "execute_command", key_args("true")).await);
        call(&client, "close_all_sessions", json!({})).await;
        first_pw.push(call(&client, "execute_command", password_args.clone()).await);
    }
    call(&client, "close_all_sessions", json!({})).await;
    call(&client, "execute_command", key_args("true")).await;
    for _ in 0..20 {
        call(&client, "execute_command", bare.clone()).await;
    }
    let mut warm = Vec::with_capacity(warm_n);
    for _ in 0..warm_n {
        warm.push(call(&client, "execute_command", bare.clone()).await);
    }
    client.cancel().await.unwrap();

    let raw = raw_russh(&sshd, warm_n).await;
    let cm = control_master(&sshd, ssh_n);
    let fresh = fresh_ssh(&sshd, first_n);

    let (w, r, c) = (stats(warm), stats(raw), stats(cm));
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "mcp-ssh-session latency on loopback (sshd {}, account {TEST_USER}: /bin/sh, no rc files)",
        sshd_version()
    );
    println!(
        "{} cores; {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if quick { "quick run" } else { "full run" }
    );
    println!();
    println!("| measure | median | p90 | p99 | baseline (median) | ratio |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| warm execute_command `true` over MCP, n={warm_n} | {} | {} | {} | raw russh exec, same sshd: {} | {:.2}x |",
        ms(w.median),
        ms(w.p90),
        ms(w.p99),
        ms(r.median),
        ratio(w.median, r.median)
    );
    println!(
        "| (same) | | | | ssh with ControlMaster, n={ssh_n}: {} | {:.2}x |",
        ms(c.median),
        ratio(w.median, c.median)
    );
    println!(
        "| raw russh exec on one connection, n={warm_n} | {} | {} | {} | | |",
        ms(r.median),
        ms(r.p90),
        ms(r.p99)
    );
    let (fk, fp, fs) = (stats(first_key), stats(first_pw), stats(fresh));
    println!(
        "| first call, new session, ed25519 key, n={first_n} | {} | {} | {} | fresh ssh process: {} | {:.2}x |",
        ms(fk.median),
        ms(fk.p90),
        ms(fk.p99),
        ms(fs.median),
        ratio(fk.median, fs.median)
    );
    println!(
        "| first call, new session, password, n={first_n} | {} | {} | {} | | |",
        ms(fp.median),
        ms(fp.p90),
        ms(fp.p99)
    );
    let (sc, sw) = (stats(cold), stats(warm_start));
    println!(
        "| spawn to initialize, cold compile cache | {} | | | | |",
        ms(sc.median)
    );
    println!(
        "| spawn to initialize, warm compile cache, n={start_n} | {} | {} | | | |",
        ms(sw.median),
        ms(sw.p90)
    );
}

fn sshd_version() -> String {
    let out = Command::new("ssh").arg("-V").output().unwrap();
    String::from_utf8_lossy(&out.stderr)
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_string()
}
