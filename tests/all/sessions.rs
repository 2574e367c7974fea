//! Persistent sessions: reuse, listing and closing, reconnection, and
//! concurrent calls.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::server::{
    Server, bare_args, connection_port, exec_args, session_names, stdout, structured, succeeded,
    text, tool_error,
};
use crate::sshd::{Sshd, TEST_USER};

fn session_key(sshd: &Sshd) -> String {
    format!("{TEST_USER}@127.0.0.1:{}", sshd.port())
}

#[tokio::test]
async fn two_calls_share_one_tcp_connection() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    server.exec(&sshd, "true").await;
    let first = connection_port(&server, &sshd).await;
    let second = connection_port(&server, &sshd).await;
    assert_eq!(first, second);
    assert_eq!(
        sshd.log().matches("Accepted publickey").count(),
        1,
        "{}",
        sshd.log()
    );
}

#[tokio::test]
async fn list_close_and_close_all() {
    let (a, b) = (Sshd::start(), Sshd::start());
    let server = Server::start().await;

    let empty = server.call("list_sessions", json!({})).await;
    assert_eq!(text(&empty), "No active SSH sessions");
    assert_eq!(structured(&empty)["sessions"], json!([]));

    server.exec(&a, "true").await;
    server.exec(&b, "true").await;
    let listed = server.call("list_sessions", json!({})).await;
    let t = text(&listed);
    assert!(t.contains(&format!("- {}", session_key(&a))), "{t}");
    assert!(t.contains(&format!("- {}", session_key(&b))), "{t}");
    assert_eq!(structured(&listed)["sessions"].as_array().unwrap().len(), 2);

    let closed = server
        .call(
            "close_session",
            json!({"host": "127.0.0.1", "username": TEST_USER, "port": a.port()}),
        )
        .await;
    assert_eq!(structured(&closed)["closed"], true);
    assert_eq!(
        text(&closed),
        format!("Closed session: {}", session_key(&a))
    );
    let listed = server.call("list_sessions", json!({})).await;
    assert!(!text(&listed).contains(&session_key(&a)));
    assert!(text(&listed).contains(&session_key(&b)));

    let again = server
        .call(
            "close_session",
            json!({"host": "127.0.0.1", "username": TEST_USER, "port": a.port()}),
        )
        .await;
    assert_eq!(structured(&again)["closed"], false);

    let all = server.call("close_all_sessions", json!({})).await;
    assert_eq!(structured(&all)["closed"], 1);
    let listed = server.call("list_sessions", json!({})).await;
    assert_eq!(text(&listed), "No active SSH sessions");

    // A closed session needs its credentials again...
    let res = server.call("execute_command", bare_args(&a, "true")).await;
    assert_eq!(res.is_error, Some(true));
    // ...and then opens a new connection.
    server.exec(&a, "true").await;
    assert_eq!(a.log().matches("Accepted publickey").count(), 2);
}

#[tokio::test]
async fn close_session_defaults_to_port_22() {
    let server = Server::start().await;
    let res = server
        .call(
            "close_session",
            json!({"host": "example.invalid", "username": "nobody"}),
        )
        .await;
    assert_eq!(structured(&res)["session"], "nobody@example.invalid:22");
    assert_eq!(structured(&res)["closed"], false);
}

#[tokio::test]
async fn reconnects_transparently_after_sshd_restart() {
    let mut sshd = Sshd::start();
    let server = Server::start().await;
    server.exec(&sshd, "true").await;
    let before = connection_port(&server, &sshd).await;
    sshd.restart();
    // No credentials: the reconnect reuses the ones that opened the session.
    let after = connection_port(&server, &sshd).await;
    assert_ne!(before, after, "still on the old connection?");
    let res = server
        .call("execute_command", bare_args(&sshd, "echo back"))
        .await;
    assert_eq!(stdout(&res), "back\n");
}

#[tokio::test]
async fn a_command_cut_off_by_a_dying_connection_is_reported_not_rerun() {
    let mut sshd = Sshd::start();
    let server = Server::start().await;
    server.exec(&sshd, "true").await;
    let marker = format!("/tmp/mcpssh-rerun-{}", sshd.port());
    let _ = std::fs::remove_file(&marker);
    let cmd = format!("echo run >> {marker}; sleep 30");
    let call = server.call("execute_command", bare_args(&sshd, &cmd));
    let restart = async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        sshd.restart();
    };
    let (res, ()) = tokio::join!(call, restart);
    assert_eq!(res.is_error, Some(true), "{}", text(&res));
    assert!(text(&res).starts_with("Connection lost"), "{}", text(&res));
    let runs = std::fs::read_to_string(&marker).unwrap_or_default();
    let _ = std::fs::remove_file(&marker);
    assert_eq!(
        runs.lines().count(),
        1,
        "the command ran {} times",
        runs.lines().count()
    );
    let res = server
        .call("execute_command", bare_args(&sshd, "echo next"))
        .await;
    assert_eq!(stdout(&res), "next\n");
}

