//! One session under load and abuse: far more concurrent stops than
//! OpenSSH's default `MaxSessions 10` allows channels, and command lines
//! too large for one SSH packet. Nothing may be left running, and the
//! shared connection must survive for every other command on it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::task::JoinSet;

use crate::server::{
    Leftovers, Server, bare_args, connection_port, honest_stop, remote_count_as, remote_running,
    stdout, structured, succeeded, text,
};
use crate::sshd::{Sshd, TEST_USER};

/// Waits up to `limit` until `cond` holds; whether it did.
async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !cond() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

#[tokio::test]
async fn sixty_four_concurrent_timeouts_on_one_session_leave_nothing_running() {
    let sshd = Sshd::start();
    let server = Arc::new(Server::start().await);
    server.exec(&sshd, "true").await;
    let sleeper = format!("sleep 4714.{}", sshd.port());
    let _cleanup = Leftovers::new(TEST_USER, &sleeper);
    let started = Instant::now();
    let mut calls = JoinSet::new();
    for _ in 0..64 {
        let (server, mut args) = (server.clone(), bare_args(&sshd, &sleeper));
        args["timeout"] = json!(2);
        calls.spawn(async move { server.call("execute_command", args).await });
    }
    let mut results = Vec::new();
    while let Some(res) = calls.join_next().await {
        results.push(res.unwrap());
    }
    let took = started.elapsed();
    // Verified stops leave nothing; a moment for the kernel to reap.
    eventually(Duration::from_secs(1), || !remote_running(&sleeper)).await;
    let left = remote_count_as(TEST_USER, &sleeper);
    eprintln!("64 concurrent timeouts on one session: {left} processes left");
    assert_eq!(
        left, 0,
        "{left} of 64 timed-out commands still run after every call returned"
    );
    for res in &results {
        // A call that never got a channel may fail; one that ran must say
        // honestly whether its stop was verified.
        if res.is_error != Some(true) {
            assert_eq!(structured(res)["timed_out"], true, "{}", text(res));
            honest_stop(res);
        }
    }
    // A hang check, not a speed test: each call has its own 2 s timeout.
    assert!(took <= Duration::from_secs(60), "64 calls took {took:?}");
}

#[tokio::test]
async fn fifty_cancelled_calls_on_one_session_leave_nothing_running() {
    let sshd = Sshd::start();
    let server = Arc::new(Server::start().await);
    server.exec(&sshd, "true").await;
    let sleeper = format!("sleep 4716.{}", sshd.port());
    let _cleanup = Leftovers::new(TEST_USER, &sleeper);
    let mut calls = JoinSet::new();
    for _ in 0..50 {
        let (server, args) = (server.clone(), bare_args(&sshd, &sleeper));
        calls.spawn(async move { server.try_call("execute_command", args).await });
    }
    // Several running and the rest queued behind the connection's limit
    // (whatever it is) when the cancel comes.
    let running = eventually(Duration::from_secs(10), || {
        remote_count_as(TEST_USER, &sleeper) >= 4
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        running,
        "only {} started",
        remote_count_as(TEST_USER, &sleeper)
    );
    // Dropping a call's future makes rmcp's client send a cancellation.
    calls.abort_all();
    while calls.join_next().await.is_some() {}
    let gone = eventually(Duration::from_secs(20), || !remote_running(&sleeper)).await;
    assert!(
        gone,
        "{} of 50 cancelled commands still run 20 s after the cancel",
        remote_count_as(TEST_USER, &sleeper)
    );
    // A call cancelled while it waited for a channel must not start later.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let late = remote_count_as(TEST_USER, &sleeper);
    assert_eq!(
        late, 0,
        "{late} cancelled commands started after the cancel"
    );
    server.exec(&sshd, "true").await;
}

/// Sends a command line of `size` bytes while another command runs on the
/// same session: the big one is refused with a clear error (or carried
/// some other way and run), and the other one and the connection survive.
async fn a_huge_command_line_leaves_the_session_unharmed(size: usize) {
    let sshd = Sshd::start();
    let server = Arc::new(Server::start().await);
    server.exec(&sshd, "true").await;
    let before = connection_port(&server, &sshd).await;
    let neighbour = format!("sleep 2.{}", sshd.port());
    let _cleanup = Leftovers::new(TEST_USER, &neighbour);
    let other = {
        let (server, args) = (
            server.clone(),
            bare_args(&sshd, &format!("{neighbour}; echo ok")),
        );
        tokio::spawn(async move { server.call("execute_command", args).await })
    };
    assert!(
        eventually(Duration::from_secs(10), || remote_running(&neighbour)).await,
        "the neighbouring command never started"
    );
    let big = format!("echo big-ok; : {}", "x".repeat(size));
    let res = server.call("execute_command", bare_args(&sshd, &big)).await;
    let msg = text(&res);
    if res.is_error == Some(true) {
        assert!(
            !msg.contains("may or may not"),
            "a command that never started is reported as maybe run: {msg}"
        );
        assert!(
            ["too long", "too large", "KiB", "bytes"]
                .iter()
                .any(|w| msg.contains(w)),
            "the refusal does not say what is wrong: {msg}"
        );
        assert!(msg.len() < 4096, "the refusal echoes the command line");
    } else {
        assert_eq!(stdout(&res), "big-ok\n", "{}", &msg[..msg.len().min(500)]);
    }
    let res = other.await.unwrap();
    assert_ne!(
        res.is_error,
        Some(true),
        "the neighbouring command was harmed: {}",
        text(&res)
    );
    assert_eq!(
        stdout(&res),
        "ok\n",
        "the neighbouring command was harmed: {}",
        text(&res)
    );
    assert_eq!(
        connection_port(&server, &sshd).await,
        before,
        "the shared connection was lost"
    );
    succeeded(&server.exec(&sshd, "true").await);
}

#[tokio::test]
async fn a_256_kib_command_line_leaves_the_session_unharmed() {
    a_huge_command_line_leaves_the_session_unharmed(256 << 10).await;
}

#[tokio::test]
async fn a_1_mib_command_line_leaves_the_session_unharmed() {
    a_huge_command_line_leaves_the_session_unharmed(1 << 20).await;
}

/// A process that leaves the command's session on purpose and keeps
/// writing to the channel's stdout must not hold the call past its bound.
#[tokio::test]
async fn a_survivor_that_keeps_writing_does_not_hold_the_call() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    let writer = format!("sleep 0.21{}", sshd.port());
    let _cleanup = Leftovers::new(TEST_USER, &writer);
    let mut args = crate::server::exec_args(
        &sshd,
        &format!("setsid sh -c 'while :; do echo x; {writer}; done' & sleep 100"),
    );
    args["timeout"] = json!(2);
    let started = Instant::now();
    let res = tokio::time::timeout(
        Duration::from_secs(60),
        server.call("execute_command", args),
    )
    .await
    .expect("the call never returned");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2 + 7), "returned after {took:?}");
    assert_ne!(res.is_error, Some(true), "{}", text(&res));
    assert_eq!(structured(&res)["timed_out"], true, "{}", text(&res));
    // The daemon-like writer is out of reach, as for `kill` in a terminal.
    let _ = std::process::Command::new("pkill")
        .args(["-u", TEST_USER, "-f", "while :; do echo x"])
        .status();
}
