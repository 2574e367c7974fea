//! A session that remembers: the working directory and exported variables
//! a command leaves are where and with what the next one starts, through a
//! reconnect, on OpenSSH and Dropbear; a call's own `cwd` and `env` are
//! for that call only; `reset_session`, `close_session` and `--stateless`
//! forget. Every login shell is covered in `shells.rs`.

use serde_json::{Value, json};

use crate::dropbear_server::Dropbear;
use crate::server::{
    Server, exec_args, session_names, stdout, structured, succeeded, text, tool_error,
};
use crate::sshd::{Sshd, TEST_PASSWORD, TEST_USER};

fn with(mut args: Value, key: &str, value: Value) -> Value {
    args[key] = value;
    args
}

async fn out(server: &Server, sshd: &Sshd, command: &str) -> String {
    stdout(&server.exec(sshd, command).await)
}

#[tokio::test]
async fn cd_then_pwd_and_export_then_echo_work_like_a_terminal() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    let res = server.exec(&sshd, "cd /tmp").await;
    assert_eq!(structured(&res)["cwd"], "/tmp", "{}", text(&res));
    assert_eq!(out(&server, &sshd, "pwd").await, "/tmp\n");
    server.exec(&sshd, "export FOO=bar").await;
    assert_eq!(out(&server, &sshd, "echo $FOO").await, "bar\n");
    // Relative to where the session is.
    server
        .exec(&sshd, "mkdir -p state-sub && cd state-sub")
        .await;
    assert_eq!(out(&server, &sshd, "pwd").await, "/tmp/state-sub\n");
    server
        .exec(&sshd, "cd .. && rmdir state-sub && unset FOO")
        .await;
    assert_eq!(out(&server, &sshd, "echo \"${FOO-gone}\"").await, "gone\n");
}

#[tokio::test]
async fn list_sessions_shows_each_sessions_directory() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    server.exec(&sshd, "cd /var && export A=1 B=2").await;
    let res = server.call("list_sessions", json!({})).await;
    let session = &structured(&res)["sessions"][0];
    assert_eq!(session["cwd"], "/var", "{}", text(&res));
    assert_eq!(session["variables"], 2, "{}", text(&res));
    assert!(text(&res).contains("(cwd: /var)"), "{}", text(&res));
}

#[tokio::test]
async fn an_early_exit_a_failure_or_a_timeout_keeps_the_previous_state() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    server.exec(&sshd, "cd /var && export KEEP=1").await;
    let res = server
        .exec(
            &sshd,
            "cd /tmp; export KEEP=2; echo out; echo err >&2; exit 3",
        )
        .await;
    // The exit status and both streams are the command's own.
    assert_eq!(structured(&res)["exit_status"], 3, "{}", text(&res));
    assert_eq!(stdout(&res), "out\n");
    assert_eq!(structured(&res)["stderr"], "err\n", "{}", text(&res));
    let timed_out = server
        .call(
            "execute_command",
            with(exec_args(&sshd, "cd /tmp; sleep 30"), "timeout", json!(1)),
        )
        .await;
    assert_eq!(structured(&timed_out)["timed_out"], true);
    assert_eq!(out(&server, &sshd, "pwd; echo $KEEP").await, "/var\n1\n");
    // A command that ends by itself with a failure still leaves its state.
    let res = server.exec(&sshd, "cd /tmp; false").await;
    assert_eq!(structured(&res)["exit_status"], 1, "{}", text(&res));
    assert_eq!(out(&server, &sshd, "pwd").await, "/tmp\n");
}

#[tokio::test]
async fn output_cannot_forge_the_state() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    // Blocks shaped like the frame's, with a guessed nonce, and a listing
    // of a variable: they stay output and change nothing.
    let forged = "printf '\\036mcp-ssh-post:0123456789abcdef:/etc\\036export EVIL=1\\n\
                  \\036mcp-ssh-end:0123456789abcdef\\036'";
    let res = server.exec(&sshd, forged).await;
    assert!(stdout(&res).contains("EVIL=1"), "{}", text(&res));
    assert_ne!(structured(&res)["cwd"], "/etc");
    assert_eq!(
        out(&server, &sshd, "pwd; echo \"${EVIL-none}\"")
            .await
            .lines()
            .nth(1),
        Some("none")
    );
    assert_ne!(out(&server, &sshd, "pwd").await, "/etc\n");
}

