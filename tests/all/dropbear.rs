//! Dropbear, a second SSH server that runs commands differently: it does
//! not make the exec a process-group leader, so signalling the login
//! shell's group misses the command's children. A stop must still work, or
//! the result must say honestly that it could not be verified.

use serde_json::{Value, json};

use crate::dropbear_server::Dropbear;
use crate::server::{
    Leftovers, Server, honest_stop, remote_running_as, stdout, structured, succeeded, text,
};
use crate::sshd::{TEST_PASSWORD, TEST_USER};

fn args(dropbear: &Dropbear, command: &str) -> Value {
    json!({
        "host": "127.0.0.1",
        "port": dropbear.port(),
        "username": TEST_USER,
        "password": TEST_PASSWORD,
        "command": command,
    })
}

#[tokio::test]
async fn a_command_runs_on_dropbear() {
    let dropbear = Dropbear::start();
    let server = Server::start().await;
    let res = server
        .call("execute_command", args(&dropbear, "echo hi; echo err >&2"))
        .await;
    succeeded(&res);
    assert_eq!(stdout(&res), "hi\n", "{}\n{}", text(&res), dropbear.log());
    assert_eq!(structured(&res)["stderr"], "err\n", "{}", text(&res));
    assert_eq!(structured(&res)["exit_status"], 0, "{}", text(&res));
}

#[tokio::test]
async fn a_timeout_on_dropbear_stops_every_child_or_says_it_could_not() {
    let dropbear = Dropbear::start();
    let server = Server::start().await;
    let (a, b) = (
        format!("sleep 4712.{}", dropbear.port()),
        format!("sleep 4713.{}", dropbear.port()),
    );
    let _cleanup = (Leftovers::new(TEST_USER, &a), Leftovers::new(TEST_USER, &b));
    let mut call = args(&dropbear, &format!("sh -c '{a} & {b}'"));
    call["timeout"] = json!(1);
    let res = server.call("execute_command", call).await;
    assert_eq!(structured(&res)["timed_out"], true, "{}", text(&res));
    let left: Vec<&String> = [&a, &b]
        .into_iter()
        .filter(|c| remote_running_as(TEST_USER, c))
        .collect();
    eprintln!("still running after the timeout: {left:?}");
    let stopped = honest_stop(&res);
    assert!(
        stopped != Some(true) || left.is_empty(),
        "{left:?} survived a stop reported as verified: {}",
        text(&res)
    );
}

/// A process that double-forks leaves the command's process tree but not
/// the session the launcher's `setsid` made: the stop must find it, on the
/// first command of a connection and on a warm one, whatever the login shell.
#[tokio::test]
async fn a_double_fork_on_dropbear_is_stopped_or_the_stop_is_not_called_verified() {
    let dropbear = Dropbear::start();
    let server = Server::start().await;
    for user in [TEST_USER, "mcpssh-fish", "mcpssh-tcsh"] {
        for round in ["first", "warm"] {
            let (a, b) = (
                format!("sleep 4717.{}", dropbear.port()),
                format!("sleep 4718.{}", dropbear.port()),
            );
            let _cleanup = (Leftovers::new(user, &a), Leftovers::new(user, &b));
            let mut call = args(&dropbear, &format!("sh -c '({a} &); {b}'"));
            call["username"] = json!(user);
            call["timeout"] = json!(1);
            let res = server.call("execute_command", call).await;
            assert_eq!(structured(&res)["timed_out"], true, "{}", text(&res));
            std::thread::sleep(std::time::Duration::from_millis(300));
            let left: Vec<&String> = [&a, &b]
                .into_iter()
                .filter(|c| remote_running_as(user, c))
                .collect();
            assert!(
                honest_stop(&res) != Some(true) || left.is_empty(),
                "{user}, {round} command: {left:?} survived a stop reported as verified: {}",
                text(&res)
            );
        }
    }
}

/// Dropbear refuses command strings past 9000 bytes and drops the whole
/// connection: a long command line must travel another way, and a command
/// running beside it on the same session must not be lost.
#[tokio::test]
async fn a_long_command_line_on_dropbear_runs_and_harms_no_neighbour() {
    let dropbear = Dropbear::start();
    let server = std::sync::Arc::new(Server::start().await);
    server
        .call("execute_command", args(&dropbear, "true"))
        .await;
    for size in [4_500, 9_500, 15_000] {
        let neighbour = {
            let (server, call) = (
                server.clone(),
                args(&dropbear, "sleep 1; echo neighbour-done"),
            );
            tokio::spawn(async move { server.call("execute_command", call).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let long = format!("echo START; : '{}'; echo END", "a".repeat(size));
        let res = server.call("execute_command", args(&dropbear, &long)).await;
        succeeded(&res);
        assert_eq!(stdout(&res), "START\nEND\n", "{size} bytes: {}", text(&res));
        let res = neighbour.await.unwrap();
        succeeded(&res);
        assert_eq!(stdout(&res), "neighbour-done\n", "{}", text(&res));
    }
}
