//! stdin and stdout of every kind a client may hand the server: pipes
//! (every other test), a Unix socket pair (what Node's `child_process`
//! makes), and a plain file. The server polls pipes and sockets in
//! non-blocking mode; the flags it changed must come back when it exits,
//! since the open file may be a parent's too.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::server::{BIN, exit_within, shared_cache};

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#;
const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
const LIST: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;

fn server(home: &std::path::Path, stdin: Stdio, stdout: Stdio) -> Child {
    Command::new(BIN)
        .args(["--no-plugins", "--cache-dir"])
        .arg(shared_cache())
        .env("HOME", home)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The ids of the JSON-RPC answers read from `lines` until it ends.
fn answered(lines: impl Iterator<Item = std::io::Result<String>>) -> Vec<i64> {
    lines
        .map(|l| {
            let line = l.unwrap();
            let msg: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("non-JSON on stdout: {line:?}: {e}"));
            assert!(msg.get("error").is_none(), "{msg}");
            msg["id"].as_i64().unwrap_or(-1)
        })
        .collect()
}

fn nonblocking(fd: &impl AsRawFd) -> bool {
    // SAFETY: F_GETFL takes no argument.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    assert!(flags >= 0);
    flags & libc::O_NONBLOCK != 0
}

/// The server's end, shared with `kept`, is non-blocking while it runs;
/// once `close` ends its input and it exits, blocking again.
fn exits_leaving_blocking(mut child: Child, kept: &impl AsRawFd, close: impl FnOnce()) {
    assert!(
        nonblocking(kept),
        "the server polls its end in non-blocking mode"
    );
    close();
    assert!(child.wait().unwrap().success());
    assert!(
        !nonblocking(kept),
        "the server left the shared open file in non-blocking mode"
    );
}

#[test]
fn a_socket_pair_as_stdin_and_stdout_is_served_and_left_blocking() {
    let home = tempfile::tempdir().unwrap();
    let (ours, theirs) = UnixStream::pair().unwrap();
    // A parent that keeps the server's end open too, as a wrapper would.
    let kept = theirs.try_clone().unwrap();
    let out = OwnedFd::from(theirs.try_clone().unwrap());
    let child = server(
        home.path(),
        Stdio::from(OwnedFd::from(theirs)),
        Stdio::from(out),
    );
    let mut writer = ours.try_clone().unwrap();
    writeln!(writer, "{INIT}\n{INITIALIZED}\n{LIST}").unwrap();
    let mut lines = BufReader::new(ours).lines();
    let mut ids = Vec::new();
    while ids.len() < 2 {
        let line = lines.next().expect("the server closed the socket").unwrap();
        let msg: Value = serde_json::from_str(&line).unwrap();
        ids.push(msg["id"].as_i64().unwrap());
        if msg["id"] == 2 {
            assert!(
                msg["result"]["tools"]
                    .as_array()
                    .is_some_and(|t| !t.is_empty())
            );
        }
    }
    assert_eq!(ids, [1, 2]);
    // The client leaves: the server sees the end of its input and exits.
    exits_leaving_blocking(child, &kept, || {
        writer.shutdown(std::net::Shutdown::Write).unwrap()
    });
}

#[test]
fn requests_in_a_file_on_stdin_are_answered() {
    let home = tempfile::tempdir().unwrap();
    let requests = home.path().join("requests.jsonl");
    std::fs::write(&requests, format!("{INIT}\n{INITIALIZED}\n{LIST}\n")).unwrap();
    let file = std::fs::File::open(&requests).unwrap();
    let mut child = server(home.path(), Stdio::from(file), Stdio::piped());
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(answered(lines), [1, 2]);
    assert!(child.wait().unwrap().success());
}

/// A server on a pipe answers, then is made to leave by `leave` (given
/// its pid and the pipe's writing end, which it returns to keep open until
/// the server has left): it must put the pipe's flags back.
fn a_pipe_is_left_blocking_when(
    leave: impl FnOnce(u32, std::io::PipeWriter) -> Option<std::io::PipeWriter>,
) {
    let home = tempfile::tempdir().unwrap();
    let (reader, mut writer) = std::io::pipe().unwrap();
    let kept = reader.try_clone().unwrap();
    let mut child = server(home.path(), Stdio::from(reader), Stdio::piped());
    writeln!(writer, "{INIT}\n{INITIALIZED}\n{LIST}").unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let second = lines.nth(1).unwrap().unwrap();
    assert_eq!(serde_json::from_str::<Value>(&second).unwrap()["id"], 2);
    let pid = child.id();
    let mut held = None;
    exits_leaving_blocking(child, &kept, || held = leave(pid, writer));
    drop(held);
}

#[test]
fn a_pipe_is_left_blocking_after_the_server_exits() {
    a_pipe_is_left_blocking_when(|_, _writer| None);
}

/// SIGTERM, with stdin still open, makes the server leave as stdin's end
/// would: the flags it changed are put back.
#[test]
fn a_pipe_is_left_blocking_after_sigterm() {
    a_pipe_is_left_blocking_when(|pid, writer| {
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        // Open until the server has left: the signal alone must do it.
        Some(writer)
    });
}

/// A client that stops reading answers and closes stdin: the server must
/// still leave (rmcp's own shutdown waits on the blocked write for ever).
#[test]
fn a_client_that_reads_nothing_and_closes_stdin_does_not_keep_the_server() {
    let home = tempfile::tempdir().unwrap();
    let mut child = server(home.path(), Stdio::piped(), Stdio::piped());
    let mut stdin = child.stdin.take().unwrap();
    // Far more answers than a pipe holds (64 KiB), none of them read.
    let mut requests = format!("{INIT}\n{INITIALIZED}\n");
    for id in 10..400 {
        requests.push_str(&format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"tools/list\"}}\n"
        ));
    }
    stdin.write_all(requests.as_bytes()).unwrap();
    drop(stdin);
    let _stdout = child.stdout.take().unwrap();
    let status = exit_within(&mut child, std::time::Duration::from_secs(60), || {
        "the server, after its stdin ended".into()
    });
    assert!(status.success(), "{status}");
}
