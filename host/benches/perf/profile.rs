//! `--profile warm|load|big SECS`: one kind of call for SECS seconds, in
//! blocks alternating with raw russh's, so a profiler can attach to the
//! server; prints the ratio, the server's CPU time and context switches
//! per call, and raw russh's own CPU time per call (the bench's CPU while
//! only raw russh runs):
//!
//! ```text
//! cargo build --profile profiling
//! MCP_SSH_SERVER_BIN=target/profiling/mcp-ssh-session \
//!   cargo bench --bench perf -- --profile warm 30 &
//! perf record -g --call-graph dwarf -p <the pid it prints> -- sleep 20
//! ```
//!
//! `warm` is one caller's `execute_command true`; `load` is 64 callers on
//! one host against 64 raw tasks at the server's channel cap; `big` is
//! the 50 MB row's command against raw russh reading its stdout.

use std::time::{Duration, Instant};

use crate::raw::Raw;
use crate::sshd::Sshd;
use crate::table::{median_rate, ms, ratio, stats};
use crate::{
    BLOCK, CHANNEL_CAP, bare_args_on, big_command, call, key_args, load, spawn, timed_call,
};

pub async fn run(what: &str, secs: Duration) {
    let sshd = Sshd::start();
    let home = tempfile::tempdir().unwrap();
    let (server, _) = spawn(&home.path().join("cache"), "warn").await;
    let port = sshd.port();
    call(&server, "execute_command", &key_args(&sshd, port, "true"))
        .await
        .unwrap();
    let raw = Raw::new(&sshd, port).await;
    eprintln!("server pid {}", server.pid);
    let big = what == "big";
    let command = if big {
        big_command()
    } else {
        "true".to_string()
    };
    let bare = bare_args_on(port, &command);
    let (started, mut ours, mut base, mut rates, mut raw_rates) =
        (Instant::now(), vec![], vec![], vec![], vec![]);
    let (mut raw_cpu, mut calls) = (Duration::ZERO, 0);
    let cpu_before = cpu_time(server.pid);
    let switches_before = context_switches(server.pid);
    while started.elapsed() < secs {
        if what == "load" {
            let (rate, errors, _) = load(&server, &[port], 64, 5).await;
            assert_eq!(errors, 0);
            rates.push(rate);
            calls += 64 * 5;
            let before = cpu_time(std::process::id());
            raw_rates.push(raw.load(64, 5, CHANNEL_CAP).await);
            raw_cpu += cpu_time(std::process::id()) - before;
        } else {
            // Big outputs take long enough that a block of a few keeps
            // both sides interleaved at a fine grain.
            let block = if big { 3 } else { BLOCK };
            for _ in 0..block {
                ours.push(timed_call(&server, "execute_command", &bare).await);
            }
            calls += block;
            let before = cpu_time(std::process::id());
            for _ in 0..block {
                base.push(if big {
                    raw.read_all(&command).await.1
                } else {
                    raw.exec(&command).await
                });
            }
            raw_cpu += cpu_time(std::process::id()) - before;
        }
    }
    let cpu = cpu_time(server.pid) - cpu_before;
    let switches = context_switches(server.pid) - switches_before;
    let figures = if what == "load" {
        let (o, b) = (median_rate(rates), median_rate(raw_rates));
        format!(
            "64 callers: {o:.0} calls/s; raw russh {b:.0}: {:.2}x",
            o / b
        )
    } else {
        let (o, b) = (stats(ours), stats(base));
        format!(
            "{what} calls: median {}, p90 {}; raw russh {}: {}",
            ms(o.median),
            ms(o.p90),
            ms(b.median),
            ratio(o.median, b.median)
        )
    };
    eprintln!(
        "{figures}; server CPU per call {:.0} µs, {:.1} context switches; \
         raw russh's CPU per call {:.0} µs",
        cpu.as_secs_f64() * 1e6 / calls as f64,
        switches as f64 / calls as f64,
        raw_cpu.as_secs_f64() * 1e6 / calls as f64
    );
}

/// Context switches of all threads of process `pid` so far.
fn context_switches(pid: u32) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        total += status
            .lines()
            .filter(|l| l.contains("ctxt_switches:"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>();
    }
    total
}

/// User plus system CPU time of process `pid` so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the command name in parentheses: utime and stime are fields
    // 14 and 15, in clock ticks (100 per second on Linux).
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}
