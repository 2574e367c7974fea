//! The performance suite: the real server binary over stdio, driven by
//! rmcp's MCP client, against baselines measured in the same run on the
//! same loopback sshd. Prints one table; asserts nothing about time.
//!
//! - warm `execute_command true` vs. raw russh exec on one reused
//!   connection, and vs. OpenSSH `ssh` with ControlMaster;
//! - the first call on a new session (key, password) vs. a fresh `ssh`;
//! - spawn to `initialize` answered, cold and warm compile cache;
//! - 64 callers x 20 calls to one host, and 8 hosts x 8 callers;
//! - 50 MB of stdout: time, the server's peak RSS, bytes returned;
//! - idle RSS, and RSS with 50 open sessions;
//! - per-call instantiate time and the share of a warm call spent in wasm;
//! - a warm call with session state kept vs. the same on `--stateless`;
//! - uploads and downloads vs. `scp` and `sftp`, and warm small-file calls
//!   ([`files`]);
//! - a warm call over streamable HTTP vs. stdio, and 64 concurrent HTTP
//!   clients ([`http`]).
//!
//! Run: `cargo bench --bench perf` (`-- --quick` for a short run, as CI
//! does). Needs what `scripts/test` installs (sshd, the test account) and
//! root, as the tests do. The server, its guests and sshd come from the
//! integration suite's helpers; what stays here (over 500 lines) is one
//! measurement per row of one table, and the baselines it compares against.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// The integration suite's fixtures: its sshd, and its server and guest
// helpers, so the benchmark drives the server exactly as the tests do.
#[path = "../../tests/all/sshd.rs"]
#[allow(dead_code)]
mod sshd;

#[path = "../../tests/all/server.rs"]
#[allow(dead_code)]
mod server;

#[path = "../../tests/all/http_server.rs"]
#[allow(dead_code)]
mod http_server;

#[path = "perf/files.rs"]
mod files;
#[path = "perf/state.rs"]
mod state;

