//! Session state against what an attacker found: bytes every shell lists
//! its own way, values that grow past a command line, shells and commands
//! that get in the frame's way, and a reset racing a command.

use serde_json::{Value, json};

use crate::server::{Server, exec_args, stdout, structured, succeeded, text, tool_error};
use crate::sshd::{BASHRC_USER, Sshd, TEST_PASSWORD, TEST_USER};

fn as_user(sshd: &Sshd, user: &str, command: &str) -> Value {
    json!({
        "host": "127.0.0.1", "port": sshd.port(), "username": user,
        "password": TEST_PASSWORD, "command": command,
    })
}

async fn run(
    server: &Server,
    sshd: &Sshd,
    user: &str,
    command: &str,
) -> rmcp::model::CallToolResult {
    let res = server
        .call("execute_command", as_user(sshd, user, command))
        .await;
    succeeded(&res);
    res
}

/// Bytes each shell lists in its own notation: control characters, the
/// frame's separator, bytes past 0x7f alone and in UTF-8, and zsh's
/// ambiguous `\M-\` cases (0xdc then `t`, 0x89).
const BYTES: &str = "a\\001\\034\\036\\177\\200\\211\\234\\334t\\377\\303\\251b";

#[tokio::test]
async fn every_byte_survives_in_every_posix_login_shell_and_path_stays() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    for user in [
        "mcpssh-dash",
        "mcpssh-bash",
        "mcpssh-zsh",
        "mcpssh-ksh",
        "mcpssh-mksh",
        "mcpssh-ash",
    ] {
        run(
            &server,
            &sshd,
            user,
            &format!("MCP_BIN=$(printf '{BYTES}'); export MCP_BIN"),
        )
        .await;
        let res = run(
            &server,
            &sshd,
            user,
            "printf %s \"$MCP_BIN\" | od -An -to1 | tr -s ' \\n' ' '; echo; echo \"$PATH\"",
        )
        .await;
        let out = stdout(&res);
        let mut lines = out.lines();
        assert_eq!(
            lines.next().map(str::trim),
            Some("141 001 034 036 177 200 211 234 334 164 377 303 251 142"),
            "{user}: {}",
            text(&res)
        );
        assert!(
            lines.next().is_some_and(|p| p.contains("/bin")),
            "{user}: PATH lost: {}",
            text(&res)
        );
    }
}

#[tokio::test]
async fn a_value_too_large_to_set_again_is_dropped_with_a_note_and_the_session_keeps_working() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    let res = server
        .exec(&sshd, "NL=$(awk 'BEGIN{for(i=0;i<20000;i++) printf \"\\n\"; printf \"x\"}'); export NL KEEP=1")
        .await;
    assert!(
        text(&res).contains("not kept for later commands: NL"),
        "{}",
        text(&res)
    );
    let res = server.exec(&sshd, "echo \"${NL-unset} $KEEP\"").await;
    assert_eq!(stdout(&res), "unset 1\n", "{}", text(&res));
}

#[tokio::test]
async fn a_command_too_large_beside_the_state_is_a_clear_error() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    server
        .exec(&sshd, "B=$(head -c 50000 /dev/zero | tr '\\0' b); export B")
        .await;
    let big = format!(": {}; echo ok", "a".repeat(100_000));
    let res = server.call("execute_command", exec_args(&sshd, &big)).await;
    let err = tool_error(&res);
    assert!(
        err.contains("session's state") && err.contains("reset_session"),
        "{err}"
    );
    // Without the state it runs.
    server
        .call(
            "reset_session",
            json!({"host": "127.0.0.1", "port": sshd.port(), "username": TEST_USER}),
        )
        .await;
    assert_eq!(stdout(&server.exec(&sshd, &big).await), "ok\n");
}

#[tokio::test]
async fn readonly_and_attributed_variables_are_kept() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    run(
        &server,
        &sshd,
        "mcpssh-bash",
        "export R=1 L=Abc; readonly R; declare -l L",
    )
    .await;
    let res = run(&server, &sshd, "mcpssh-bash", "echo \"$R $L\"").await;
    assert_eq!(stdout(&res), "1 Abc\n", "{}", text(&res));
}

#[tokio::test]
async fn a_command_that_breaks_export_cannot_wipe_the_state() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    server.exec(&sshd, "export KEEP=1 && cd /var").await;
    let res = server.exec(&sshd, "alias export=true\ncd /tmp").await;
    assert!(
        text(&res).contains("could not be read back"),
        "{}",
        text(&res)
    );
    let res = server
        .exec(&sshd, "pwd; echo \"$KEEP\"; echo \"$PATH\"")
        .await;
    let out = stdout(&res);
    assert!(
        out.starts_with("/var\n1\n") && out.contains("/bin"),
        "{}",
        text(&res)
    );
}

#[tokio::test]
async fn stdout_sent_to_stderr_still_keeps_the_state_and_shows_no_frame() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    let res = server.exec(&sshd, "exec 1>&2; cd /tmp; echo moved").await;
    assert_eq!(structured(&res)["stderr"], "moved\n", "{}", text(&res));
    assert_eq!(structured(&res)["cwd"], "/tmp", "{}", text(&res));
    assert_eq!(stdout(&server.exec(&sshd, "pwd").await), "/tmp\n");
}

