//! The HTTP rows of the performance suite: a warm `execute_command true`
//! over streamable HTTP (one keep-alive connection, a bearer token
//! checked on every request) against the same call over stdio, and 64
//! concurrent HTTP clients, each with its own MCP session and connection,
//! calling one host.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use super::http_server::{HttpServer, KeepAliveMcp, new_token};
use super::server::Server;
use super::sshd::{Sshd, TEST_USER};
use super::{key_args, ms, ratio, row, stats};

/// Measures and prints the HTTP rows; `stdio_warm` is the stdio median.
pub(super) fn measure(quick: bool, cache: &Path, sshd: &Sshd, stdio_warm: Duration) {
    let (warm_n, calls_each) = if quick { (50, 3) } else { (500, 20) };
    let (token, lines) = new_token("bench");
    let builder = Server::builder()
        .arg("--cache-dir")
        .arg(cache.display().to_string())
        .env("MCP_SSH_LOG", "warn");
    // The session opens with the fixture's key file, which an HTTP client
    // may name only when its table says so.
    let server = HttpServer::start(builder, &format!("{lines}key_files = true\n"), &[]);
    let port = sshd.port();
    let mut mcp = KeepAliveMcp::open(server.port, Some(&token));
    mcp.call("execute_command", &key_args(sshd, port, "true"))
        .unwrap();
    let bare = json!({"host": "127.0.0.1", "port": port, "username": TEST_USER, "command": "true"});
    for _ in 0..20 {
        mcp.call("execute_command", &bare).unwrap();
    }
    let mut warm = Vec::with_capacity(warm_n);
    for _ in 0..warm_n {
        let started = Instant::now();
        mcp.call("execute_command", &bare).unwrap();
        warm.push(started.elapsed());
    }
    let w = stats(warm);
    row([
        &format!("warm `execute_command true` over HTTP (keep-alive, bearer token), n={warm_n}"),
        &ms(w.median),
        &ms(w.p90),
        &ms(w.p99),
        &format!("the same over stdio: {}", ms(stdio_warm)),
        &ratio(w.median, stdio_warm),
    ]);

    let started = Instant::now();
    let errors: usize = std::thread::scope(|s| {
        let workers: Vec<_> = (0..64)
            .map(|_| {
                let (token, bare) = (&token, &bare);
                s.spawn(move || {
                    let mut client = KeepAliveMcp::open(server.port, Some(token));
                    (0..calls_each)
                        .filter(|_| client.call("execute_command", bare).is_err())
                        .count()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or(calls_each))
            .sum()
    });
    let took = started.elapsed();
    let rate = (64 * calls_each) as f64 / took.as_secs_f64();
    row([
        &format!(
            "64 HTTP clients x {calls_each} calls, one host: {rate:.0} calls/s, {errors} errors"
        ),
        "",
        "",
        "",
        "",
        "",
    ]);
}
