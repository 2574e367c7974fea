//! A network blackhole: the session's sshd processes frozen (`SIGSTOP`), so
//! nothing answers and nothing closes. A call must still return within its
//! `timeout` plus a small grace in every phase (opening the channel,
//! running, stopping), must not claim a stop it could not verify, and once
//! the network is back the next call must work.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::model::CallToolResult;
use serde_json::json;

use crate::server::{
    Leftovers, Server, bare_args, honest_stop, remote_running, stdout, structured, text,
};
use crate::sshd::{Sshd, TEST_USER};

/// The call's timeout, and how much longer it may take: a hang check, not
/// a speed test.
const TIMEOUT: u64 = 3;
const GRACE: Duration = Duration::from_secs(7);

/// Unfreezes on drop, so a failed assertion does not leave sshd stopped.
struct Frozen<'a>(&'a Sshd);

impl<'a> Frozen<'a> {
    fn new(sshd: &'a Sshd) -> Self {
        sshd.freeze_connections(true);
        Self(sshd)
    }
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        self.0.freeze_connections(false);
    }
}

/// A result from the blackhole: a tool error, or a result that does not
/// claim an unverified stop (and whose verified stop holds).
fn check_honest(res: &CallToolResult, sleeper: Option<&str>) {
    if res.is_error == Some(true) {
        assert!(
            !text(res).contains("was stopped"),
            "an error that claims a stop: {}",
            text(res)
        );
        return;
    }
    if structured(res)["timed_out"] == true
        && honest_stop(res) == Some(true)
        && let Some(sleeper) = sleeper
    {
        assert!(
            !remote_running(sleeper),
            "{sleeper} still runs although the stop was reported as verified"
        );
    }
}

/// After the blackhole, the session (or a new connection) serves again.
async fn works_again(server: &Server, sshd: &Sshd) {
    let res = server
        .call("execute_command", bare_args(sshd, "echo back"))
        .await;
    assert_ne!(res.is_error, Some(true), "{}", text(&res));
    assert_eq!(stdout(&res), "back\n");
}

#[tokio::test]
async fn a_call_on_a_frozen_connection_returns_within_its_timeout() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    server.exec(&sshd, "true").await;
    let frozen = Frozen::new(&sshd);
    let mut args = bare_args(&sshd, "echo through");
    args["timeout"] = json!(TIMEOUT);
    let started = Instant::now();
    let res = server.call("execute_command", args).await;
    let took = started.elapsed();
    eprintln!("frozen before the call, timeout {TIMEOUT} s: returned after {took:?}");
    assert!(
        took <= Duration::from_secs(TIMEOUT) + GRACE,
        "a call with timeout {TIMEOUT} took {took:?} on a frozen connection: {}",
        text(&res)
    );
    check_honest(&res, None);
    drop(frozen);
    works_again(&server, &sshd).await;
}

#[tokio::test]
async fn a_connection_frozen_mid_command_returns_within_its_timeout() {
    let sshd = Sshd::start();
    let server = Arc::new(Server::start().await);
    server.exec(&sshd, "true").await;
    let sleeper = format!("sleep 10.{}", sshd.port());
    let _cleanup = Leftovers::new(TEST_USER, &sleeper);
    let mut args = bare_args(&sshd, &sleeper);
    args["timeout"] = json!(TIMEOUT);
    let started = Instant::now();
    let call = {
        let server = server.clone();
        tokio::spawn(async move { server.call("execute_command", args).await })
    };
    crate::server::wait_until("the command runs", || remote_running(&sleeper)).await;
    let frozen = Frozen::new(&sshd);
    let res = call.await.unwrap();
    let took = started.elapsed();
    eprintln!("frozen mid-command, timeout {TIMEOUT} s: returned after {took:?}");
    assert!(
        took <= Duration::from_secs(TIMEOUT) + GRACE,
        "a call with timeout {TIMEOUT} took {took:?} when the connection froze mid-command: {}",
        text(&res)
    );
    check_honest(&res, Some(&sleeper));
    drop(frozen);
    works_again(&server, &sshd).await;
}

/// A call with time to spare does not wait on a frozen connection: a
/// channel open that gets no answer within 5 s marks it dead, and the call
/// goes on over a new one.
#[tokio::test]
async fn a_call_with_time_to_spare_replaces_a_frozen_connection() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    server.exec(&sshd, "true").await;
    let _frozen = Frozen::new(&sshd);
    let mut args = bare_args(&sshd, "echo through");
    args["timeout"] = json!(30);
    let started = Instant::now();
    let res = server.call("execute_command", args).await;
    let took = started.elapsed();
    eprintln!("frozen before the call, timeout 30 s: answered after {took:?}");
    assert_ne!(res.is_error, Some(true), "{}", text(&res));
    assert_eq!(stdout(&res), "through\n", "{}", text(&res));
    assert!(
        took < Duration::from_secs(15),
        "answered after {took:?}\n{}",
        server.log()
    );
}
