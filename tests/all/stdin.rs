//! `stdin` and `stdin_base64` of `execute_command` and `start_command`:
//! written to the command, then end-of-file, while its output is read;
//! bytes arrive exactly; the size limit is a clear error; Dropbear too.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::dropbear_server::Dropbear;
use crate::server::{Server, exec_args, stdout, structured, succeeded, text, tool_error};
use crate::sshd::{Sshd, TEST_PASSWORD, TEST_USER};

fn with_stdin(mut args: Value, key: &str, stdin: &str) -> Value {
    args[key] = json!(stdin);
    args
}

fn base64(bytes: &[u8]) -> String {
    use base64ct::Encoding;
    base64ct::Base64::encode_string(bytes)
}

/// `od`'s hex dump of `bytes`, as the remote prints it below.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const HEX_OF_STDIN: &str = "od -An -v -tx1 | tr -d ' \\n'";

#[tokio::test]
async fn stdin_text_reaches_the_command_then_end_of_file() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    let args = with_stdin(
        exec_args(&sshd, "cat; echo '[done]'"),
        "stdin",
        "line one\nline two",
    );
    let res = server.call("execute_command", args).await;
    succeeded(&res);
    assert_eq!(stdout(&res), "line one\nline two[done]\n", "{}", text(&res));
}

#[tokio::test]
async fn binary_stdin_round_trips_byte_for_byte() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    let mut bytes: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    bytes.extend_from_slice(b"\0\r\n\0");
    let args = with_stdin(
        exec_args(&sshd, HEX_OF_STDIN),
        "stdin_base64",
        &base64(&bytes),
    );
    let res = server.call("execute_command", args).await;
    succeeded(&res);
    assert_eq!(stdout(&res), hex(&bytes), "{}", text(&res));
}

#[tokio::test]
async fn stdin_over_sixteen_mib_is_refused_with_a_clear_error() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    let mut bytes: Vec<u8> = (0..=255u8).cycle().take((16 << 20) + 1).collect();
    let args = with_stdin(exec_args(&sshd, "wc -c"), "stdin_base64", &base64(&bytes));
    let res = server.call("execute_command", args).await;
    let msg = tool_error(&res);
    assert!(
        msg.contains("stdin is 16777217 bytes") && msg.contains("16777216"),
        "{msg}"
    );
    // At the limit it is sent whole (22 MiB of JSON on stdio).
    bytes.pop();
    let args = with_stdin(exec_args(&sshd, "wc -c"), "stdin_base64", &base64(&bytes));
    let res = server.call("execute_command", args).await;
    succeeded(&res);
    assert_eq!(stdout(&res), "16777216\n", "{}", text(&res));
}

#[tokio::test]
async fn large_stdin_and_large_output_do_not_deadlock() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    // 8 MB of output before the command reads a byte of its 8 MB stdin:
    // both directions fill their windows unless both are served at once.
    let stdin = "y".repeat(8 << 20);
    let mut args = with_stdin(
        exec_args(&sshd, "head -c 8388608 /dev/zero | tr '\\0' z; wc -c"),
        "stdin",
        &stdin,
    );
    args["timeout"] = json!(60);
    let started = Instant::now();
    let res = server.call("execute_command", args).await;
    succeeded(&res);
    let s = structured(&res);
    assert_eq!(s["timed_out"], false, "{}", text(&res));
    assert!(
        stdout(&res).ends_with("8388608\n"),
        "{}",
        &text(&res)[..500.min(text(&res).len())]
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[tokio::test]
async fn stdin_follows_a_command_too_large_for_the_exec_request() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    // Past one packet, the launcher's own words go on stdin first, ended by
    // an empty line: the command's stdin must come after them, whole.
    let command = format!(": {}; cat", "a".repeat(40_000));
    let args = with_stdin(
        exec_args(&sshd, &command),
        "stdin",
        "\nfirst line was empty\n",
    );
    let res = server.call("execute_command", args).await;
    succeeded(&res);
    assert_eq!(stdout(&res), "\nfirst line was empty\n", "{}", text(&res));
}

#[tokio::test]
async fn stdin_reaches_a_command_on_dropbear() {
    let dropbear = Dropbear::start();
    let server = Server::start().await;
    let bytes: Vec<u8> = (0..=255u8).rev().cycle().take(20_000).collect();
    for command in [
        HEX_OF_STDIN.to_string(),
        format!(": {}; {HEX_OF_STDIN}", "b".repeat(12_000)),
    ] {
        let args = json!({
            "host": "127.0.0.1",
            "port": dropbear.port(),
            "username": TEST_USER,
            "password": TEST_PASSWORD,
            "command": command,
            "stdin_base64": base64(&bytes),
        });
        let res = server.call("execute_command", args).await;
        succeeded(&res);
        assert_eq!(
            stdout(&res),
            hex(&bytes),
            "{}\n{}",
            text(&res),
            dropbear.log()
        );
    }
}

#[tokio::test]
async fn a_background_job_reads_its_stdin() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    let args = with_stdin(exec_args(&sshd, "tr a-z A-Z"), "stdin", "shout\n");
    let res = server.call("start_command", args).await;
    succeeded(&res);
    let id = structured(&res)["job_id"].as_str().unwrap().to_string();
    let s = crate::jobs::wait_done(&server, &id).await;
    assert_eq!(s["exit_status"], 0, "{s}");
    let out = server
        .call("get_command_output", json!({"job_id": id}))
        .await;
    assert_eq!(structured(&out)["data"], "SHOUT\n", "{}", text(&out));
}

#[tokio::test]
async fn sixteen_mib_of_text_that_json_escapes_to_twice_its_size_is_answered() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    let mut args = exec_args(&sshd, "wc -c");
    args["stdin"] = json!("\n".repeat(16 << 20));
    let res = server.call("execute_command", args).await;
    assert_eq!(
        stdout(&res).trim(),
        (16u64 << 20).to_string(),
        "{}",
        text(&res)
    );
}
