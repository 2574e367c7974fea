//! A timeout or a cancel stops the remote command and all its children,
//! checked on the sshd side with pgrep as soon as the call returns.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::server::{Server, bare_args, exec_args, remote_running, stdout, structured, text};
use crate::sshd::Sshd;

/// Runs `command` with a 1 s timeout; returns how long the call took.
async fn time_out(server: &Server, sshd: &Sshd, command: &str) -> Duration {
    let mut args = exec_args(sshd, command);
    args["timeout"] = json!(1);
    let started = Instant::now();
    let res = server.call("execute_command", args).await;
    let took = started.elapsed();
    assert_eq!(structured(&res)["timed_out"], true, "{}", text(&res));
    took
}

#[tokio::test]
async fn a_timeout_stops_a_plain_command() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    let sleeper = format!("sleep 4{}", sshd.port());
    time_out(&server, &sshd, &format!("echo begin; {sleeper}")).await;
    assert!(!remote_running(&sleeper), "{sleeper} is still running");
}

#[tokio::test]
async fn a_timeout_stops_the_commands_children_too() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    let (a, b) = (
        format!("sleep 5{}", sshd.port()),
        format!("sleep 6{}", sshd.port()),
    );
    time_out(&server, &sshd, &format!("sh -c '{a} & {b}'")).await;
    assert!(!remote_running(&a), "the background child survived");
    assert!(!remote_running(&b), "the foreground child survived");
}

#[tokio::test]
async fn a_command_that_ignores_sigterm_is_killed_after_the_grace_period() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    let sleeper = format!("sleep 7{}", sshd.port());
    let took = time_out(&server, &sshd, &format!("trap '' TERM; {sleeper}")).await;
    assert!(!remote_running(&sleeper), "it survived KILL");
    // TERM was ignored, so KILL came only after the grace period.
    assert!(took >= Duration::from_secs(3), "took {took:?}");
}

#[tokio::test]
async fn a_cancel_stops_the_commands_children_too() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    server.exec(&sshd, "true").await;
    let (a, b) = (
        format!("sleep 8{}", sshd.port()),
        format!("sleep 9{}", sshd.port()),
    );
    let mut call =
        Box::pin(server.try_call("execute_command", bare_args(&sshd, &format!("{a} & {b}"))));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(remote_running(&a) && remote_running(&b)) {
        tokio::select! {
            r = &mut call => panic!("returned before the cancel: {r:?}"),
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        assert!(Instant::now() < deadline, "the command never started");
    }
    drop(call);
    crate::server::wait_until("both are gone", || {
        !remote_running(&a) && !remote_running(&b)
    })
    .await;
}

#[tokio::test]
async fn the_pid_marker_never_reaches_the_output() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    let res = server.exec(&sshd, "printf 'x'").await;
    assert_eq!(stdout(&res), "x");
    assert_eq!(structured(&res)["stdout_bytes"], 1);
    let res = server.exec(&sshd, "true").await;
    assert_eq!(stdout(&res), "");
    // Line numbers in the shell's own errors are the user's.
    let res = server
        .call("execute_command", exec_args(&sshd, "no-such-command-here"))
        .await;
    let err = structured(&res)["stderr"].as_str().unwrap().to_string();
    // The test account's shell is dash: "sh: 1: no-such-command-here: not found".
    assert!(err.starts_with("sh: 1: no-such-command-here"), "{err}");
}

/// How a client lets the server go.
enum Leave {
    CloseStdin,
    Signal(&'static str),
    /// Closes stdin with the session's sshd frozen: no stop can arrive,
    /// and the server must still leave within its bound.
    CloseStdinFrozen,
}

/// A server that leaves stops what it ran on the remote host: the command
/// of a call still in flight and every background job. Without this, sshd
/// keeps a command without a terminal running when its connection closes.
fn leaving_stops_calls_and_jobs(leave: Leave) {
    use std::io::Write;
    let sshd = Sshd::start();
    let home = tempfile::tempdir().unwrap();
    let mut child = crate::server::raw_server(home.path());
    let (job, call) = (
        format!("sleep 7{}", sshd.port()),
        format!("sleep 8{}", sshd.port()),
    );
    let _left = [
        crate::server::Leftovers::new(crate::sshd::TEST_USER, &job),
        crate::server::Leftovers::new(crate::sshd::TEST_USER, &call),
    ];
    let (mut stdin, mut lines) = crate::server::send_raw_call(
        &mut child,
        json!({"name": "start_command", "arguments": exec_args(&sshd, &job)}),
    );
    let started = lines
        .by_ref()
        .map(|l| serde_json::from_str::<serde_json::Value>(&l.unwrap()).unwrap())
        .find(|m| m["id"] == 2)
        .unwrap();
    assert_eq!(started["result"]["isError"], false, "{started}");
    let request = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "execute_command", "arguments": exec_args(&sshd, &call)}});
    writeln!(stdin, "{request}").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(remote_running(&job) && remote_running(&call)) {
        assert!(Instant::now() < deadline, "the job and the call never ran");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Kept open until the end unless closing it is the test: a signal
    // alone must make the server leave.
    let mut stdin = Some(stdin);
    let frozen = matches!(leave, Leave::CloseStdinFrozen);
    match leave {
        Leave::CloseStdin => drop(stdin.take()),
        Leave::CloseStdinFrozen => {
            sshd.freeze_connections(true);
            drop(stdin.take());
        }
        Leave::Signal(name) => {
            let sent = std::process::Command::new("kill")
                .args([&format!("-{name}"), &child.id().to_string()])
                .status()
                .unwrap();
            assert!(sent.success());
        }
    }
    // 10 s after stdin ends, then one stop bounded at 5 s: 30 s is a hang
    // check with room for a loaded machine.
    let status = crate::server::exit_within(&mut child, Duration::from_secs(30), || {
        "the server, told to leave".into()
    });
    sshd.freeze_connections(false);
    assert!(status.success(), "{status}");
    // Every line it wrote is JSON-RPC, the cancelled call's answer or not.
    let answers: Vec<serde_json::Value> = lines
        .map(|l| {
            let line = l.unwrap();
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"))
        })
        .collect();
    if stdin.is_some() {
        // A signal answers the call it cancelled (its stop takes a few ms).
        let answer = answers.iter().find(|m| m["id"] == 3);
        let answer = answer.unwrap_or_else(|| panic!("no answer to the call: {answers:?}"));
        assert!(
            answer["result"]["content"][0]["text"]
                .as_str()
                .is_some_and(|t| t.contains("Cancelled")),
            "{answer}"
        );
    }
    if frozen {
        return;
    }
    assert!(
        !remote_running(&call),
        "the call's command outlived the server"
    );
    assert!(
        !remote_running(&job),
        "the background job outlived the server"
    );
}

#[test]
fn a_server_whose_stdin_ends_stops_its_commands_and_jobs() {
    leaving_stops_calls_and_jobs(Leave::CloseStdin);
}

#[test]
fn a_server_told_to_leave_by_sigterm_stops_its_commands_and_jobs() {
    leaving_stops_calls_and_jobs(Leave::Signal("TERM"));
}

#[test]
fn a_server_told_to_leave_by_sigint_stops_its_commands_and_jobs() {
    leaving_stops_calls_and_jobs(Leave::Signal("INT"));
}

#[test]
fn a_server_whose_stdin_ends_over_a_frozen_connection_still_leaves() {
    leaving_stops_calls_and_jobs(Leave::CloseStdinFrozen);
}