#[tokio::test]
async fn tracing_with_set_x_does_not_show_the_frame() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    for user in ["mcpssh-dash", "mcpssh-bash", "mcpssh-zsh", "mcpssh-ksh"] {
        let res = run(&server, &sshd, user, "set -x; echo hi").await;
        let err = structured(&res)["stderr"].as_str().unwrap().to_string();
        assert!(
            !err.contains("mcp-ssh") && !err.contains("__mcp"),
            "{user}: {err}"
        );
        assert_eq!(stdout(&res), "hi\n", "{user}");
    }
}

#[tokio::test]
async fn a_shell_without_printf_on_its_path_shows_no_listing() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    let res = run(
        &server,
        &sshd,
        "mcpssh-mksh",
        "export SECRET_ISH=value; cd /tmp; PATH=/nonexistent; echo x",
    )
    .await;
    assert_eq!(stdout(&res), "x\n", "{}", text(&res));
}

#[tokio::test]
async fn a_listing_past_the_block_cap_is_dropped_never_output() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    let res = server
        .exec(
            &sshd,
            "BIG=$(head -c 1100000 /dev/zero | tr '\\0' a); export BIG; echo done",
        )
        .await;
    assert_eq!(
        stdout(&res),
        "done\n",
        "{}",
        &text(&res)[..text(&res).len().min(300)]
    );
    assert!(text(&res).contains("could not be read back"));
}

#[tokio::test]
async fn a_cwd_of_dash_is_a_directory_not_the_previous_one() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    server
        .exec(
            &sshd,
            "mkdir -p /tmp/state-dash-dir/- && cd /tmp/state-dash-dir",
        )
        .await;
    let mut args = exec_args(&sshd, "pwd");
    args["cwd"] = json!("-");
    let res = server.call("execute_command", args).await;
    assert_eq!(stdout(&res), "/tmp/state-dash-dir/-\n", "{}", text(&res));
    let _ = std::fs::remove_dir_all("/tmp/state-dash-dir");
}

#[tokio::test]
async fn a_reset_during_a_command_is_not_undone_when_it_ends() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    server.exec(&sshd, "cd /tmp && export FOO=1").await;
    let target = json!({"host": "127.0.0.1", "port": sshd.port(), "username": TEST_USER});
    let slow = server.exec(&sshd, "sleep 2; export BAR=2");
    let reset = async {
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
        server.call("reset_session", target.clone()).await
    };
    let (slow, reset) = tokio::join!(slow, reset);
    assert_eq!(structured(&reset)["reset"], true);
    assert!(
        text(&slow).contains("reset while this command ran"),
        "{}",
        text(&slow)
    );
    let res = server
        .exec(&sshd, "pwd; echo \"${FOO-unset} ${BAR-unset}\"")
        .await;
    assert_eq!(stdout(&res), format!("/home/{TEST_USER}\nunset unset\n"));
}

#[tokio::test]
async fn bashs_read_only_variables_exported_do_not_break_later_calls() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    run(
        &server,
        &sshd,
        "mcpssh-bash",
        "set -o pipefail; export SHELLOPTS UID PPID; export K=1",
    )
    .await;
    let res = run(&server, &sshd, "mcpssh-bash", "echo \"$K\"").await;
    assert_eq!(stdout(&res), "1\n", "{}", text(&res));
    assert_eq!(structured(&res)["stderr"], "", "{}", text(&res));
}

#[tokio::test]
async fn a_debug_trap_does_not_lose_the_state() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    for user in ["mcpssh-bash", "mcpssh-ksh", "mcpssh-zsh"] {
        let res = run(
            &server,
            &sshd,
            user,
            "export KEEP=1; trap 'echo DBG' DEBUG; echo hi",
        )
        .await;
        assert!(
            !text(&res).contains("mcp-ssh") && !text(&res).contains("could not be read"),
            "{user}: {}",
            text(&res)
        );
        let res = run(&server, &sshd, user, "echo \"$KEEP\"").await;
        assert_eq!(stdout(&res), "1\n", "{user}: {}", text(&res));
    }
}

/// A login shell still starting when the first call's time runs out (a
/// slow rc file) is learnt on the next call: the session keeps its state.
#[tokio::test]
async fn a_first_call_out_of_time_in_a_slow_rc_file_leaves_the_state_on() {
    let flag = tempfile::NamedTempFile::new().unwrap();
    let sshd = Sshd::start_with(&format!("SetEnv MCPSSH_SLOW_RC={}", flag.path().display()));
    let server = Server::start().await;
    let user = BASHRC_USER.0;
    let mut slow = as_user(&sshd, user, "echo never");
    slow["timeout"] = json!(1);
    let msg = tool_error(&server.call("execute_command", slow).await);
    assert!(
        msg.contains("login shell started") && msg.contains("nothing was run"),
        "{msg}"
    );
    flag.close().unwrap();
    run(&server, &sshd, user, "cd /tmp && export KEPT=yes").await;
    let res = run(&server, &sshd, user, "pwd; echo $KEPT").await;
    assert_eq!(
        stdout(&res).trim_start_matches(|c| c != '/'),
        "/tmp\nyes\n",
        "{}",
        text(&res)
    );
}