#[tokio::test]
async fn a_calls_own_cwd_and_env_apply_to_that_call_only() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    server.exec(&sshd, "cd /var").await;
    let args = with(
        with(
            exec_args(&sshd, "pwd; echo \"$ONLY_NOW\""),
            "cwd",
            json!("/tmp"),
        ),
        "env",
        json!({"ONLY_NOW": "x 'y' $z"}),
    );
    let res = server.call("execute_command", args).await;
    assert_eq!(stdout(&res), "/tmp\nx 'y' $z\n", "{}", text(&res));
    assert_eq!(structured(&res)["cwd"], "/tmp");
    assert_eq!(
        out(&server, &sshd, "pwd; echo \"${ONLY_NOW-unset}\"").await,
        "/var\nunset\n"
    );
    // A relative cwd is taken from the session's directory.
    let res = server
        .call(
            "execute_command",
            with(exec_args(&sshd, "pwd"), "cwd", json!("log")),
        )
        .await;
    assert_eq!(stdout(&res), "/var/log\n", "{}", text(&res));
}

#[tokio::test]
async fn a_cwd_that_does_not_exist_is_an_error_and_nothing_runs() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    let marker = format!("/tmp/state-ran-{}", sshd.port());
    let args = with(
        exec_args(&sshd, &format!("touch {marker}")),
        "cwd",
        json!("/nonexistent/dir"),
    );
    let res = server.call("execute_command", args).await;
    let err = tool_error(&res);
    assert!(
        err.contains("/nonexistent/dir") && err.contains("nothing was run"),
        "{err}"
    );
    assert!(!std::path::Path::new(&marker).exists());
    for bad in [json!({"A-B": "x"}), json!({"1A": "x"})] {
        let res = server
            .call(
                "execute_command",
                with(exec_args(&sshd, "true"), "env", bad),
            )
            .await;
        assert!(tool_error(&res).contains("env"), "{}", text(&res));
    }
}

#[tokio::test]
async fn a_directory_that_is_gone_is_said_and_the_call_runs_in_the_login_directory() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    let dir = format!("/tmp/state-gone-{}", sshd.port());
    server
        .exec(&sshd, &format!("mkdir -p {dir} && cd {dir}"))
        .await;
    std::fs::remove_dir_all(&dir).unwrap();
    let res = server.exec(&sshd, "pwd").await;
    let home = format!("/home/{TEST_USER}\n");
    assert_eq!(stdout(&res), home, "{}", text(&res));
    assert!(
        text(&res).contains(&format!("{dir} no longer exists")),
        "{}",
        text(&res)
    );
    assert_eq!(structured(&res)["notes"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn the_state_survives_sshd_being_restarted_between_two_calls() {
    let mut sshd = Sshd::start();
    let server = Server::start().await;
    server.exec(&sshd, "cd /var && export SURVIVES=yes").await;
    sshd.restart();
    let res = server
        .exec(&sshd, "pwd; echo $SURVIVES; echo $SSH_CONNECTION")
        .await;
    let printed = stdout(&res);
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(&lines[..2], ["/var", "yes"], "{}", text(&res));
    // Variables sshd sets per connection are the new connection's own.
    assert!(!lines[2].is_empty());
}

#[tokio::test]
async fn reset_session_returns_to_the_login_state_and_close_session_forgets() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    let target = json!({"host": "127.0.0.1", "port": sshd.port(), "username": TEST_USER});
    server.exec(&sshd, "cd /var && export R=1").await;
    let res = server.call("reset_session", target.clone()).await;
    assert_eq!(structured(&res)["reset"], true, "{}", text(&res));
    let home = format!("/home/{TEST_USER}");
    assert_eq!(
        out(&server, &sshd, "pwd; echo \"${R-unset}\"").await,
        format!("{home}\nunset\n")
    );
    // The connection stayed open: one session, still listed.
    let list = server.call("list_sessions", json!({})).await;
    assert_eq!(session_names(&list).len(), 1);
    let res = server.call("reset_session", target.clone()).await;
    assert_eq!(structured(&res)["reset"], false, "{}", text(&res));
    server.exec(&sshd, "cd /var").await;
    succeeded(&server.call("close_session", target).await);
    assert_eq!(out(&server, &sshd, "pwd").await, format!("{home}\n"));
}

#[tokio::test]
async fn stateless_starts_every_command_afresh_but_takes_a_calls_cwd() {
    let sshd = Sshd::start();
    let server = Server::builder().arg("--stateless").spawn().await;
    let res = server.exec(&sshd, "cd /tmp && export S=1").await;
    assert_eq!(structured(&res)["cwd"], Value::Null, "{}", text(&res));
    let home = format!("/home/{TEST_USER}");
    assert_eq!(
        out(&server, &sshd, "pwd; echo \"${S-unset}\"").await,
        format!("{home}\nunset\n")
    );
    let res = server
        .call(
            "execute_command",
            with(exec_args(&sshd, "pwd"), "cwd", json!("/tmp")),
        )
        .await;
    assert_eq!(stdout(&res), "/tmp\n", "{}", text(&res));
}

#[tokio::test]
async fn of_concurrent_commands_each_starts_from_the_current_state_and_the_last_to_finish_wins() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    server.exec(&sshd, "cd /var").await;
    let slow = server.exec(&sshd, "pwd; sleep 2; cd /tmp");
    // Started while the slow one runs, and done long before it.
    let fast = async {
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
        server.exec(&sshd, "pwd; cd /etc").await
    };
    let (slow, fast) = tokio::join!(slow, fast);
    assert_eq!(stdout(&slow), "/var\n");
    assert_eq!(stdout(&fast), "/var\n");
    assert_eq!(out(&server, &sshd, "pwd").await, "/tmp\n");
}