#[path = "perf/http.rs"]
mod http;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::model::CallToolResult;
use russh::client;
use russh::keys::{PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use serde_json::{Value, json};

use server::{Server, exec_args, guest_wasm, install_plugin, remote_running};
use sshd::{Sshd, TEST_PASSWORD, TEST_USER};

struct Sizes {
    warm: usize,
    ssh: usize,
    first: usize,
    starts: usize,
    calls_each: usize,
    big_output: usize,
    cancels: usize,
}

const FULL: Sizes = Sizes {
    warm: 500,
    ssh: 100,
    first: 20,
    starts: 10,
    calls_each: 20,
    big_output: 50_000_000,
    cancels: 20,
};

const QUICK: Sizes = Sizes {
    warm: 50,
    ssh: 10,
    first: 3,
    starts: 3,
    calls_each: 3,
    big_output: 5_000_000,
    cancels: 3,
};

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
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn ratio(a: Duration, b: Duration) -> String {
    format!("{:.2}x", a.as_secs_f64() / b.as_secs_f64())
}

/// A table row: measure, median, p90, p99, baseline, ratio.
fn row(cells: [&str; 6]) {
    println!("| {} |", cells.join(" | "));
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
    for i in 0..n + 20 {
        let started = Instant::now();
        let mut ch = handle.channel_open_session().await.unwrap();
        ch.exec(true, "true").await.unwrap();
        while ch.wait().await.is_some() {}
        if i >= 20 {
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
    assert!(c.status().unwrap().success());
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

/// `VmRSS` or `VmHWM` of the server process, in MiB.
fn memory(server: &Server, field: &str) -> f64 {
    server.status_field(field) as f64 / 1024.0
}

/// A call that must succeed as a tool; what failed, if it did not.
async fn call(server: &Server, tool: &str, args: &Value) -> Result<CallToolResult, String> {
    let res = server
        .try_call(tool, args.clone())
        .await
        .map_err(|e| e.to_string())?;
    if res.is_error == Some(true) {
        return Err(format!("{:?}", res.content));
    }
    Ok(res)
}

async fn timed_call(server: &Server, tool: &str, args: &Value) -> Duration {
    let started = Instant::now();
    call(server, tool, args).await.unwrap();
    started.elapsed()
}

/// A server with the compile cache `cache`, logging at `log_filter`, and
/// how long it took from spawn to `initialize` answered. It reads this
/// machine's ssh_config, as a real deployment does.
async fn spawn(cache: &Path, log_filter: &str) -> (Server, Duration) {
    spawn_from(server::Server::builder(), cache, log_filter).await
}

async fn spawn_from(
    builder: server::Builder,
    cache: &Path,
    log_filter: &str,
) -> (Server, Duration) {
    let builder = builder
        .arg("--cache-dir")
        .arg(cache.display().to_string())
        .arg("--system-ssh-config")
        .arg("/etc/ssh/ssh_config")
        .env("MCP_SSH_LOG", log_filter);
    let started = Instant::now();
    let server = builder.spawn().await;
    (server, started.elapsed())
}

/// `execute_command` with the fixture's key, on `port`.
fn key_args(sshd: &Sshd, port: u16, command: &str) -> Value {
    let mut args = exec_args(sshd, command);
    args["port"] = json!(port);
    args
}

/// `callers` concurrent callers per port, each making `calls` calls.
async fn load(
    server: &Server,
    ports: &[u16],
    callers: usize,
    calls: usize,
) -> (f64, usize, Duration) {
    let started = Instant::now();
    let tasks = ports
        .iter()
        .flat_map(|&port| (0..callers).map(move |_| port))
        .map(|port| async move {
            let mut errors = 0;
            for _ in 0..calls {
                let args = bare_args_on(port, "true");
                errors += usize::from(call(server, "execute_command", &args).await.is_err());
            }
            errors
        });
    let errors: usize = futures::future::join_all(tasks).await.into_iter().sum();
    let took = started.elapsed();
    let total = ports.len() * callers * calls;
    (total as f64 / took.as_secs_f64(), errors, took)
}

/// `execute_command` with no credentials, on `port` (the session to it
/// must be open).
fn bare_args_on(port: u16, command: &str) -> Value {
    json!({"host": "127.0.0.1", "port": port, "username": TEST_USER, "command": command})
}

/// From the client cancelling a running `execute_command` (dropping the
/// request, which sends notifications/cancelled) to its remote process
/// being gone, as pgrep on the sshd side sees it.
async fn cancel_to_gone(server: &Server, port: u16, nth: usize) -> Duration {
    let cmd = format!("sleep 9{port}{nth}");
    let args = bare_args_on(port, &cmd);
    let mut pending = Box::pin(call(server, "execute_command", &args));
    while !remote_running(&cmd) {
        tokio::select! {
            r = &mut pending => panic!("returned before the cancel: {r:?}"),
            () = tokio::time::sleep(Duration::from_millis(2)) => {}
        }
    }
    let cancelled = Instant::now();
    drop(pending);
    while remote_running(&cmd) {
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert!(
            cancelled.elapsed() < Duration::from_secs(20),
            "{cmd} survived the cancel"
        );
    }
    cancelled.elapsed()
}

/// A server with the example `disk_usage` tool and the hostile test
/// component installed and granted (the hostile one with 1 s of CPU).
async fn sandboxed_server(cache: &Path, port: u16) -> Server {
    let manifest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../guest-tools/examples/disk-usage/disk_usage.toml"),
    )
    .unwrap();
    let config = format!(
        "[plugins.disk_usage]\nhosts = [\"127.0.0.1\"]\nports = [{port}]\nusers = [\"*\"]\n\
         commands = [[\"df\", \"-P\", \"-k\", \"*\"]]\n\n\
         [plugins.hostile]\nhosts = [\"127.0.0.1\"]\nports = [{port}]\nusers = [\"*\"]\ncpu_seconds = 1.0\n"
    );
    let builder = install_plugin(
        Server::builder(),
        &guest_wasm("disk_usage"),
        "disk_usage",
        Some(&manifest),
        &config,
    );
    let plugins = builder.home().join("plugins");
    std::fs::copy(guest_wasm("hostile_tools"), plugins.join("hostile.wasm")).unwrap();
    std::fs::write(
        plugins.join("hostile.toml"),
        "[requests]\nhosts = [\"*\"]\nusers = [\"*\"]\n",
    )
    .unwrap();
    spawn_from(builder, cache, "warn").await.0
}

/// Median of a `key=value` field over the server's "call timing" lines.
fn timing_median(log: &Path, field: &str) -> Duration {
    let text = std::fs::read_to_string(log).unwrap();
    let mut v: Vec<u64> = text
        .lines()
        .filter(|l| l.contains("call timing"))
        .filter_map(|l| {
            let at = l.find(&format!("{field}="))? + field.len() + 1;
            l[at..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert!(!v.is_empty(), "no call timing lines in {}", log.display());
    v.sort_unstable();
    Duration::from_micros(v[v.len() / 2])
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { QUICK } else { FULL };
    let sshd = Sshd::start_ports(8);
    let port = sshd.port();
    let home = tempfile::tempdir().unwrap();
    let cache = home.path().join("cache");
    let timing_log = "warn,mcp_ssh_session::plugins=debug";

    // 3. Spawn to initialize: an empty cache each time, then a warm one.
    let mut cold = Vec::new();
    for i in 0..n.starts.min(3) {
        let (s, took) = spawn(&home.path().join(format!("cold-{i}")), "warn").await;
        cold.push(took);
        s.client.cancel().await.unwrap();
    }
    // Fill the shared cache first: the measured starts must all be warm.
    spawn(&cache, "warn").await.0.client.cancel().await.unwrap();
    let mut warm_start = Vec::new();
    for _ in 0..n.starts {
        let (s, took) = spawn(&cache, "warn").await;
        warm_start.push(took);
        s.client.cancel().await.unwrap();
    }

    let (server, _) = spawn(&cache, timing_log).await;
    let idle_rss = memory(&server, "VmRSS");

    // 2. First call on a new session.
    let (mut first_key, mut first_pw) = (Vec::new(), Vec::new());
    let pw_args = json!({"host": "127.0.0.1", "port": port, "username": TEST_USER,
                         "password": TEST_PASSWORD, "command": "true"});
    for _ in 0..n.first {
        call(&server, "close_all_sessions", &json!({}))
            .await
            .unwrap();
        first_key
            .push(timed_call(&server, "execute_command", &key_args(&sshd, port, "true")).await);
        call(&server, "close_all_sessions", &json!({}))
            .await
            .unwrap();
        first_pw.push(timed_call(&server, "execute_command", &pw_args).await);
    }

    // 1. Warm calls on an open session.
    call(&server, "close_all_sessions", &json!({}))
        .await
        .unwrap();
    call(&server, "execute_command", &key_args(&sshd, port, "true"))
        .await
        .unwrap();
    for _ in 0..20 {
        call(&server, "execute_command", &bare_args_on(port, "true"))
            .await
            .unwrap();
    }
    let _ = std::fs::write(server.log_path(), "");
    let mut warm = Vec::with_capacity(n.warm);
    for _ in 0..n.warm {
        warm.push(timed_call(&server, "execute_command", &bare_args_on(port, "true")).await);
    }
    let instantiate = timing_median(server.log_path(), "instantiate_us");
    let guest = timing_median(server.log_path(), "guest_us");
    let host = timing_median(server.log_path(), "host_us");

    // 4. Concurrency.
    for &p in sshd.ports() {
        call(&server, "execute_command", &key_args(&sshd, p, "true"))
            .await
            .unwrap();
    }
    let (one_host_rate, one_host_errors, _) = load(&server, &[port], 64, n.calls_each).await;
    let (many_rate, many_errors, _) = load(&server, sshd.ports(), 8, n.calls_each).await;

    // Cancel to remote process gone.
    let mut cancels = Vec::new();
    for i in 0..n.cancels {
        cancels.push(cancel_to_gone(&server, port, i).await);
    }

    // 5. Large output.
    let big = format!("head -c {} /dev/zero | tr '\\0' a", n.big_output);
    let started = Instant::now();
    let res = call(&server, "execute_command", &bare_args_on(port, &big))
        .await
        .unwrap();
    let big_took = started.elapsed();
    let s = res.structured_content.unwrap();
    let returned = s["stdout"].as_str().unwrap().len();
    assert_eq!(
        s["stdout_bytes"], n.big_output,
        "the stream was not counted whole"
    );
    let big_hwm = memory(&server, "VmHWM");
    server.client.cancel().await.unwrap();

    // 6. RSS with 50 open sessions: 7 sshd x 8 ports, one session each.
    let (sessions_server, _) = spawn(&cache, "warn").await;
    let mut fixtures = vec![];
    for _ in 0..6 {
        fixtures.push(Sshd::start_ports(8));
    }
    let targets: Vec<(&Sshd, u16)> = std::iter::once(&sshd)
        .chain(fixtures.iter())
        .flat_map(|f| f.ports().iter().map(move |&p| (f, p)))
        .take(50)
        .collect();
    for (f, p) in &targets {
        call(
            &sessions_server,
            "execute_command",
            &key_args(f, *p, "true"),
        )
        .await
        .unwrap();
    }
    let listed = call(&sessions_server, "list_sessions", &json!({}))
        .await
        .unwrap();
    let open = listed.structured_content.unwrap()["sessions"]
        .as_array()
        .unwrap()
        .len();
    let rss_50 = memory(&sessions_server, "VmRSS");
    sessions_server.client.cancel().await.unwrap();

    // Issue 3: the sandbox's cost, and stopping an endless loop.
    let sandboxed = sandboxed_server(&cache, sshd.port()).await;
    call(
        &sandboxed,
        "execute_command",
        &key_args(&sshd, port, "true"),
    )
    .await
    .unwrap();
    let df = json!({"host": "127.0.0.1", "port": port, "username": TEST_USER, "path": "/"});
    let df_builtin = bare_args_on(port, "'df' '-P' '-k' '/'");
    let (mut third, mut builtin) = (Vec::new(), Vec::new());
    for _ in 0..n.warm / 2 {
        third.push(timed_call(&sandboxed, "disk_usage", &df).await);
        builtin.push(timed_call(&sandboxed, "execute_command", &df_builtin).await);
    }
    let mut loop_stops = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let res = call(&sandboxed, "hostile_spin", &json!({})).await;
        assert!(res.is_err(), "the loop returned");
        loop_stops.push(started.elapsed());
    }
    sandboxed.client.cancel().await.unwrap();

    // Baselines, after the server runs so they do not share the CPU.
    let raw = raw_russh(&sshd, n.warm).await;
    let cm = control_master(&sshd, n.ssh);
    let fresh = fresh_ssh(&sshd, n.first);

    let (w, r, c) = (stats(warm), stats(raw), stats(cm));
    let (fk, fp, fs) = (stats(first_key), stats(first_pw), stats(fresh));
    let (sc, sw) = (stats(cold), stats(warm_start));
    println!();
    println!(
        "mcp-ssh-session performance on loopback: {} cores, {}, release build, {} run",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        sshd_version(),
        if quick { "quick" } else { "full" }
    );
    println!("test account {TEST_USER}: /bin/sh, no rc files; ed25519 keys");
    println!();
    row([
        "measure",
        "median",
        "p90",
        "p99",
        "baseline (median)",
        "ratio",
    ]);
    row(["---", "---", "---", "---", "---", "---"]);
    let warm_label = format!("warm `execute_command true` over MCP, n={}", n.warm);
    let raw_label = format!("raw russh exec, one connection: {}", ms(r.median));
    row([
        &warm_label,
        &ms(w.median),
        &ms(w.p90),
        &ms(w.p99),
        &raw_label,
        &ratio(w.median, r.median),
    ]);
    let cm_label = format!("`ssh` with ControlMaster, n={}: {}", n.ssh, ms(c.median));
    row(["(same)", "", "", "", &cm_label, &ratio(w.median, c.median)]);
    let first_label = format!("first call, new session, ed25519 key, n={}", n.first);
    let fresh_label = format!("fresh `ssh` process: {}", ms(fs.median));
    row([
        &first_label,
        &ms(fk.median),
        &ms(fk.p90),
        &ms(fk.p99),
        &fresh_label,
        &ratio(fk.median, fs.median),
    ]);
    let pw_label = format!("first call, new session, password, n={}", n.first);
    row([&pw_label, &ms(fp.median), &ms(fp.p90), &ms(fp.p99), "", ""]);
    row([
        "spawn to `initialize`, empty compile cache",
        &ms(sc.median),
        "",
        "",
        "",
        "",
    ]);
    let start_label = format!("spawn to `initialize`, warm compile cache, n={}", n.starts);
    row([&start_label, &ms(sw.median), &ms(sw.p90), "", "", ""]);
    let one = format!(
        "64 callers x {} calls, one host: {one_host_rate:.0} calls/s, {one_host_errors} errors",
        n.calls_each
    );
    row([&one, "", "", "", "", ""]);
    let many = format!(
        "8 hosts x 8 callers x {} calls: {many_rate:.0} calls/s, {many_errors} errors",
        n.calls_each
    );
    row([&many, "", "", "", "", ""]);
    let big_label = format!(
        "{} MB on stdout: {returned} bytes returned (default cap), server peak RSS {big_hwm:.1} MiB",
        n.big_output / 1_000_000
    );
    row([&big_label, &ms(big_took), "", "", "", ""]);
    let (t3, tb, ls) = (stats(third), stats(builtin), stats(loop_stops));
    let third_label = format!(
        "granted third-party `disk_usage` (df -P -k /), n={}",
        n.warm / 2
    );
    let builtin_label = format!(
        "built-in `execute_command` of the same argv: {}",
        ms(tb.median)
    );
    row([
        &third_label,
        &ms(t3.median),
        &ms(t3.p90),
        &ms(t3.p99),
        &builtin_label,
        &ratio(t3.median, tb.median),
    ]);
    row([
        "endless loop in a guest, CPU limit 1 s: call fails after",
        &ms(ls.median),
        "",
        "",
        "",
        "",
    ]);
    let ca = stats(cancels);
    let cancel_label = format!("cancel to remote process gone (pgrep), n={}", n.cancels);
    row([
        &cancel_label,
        &ms(ca.median),
        &ms(ca.p90),
        &ms(ca.p99),
        "",
        "",
    ]);
    row([
        &format!("RSS idle after `initialize`: {idle_rss:.1} MiB"),
        "",
        "",
        "",
        "",
        "",
    ]);
    row([
        &format!("RSS with {open} open sessions: {rss_50:.1} MiB"),
        "",
        "",
        "",
        "",
        "",
    ]);
    let share = guest.as_secs_f64() / w.median.as_secs_f64() * 100.0;
    let plugin = format!(
        "plugin overhead per warm call: instantiate {} µs, guest code {} µs ({share:.1}% of the call), SSH import {} µs",
        instantiate.as_micros(),
        guest.as_micros(),
        host.as_micros()
    );
    row([&plugin, "", "", "", "", ""]);

    state::measure(quick, &cache, &sshd).await;
    files::measure(quick, &cache).await;
    http::measure(quick, &cache, &sshd, w.median);

    let samples = if quick { 200 } else { 2000 };
    let (parsed, cached) = resolve_cost(home.path(), samples);
    for (what, r) in [("parsed", parsed), ("cached (a stat per file)", cached)] {
        row([
            &format!(
                "ssh_config resolution, 200 Host blocks + the system file, {what}, n={samples}"
            ),
            &micros(r.median),
            &micros(r.p90),
            &micros(r.p99),
            &format!("warm call: {}", ms(w.median)),
            &ratio(r.median, w.median),
        ]);
    }
}

/// In-process cost of resolving a target through ssh_config, which every
/// call pays: a user file of 200 `Host` blocks (the match is the last) and
/// this machine's `/etc/ssh/ssh_config` with its `Include`. Parsed every
/// time, then as calls see it (cached while no file changes).
fn resolve_cost(dir: &Path, n: usize) -> (Stats, Stats) {
    use mcp_ssh_session::ssh::ssh_config::{Files, Query};
    use mcp_ssh_session::ssh::{SessionManager, SshSettings, Target};
    let path = dir.join("ssh_config_bench");
    let mut text = String::new();
    for i in 0..200 {
        text.push_str(&format!(
            "Host web-{i} web-{i}.example\n  HostName 10.0.{}.{}\n  User deploy\n  \
             Port {}\n  IdentityFile ~/.ssh/id_web_{i}\n\n",
            i / 250,
            i % 250,
            2200 + i
        ));
    }
    text.push_str("Host *\n  ServerAliveInterval 30\n  SendEnv LANG\n");
    std::fs::write(&path, text).unwrap();
    let files = Files {
        user: Some(path),
        system: Some("/etc/ssh/ssh_config".into()),
    };
    let query = Query {
        host: "web-199",
        user: None,
        port: None,
        local_user: "bench",
    };
    let mut parsed = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let config = files.resolve(&query).unwrap();
        parsed.push(started.elapsed());
        assert_eq!(config.port, Some(2399));
    }
    let manager = SessionManager::new(SshSettings {
        ssh_config: files,
        ..SshSettings::default()
    });
    let target = Target {
        host: "web-199".into(),
        ..Target::default()
    };
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let dest = manager.resolve(&target).unwrap();
        times.push(started.elapsed());
        assert_eq!(dest.key.port, 2399);
    }
    (stats(parsed), stats(times))
}

fn sshd_version() -> String {
    let out = Command::new("ssh").arg("-V").output().unwrap();
    String::from_utf8_lossy(&out.stderr)
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_string()
}
