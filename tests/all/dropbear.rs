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