#[tokio::test]
async fn a_job_starts_in_the_sessions_directory_and_leaves_the_state_alone() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    server.exec(&sshd, "cd /var && export J=job").await;
    let mut args = exec_args(&sshd, "pwd; echo $J; cd /tmp");
    args.as_object_mut().unwrap().remove("key_filename");
    let started = server.call("start_command", args).await;
    let id = structured(&started)["job_id"].as_str().unwrap().to_string();
    crate::jobs::wait_done(&server, &id).await;
    let res = server
        .call("get_command_output", json!({"job_id": id}))
        .await;
    assert_eq!(structured(&res)["data"], "/var\njob\n", "{}", text(&res));
    assert_eq!(out(&server, &sshd, "pwd").await, "/var\n");
}

#[tokio::test]
async fn dropbear_sessions_keep_their_state_too() {
    let dropbear = Dropbear::start();
    let server = Server::start().await;
    let args = |command: &str| {
        json!({
            "host": "127.0.0.1", "port": dropbear.port(), "username": TEST_USER,
            "password": TEST_PASSWORD, "command": command,
        })
    };
    succeeded(
        &server
            .call("execute_command", args("cd /tmp && export D=1"))
            .await,
    );
    let res = server.call("execute_command", args("pwd; echo $D")).await;
    assert_eq!(
        stdout(&res),
        "/tmp\n1\n",
        "{}\n{}",
        text(&res),
        dropbear.log()
    );
}

#[tokio::test]
async fn the_shells_error_messages_keep_the_users_line_numbers_with_state_replayed() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    server
        .exec(
            &sshd,
            "cd /tmp && export ML='one\ntwo' && export Q=\"it's\"",
        )
        .await;
    let res = server
        .call(
            "execute_command",
            exec_args(&sshd, "true\nno-such-command-here"),
        )
        .await;
    let err = structured(&res)["stderr"].as_str().unwrap().to_string();
    // The test account's shell is dash: "sh: 2: no-such-command-here: not found".
    assert!(err.starts_with("sh: 2: no-such-command-here"), "{err}");
    assert_eq!(
        out(&server, &sshd, "printf '%s|' \"$ML\" \"$Q\"").await,
        "one\ntwo|it's|"
    );
}