#[tokio::test]
async fn thirty_two_simultaneous_calls_to_one_host_all_succeed() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    let calls = (0..32).map(|i| {
        let server = &server;
        let sshd = &sshd;
        async move {
            (
                i,
                server
                    .call(
                        "execute_command",
                        exec_args(sshd, &format!("sleep 0.2; echo {i}")),
                    )
                    .await,
            )
        }
    });
    for (i, res) in futures::future::join_all(calls).await {
        assert_eq!(res.is_error, Some(false), "call {i}: {}", text(&res));
        assert_eq!(stdout(&res), format!("{i}\n"));
    }
    assert_eq!(
        sshd.log().matches("Accepted publickey").count(),
        1,
        "one connection expected"
    );
}

#[tokio::test]
async fn two_simultaneous_first_calls_open_one_connection() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    let (a, b) = tokio::join!(
        server.call("execute_command", exec_args(&sshd, "echo $SSH_CONNECTION")),
        server.call("execute_command", exec_args(&sshd, "echo $SSH_CONNECTION")),
    );
    assert_eq!(stdout(&a), stdout(&b));
    assert_eq!(sshd.log().matches("Accepted publickey").count(), 1);
}

/// A host that accepts TCP but never speaks SSH must not hold up calls to
/// another host.
#[tokio::test]
async fn connecting_to_one_host_never_blocks_another() {
    let sshd = Sshd::start();
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let server = Server::builder()
        .arg("--connect-timeout")
        .arg("4")
        .spawn()
        .await;
    let stuck = server.call(
        "execute_command",
        json!({"host": "127.0.0.1", "port": silent_port, "username": "u", "command": "true", "password": "x"}),
    );
    let quick = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        let res = server
            .call("execute_command", exec_args(&sshd, "echo quick"))
            .await;
        (res, started.elapsed())
    };
    let (stuck, (quick, quick_took)) = tokio::join!(stuck, quick);
    hold.abort();
    assert_eq!(stdout(&quick), "quick\n");
    assert!(
        quick_took < Duration::from_secs(3),
        "blocked for {quick_took:?}"
    );
    assert_eq!(stuck.is_error, Some(true));
    assert!(text(&stuck).starts_with("Timed out"), "{}", text(&stuck));
}

#[tokio::test]
async fn many_hosts_are_served_at_once() {
    let sshd = Sshd::start_ports(8);
    let server = Server::start().await;
    let calls = sshd
        .ports()
        .iter()
        .flat_map(|&port| (0..4).map(move |i| (port, i)));
    let results = futures::future::join_all(calls.map(|(port, i)| {
        let mut args = exec_args(&sshd, &format!("echo {port}-{i}"));
        args["port"] = json!(port);
        let server = &server;
        async move { (port, i, server.call("execute_command", args).await) }
    }))
    .await;
    for (port, i, res) in results {
        assert_eq!(stdout(&res), format!("{port}-{i}\n"), "{}", text(&res));
    }
    let listed = server.call("list_sessions", json!({})).await;
    assert_eq!(structured(&listed)["sessions"].as_array().unwrap().len(), 8);
}

#[tokio::test]
async fn sessions_past_the_quota_are_refused_until_one_closes_and_a_reconnect_never_is() {
    let mut first = Sshd::start();
    let others = Sshd::start_ports(2);
    let server = Server::builder()
        .arg("--max-sessions")
        .arg("2")
        .spawn()
        .await;
    let on = |sshd: &Sshd, port: u16, command: &str| {
        json!({"host": "127.0.0.1", "port": port, "username": TEST_USER,
               "key_filename": sshd.client_key(), "command": command})
    };
    let (a, b, c) = (first.port(), others.ports()[0], others.ports()[1]);
    succeeded(&server.call("execute_command", on(&first, a, "true")).await);
    succeeded(&server.call("execute_command", on(&others, b, "true")).await);
    let res = server
        .call("execute_command", on(&others, c, "echo ran"))
        .await;
    let msg = tool_error(&res);
    assert!(
        msg.contains("2 SSH sessions are open, and this server keeps 2")
            && msg.contains("close_session"),
        "{msg}"
    );
    // The sessions there still serve.
    succeeded(&server.call("execute_command", on(&first, a, "true")).await);
    let close = json!({"host": "127.0.0.1", "username": TEST_USER, "port": b});
    succeeded(&server.call("close_session", close).await);
    let res = server
        .call("execute_command", on(&others, c, "echo ran"))
        .await;
    assert!(succeeded(&res).contains("ran"));

    // A lost session does not count, and its reconnect is let in even
    // when the table has filled meanwhile.
    first.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    let listed = || async { session_names(&server.call("list_sessions", json!({})).await) };
    while listed().await.iter().any(|n| n.ends_with(&format!(":{a}"))) {
        assert!(
            Instant::now() < deadline,
            "the lost session is still listed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    succeeded(&server.call("execute_command", on(&others, b, "true")).await);
    let res = server
        .call("execute_command", on(&first, a, "echo back"))
        .await;
    assert!(succeeded(&res).contains("back"), "{}", text(&res));
    assert_eq!(listed().await.len(), 3);
}
