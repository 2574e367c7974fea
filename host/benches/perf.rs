//! The performance suite: the real server binary over stdio, driven by
//! rmcp's MCP client, against floors measured in the same run on the same
//! loopback sshd, in alternating blocks (ours, then the floor's) so drift
//! on a shared machine hits both. Prints one table; asserts nothing about
//! time.
//!
//! - warm `execute_command true` vs. raw russh exec on a reused connection
//!   ([`raw`]), and vs. OpenSSH `ssh` with ControlMaster ([`openssh`]);
//!   a warm `list_sessions` (no SSH) says what MCP and the component cost;
//! - the first call on a new session (key, password) vs. raw russh's
//!   connect + auth + exec, and vs. a fresh `ssh`;
//! - spawn to `initialize` answered, cold and warm compile cache;
//! - 64 callers to one host, and 8 hosts x 8 callers, vs. raw russh with
//!   as many tasks at the server's channel cap;
//! - 50 MB of stdout, 30 runs, vs. raw russh reading it: p50/p90/max, the
//!   server's peak RSS, bytes returned;
//! - idle RSS, and RSS with 50 open sessions;
//! - per-call instantiate time and the share of a warm call spent in wasm;
//! - a warm call with session state kept vs. `--stateless` ([`state`]);
//! - uploads and downloads vs. `scp` and `sftp`, and warm small-file calls
//!   ([`files`]); the same transfers over a 1 Gbit/s link ([`link`]);
//! - a warm call over streamable HTTP vs. stdio, and 64 concurrent HTTP
//!   clients ([`http`]);
//! - ssh_config resolution ([`resolve`]).
//!
//! Run: `cargo bench --bench perf` (`-- --quick` for a short run, as CI
//! does; `-- --profile warm|load|big SECS` for a profiler, see [`profile`];
//! `-- --files` for the file rows alone).
//! Needs what `scripts/test` installs (sshd, the test account) and root,
//! as the tests do. The server, its guests and sshd come from the
//! integration suite's helpers.

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
#[path = "perf/link.rs"]
mod link;
#[path = "perf/state.rs"]
mod state;

#[path = "perf/http.rs"]
mod http;
#[path = "perf/openssh.rs"]
mod openssh;
#[path = "perf/profile.rs"]
mod profile;
#[path = "perf/raw.rs"]
mod raw;
#[path = "perf/resolve.rs"]
mod resolve;
#[path = "perf/table.rs"]
mod table;

use std::path::Path;
use std::time::{Duration, Instant};

use rmcp::model::CallToolResult;
use serde_json::{Value, json};

pub(crate) use openssh::timed;
use raw::{Auth, Raw};
use table::{Stats, median_rate, ms, note, ratio, row, stats};

use server::{Server, exec_args, guest_wasm, install_plugin, remote_running};
use sshd::{Sshd, TEST_PASSWORD, TEST_USER};

struct Sizes {
    warm: usize,
    ssh: usize,
    first: usize,
    starts: usize,
    calls_each: usize,
    load_rounds: usize,
    big_output: usize,
    big_runs: usize,
    cancels: usize,
}

const FULL: Sizes = Sizes {
    warm: 500,
    ssh: 100,
    first: 20,
    starts: 10,
    calls_each: 20,
    load_rounds: 3,
    big_output: 50_000_000,
    big_runs: 30,
    cancels: 20,
};

const QUICK: Sizes = Sizes {
    warm: 50,
    ssh: 10,
    first: 3,
    starts: 3,
    calls_each: 3,
    load_rounds: 1,
    big_output: 5_000_000,
    big_runs: 5,
    cancels: 3,
};

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

/// The large-output row's command: `bytes` of `a` on stdout.
fn big_command_of(bytes: usize) -> String {
    format!("head -c {bytes} /dev/zero | tr '\\0' a")
}

/// The full run's large-output command (for `--profile big`).
fn big_command() -> String {
    big_command_of(FULL.big_output)
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

/// Calls in a block of an interleaved comparison: ours, then the
/// baseline's, then ours again, so drift on a shared machine hits both.
const BLOCK: usize = 10;
/// The server's channels per connection (`SshSettings`'s default): the
/// raw floor of the load rows opens no more at once.
const CHANNEL_CAP: usize = 8;

/// A row comparing `ours` with `base`, measured in the same run.
fn compare(measure: &str, ours: &Stats, base_label: &str, base: Duration) {
    row([
        measure,
        &ms(ours.median),
        &ms(ours.p90),
        &ms(ours.p99),
        &format!("{base_label}: {}", ms(base)),
        &ratio(ours.median, base),
    ]);
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--profile") {
        let what = args.get(at + 1).map_or("warm", String::as_str);
        let secs = args.get(at + 2).and_then(|s| s.parse().ok()).unwrap_or(30);
        return profile::run(what, Duration::from_secs(secs)).await;
    }
    let quick = args.iter().any(|a| a == "--quick");
    if args.iter().any(|a| a == "--files") {
        // A warm compile cache, as in a full run: idle RSS is then the
        // server's, not the compiler's.
        let home = tempfile::tempdir().unwrap();
        let cache = home.path().join("cache");
        spawn(&cache, "warn").await.0.client.cancel().await.unwrap();
        files::measure(quick, &cache).await;
        return link::measure(quick, &cache).await;
    }
    let n = if quick { QUICK } else { FULL };
    let sshd = Sshd::start_ports(8);
    let port = sshd.port();
    let home = tempfile::tempdir().unwrap();
    let cache = home.path().join("cache");
    let timing_log = "warn,mcp_ssh_session::plugins=debug";

    // Spawn to initialize: an empty cache each time, then a warm one.
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

    // The first call on a new session, and raw russh's connect, key
    // exchange, authentication and exec, alternating.
    let (mut first_key, mut first_pw, mut raw_key, mut raw_pw) = (vec![], vec![], vec![], vec![]);
    let pw_args = json!({"host": "127.0.0.1", "port": port, "username": TEST_USER,
                         "password": TEST_PASSWORD, "command": "true"});
    let none = json!({});
    let close_all = || call(&server, "close_all_sessions", &none);
    for _ in 0..n.first {
        close_all().await.unwrap();
        first_key
            .push(timed_call(&server, "execute_command", &key_args(&sshd, port, "true")).await);
        raw_key.push(raw::first_exec(&sshd, Auth::Key).await);
        close_all().await.unwrap();
        first_pw.push(timed_call(&server, "execute_command", &pw_args).await);
        raw_pw.push(raw::first_exec(&sshd, Auth::Password).await);
    }

    // Warm calls on an open session against raw russh execs on a
    // connection of its own, in alternating blocks.
    close_all().await.unwrap();
    call(&server, "execute_command", &key_args(&sshd, port, "true"))
        .await
        .unwrap();
    let raw = Raw::new(&sshd, port).await;
    let bare = bare_args_on(port, "true");
    for _ in 0..20 {
        call(&server, "execute_command", &bare).await.unwrap();
        raw.exec("true").await;
    }
    let _ = std::fs::write(server.log_path(), "");
    let (mut warm, mut raw_warm) = (vec![], vec![]);
    for _ in 0..n.warm / BLOCK {
        for _ in 0..BLOCK {
            warm.push(timed_call(&server, "execute_command", &bare).await);
        }
        for _ in 0..BLOCK {
            raw_warm.push(raw.exec("true").await);
        }
    }
    let instantiate = timing_median(server.log_path(), "instantiate_us");
    let guest = timing_median(server.log_path(), "guest_us");
    let host = timing_median(server.log_path(), "host_us");
    // What a call costs with no SSH in it: MCP, the instance, the guest.
    let mut no_ssh = Vec::with_capacity(n.warm);
    for _ in 0..n.warm {
        no_ssh.push(timed_call(&server, "list_sessions", &json!({})).await);
    }

    // Concurrency, against raw russh with as many tasks on as many
    // connections, at the server's channel cap, in alternating rounds.
    for &p in sshd.ports() {
        call(&server, "execute_command", &key_args(&sshd, p, "true"))
            .await
            .unwrap();
    }
    let mut raws = vec![];
    for &p in sshd.ports() {
        raws.push(Raw::new(&sshd, p).await);
    }
    let (mut one, mut raw_one, mut many, mut raw_many) = (vec![], vec![], vec![], vec![]);
    let (mut one_errors, mut many_errors) = (0, 0);
    for _ in 0..n.load_rounds {
        let (rate, errors, _) = load(&server, &[port], 64, n.calls_each).await;
        one.push(rate);
        one_errors += errors;
        raw_one.push(raw.load(64, n.calls_each, CHANNEL_CAP).await);
        let (rate, errors, _) = load(&server, sshd.ports(), 8, n.calls_each).await;
        many.push(rate);
        many_errors += errors;
        raw_many.push(raw::load_many(&raws, 8, n.calls_each, CHANNEL_CAP).await);
    }
    for r in raws {
        r.close().await;
    }

    // Cancel to remote process gone.
    let mut cancels = Vec::new();
    for i in 0..n.cancels {
        cancels.push(cancel_to_gone(&server, port, i).await);
    }

    // Large output, against raw russh reading the same command's stdout.
    let big = big_command_of(n.big_output);
    let (mut big_times, mut raw_big, mut returned) = (vec![], vec![], 0);
    for _ in 0..n.big_runs {
        let started = Instant::now();
        let res = call(&server, "execute_command", &bare_args_on(port, &big))
            .await
            .unwrap();
        big_times.push(started.elapsed());
        let s = res.structured_content.unwrap();
        returned = s["stdout"].as_str().unwrap().len();
        assert_eq!(
            s["stdout_bytes"], n.big_output,
            "the stream was not counted whole"
        );
        let (bytes, took) = raw.read_all(&big).await;
        assert_eq!(bytes, n.big_output, "raw russh read short");
        raw_big.push(took);
    }
    let big_hwm = memory(&server, "VmHWM");
    raw.close().await;
    server.client.cancel().await.unwrap();

    // RSS with 50 open sessions: 7 sshd x 8 ports, one session each.
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

    // The sandbox's cost, and stopping an endless loop.
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

    // OpenSSH, after the server runs so they do not share the CPU.
    let cm = stats(openssh::control_master(&sshd, n.ssh));
    let fresh = stats(openssh::fresh_ssh(&sshd, n.first));

    let (w, r) = (stats(warm), stats(raw_warm));
    println!();
    println!(
        "mcp-ssh-session performance on loopback: {} cores, {}, release build, {} run",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        openssh::version(),
        if quick { "quick" } else { "full" }
    );
    println!("test account {TEST_USER}: /bin/sh, no rc files; ed25519 keys");
    println!(
        "ratios against a baseline measured in the same run, in alternating blocks (\
         ours, then the baseline's)"
    );
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
    let label = format!("warm `execute_command true` over MCP, n={}", n.warm);
    compare(&label, &w, "raw russh exec, one connection", r.median);
    row([
        "(same)",
        "",
        "",
        "",
        &format!("`ssh` with ControlMaster, n={}: {}", n.ssh, ms(cm.median)),
        &ratio(w.median, cm.median),
    ]);
    let ns = stats(no_ssh);
    let label = format!(
        "warm `list_sessions` (MCP and a component, no SSH), n={}",
        n.warm
    );
    compare(&label, &ns, "warm `execute_command true`", w.median);
    let (fk, fp) = (stats(first_key), stats(first_pw));
    let label = format!("first call, new session, ed25519 key, n={}", n.first);
    compare(
        &label,
        &fk,
        "raw russh connect + auth + exec",
        stats(raw_key).median,
    );
    row([
        "(same)",
        "",
        "",
        "",
        &format!("fresh `ssh` process: {}", ms(fresh.median)),
        &ratio(fk.median, fresh.median),
    ]);
    let label = format!("first call, new session, password, n={}", n.first);
    compare(
        &label,
        &fp,
        "raw russh connect + auth + exec",
        stats(raw_pw).median,
    );
    let (sc, sw) = (stats(cold), stats(warm_start));
    row([
        "spawn to `initialize`, empty compile cache",
        &ms(sc.median),
        "",
        "",
        "",
        "",
    ]);
    let label = format!("spawn to `initialize`, warm compile cache, n={}", n.starts);
    row([&label, &ms(sw.median), &ms(sw.p90), "", "", ""]);
    for (what, ours, errors, base) in [
        ("64 callers, one host", one, one_errors, raw_one),
        ("8 hosts x 8 callers", many, many_errors, raw_many),
    ] {
        let (ours, base) = (median_rate(ours), median_rate(base));
        row([
            &format!(
                "{what} x {} calls, median of {} rounds: {ours:.0} calls/s, {errors} errors",
                n.calls_each, n.load_rounds
            ),
            "",
            "",
            "",
            &format!(
                "raw russh, as many tasks, {CHANNEL_CAP} channels per connection: {base:.0} calls/s"
            ),
            &format!("{:.2}x throughput", ours / base),
        ]);
    }
    let (b, rb) = (stats(big_times), stats(raw_big));
    row([
        &format!(
            "{} MB on stdout, n={}: {returned} bytes returned (default cap), server peak RSS {big_hwm:.1} MiB; p90, max",
            n.big_output / 1_000_000,
            n.big_runs
        ),
        &ms(b.median),
        &ms(b.p90),
        &ms(b.max),
        &format!(
            "raw russh reading it: {} (p90 {}, max {})",
            ms(rb.median),
            ms(rb.p90),
            ms(rb.max)
        ),
        &ratio(b.median, rb.median),
    ]);
    let (t3, tb, ls) = (stats(third), stats(builtin), stats(loop_stops));
    let label = format!(
        "granted third-party `disk_usage` (df -P -k /), n={}",
        n.warm / 2
    );
    compare(
        &label,
        &t3,
        "built-in `execute_command` of the same argv",
        tb.median,
    );
    row([
        "endless loop in a guest, CPU limit 1 s: call fails after",
        &ms(ls.median),
        "",
        "",
        "",
        "",
    ]);
    let ca = stats(cancels);
    let label = format!("cancel to remote process gone (pgrep), n={}", n.cancels);
    row([&label, &ms(ca.median), &ms(ca.p90), &ms(ca.p99), "", ""]);
    note(&format!("RSS idle after `initialize`: {idle_rss:.1} MiB"));
    note(&format!("RSS with {open} open sessions: {rss_50:.1} MiB"));
    let share = guest.as_secs_f64() / w.median.as_secs_f64() * 100.0;
    note(&format!(
        "plugin overhead per warm call: instantiate {} µs, guest code {} µs ({share:.1}% of the call), SSH import {} µs",
        instantiate.as_micros(),
        guest.as_micros(),
        host.as_micros()
    ));

    state::measure(quick, &cache, &sshd).await;
    files::measure(quick, &cache).await;
    link::measure(quick, &cache).await;
    http::measure(quick, &cache, &sshd, w.median);
    resolve::measure(quick, home.path(), w.median);
}
