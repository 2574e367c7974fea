//! Secrets stay out of everything the server leaves behind: its log at any
//! level (malformed requests included) and core dumps. And what a client
//! sends cannot forge or flood that log.

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use serde_json::{Value, json};

use crate::server::Server;
use crate::sshd::{Sshd, TEST_PASSWORD, TEST_USER};

#[test]
fn no_password_reaches_the_log_at_trace_whatever_the_request_looks_like() {
    let sshd = Sshd::start();
    let home = tempfile::tempdir().unwrap();
    let log_path = home.path().join("stderr.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = crate::server::raw_server_logging_to(home.path(), log);
    let pid = child.id();
    // A stuck server must fail the test, not hang it.
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(60));
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    });
    let exec = |password: &str| {
        json!({
            "name": "execute_command",
            "arguments": {
                "host": "127.0.0.1", "port": sshd.port(), "username": TEST_USER,
                "password": password, "command": "echo logged-in",
            }
        })
    };
    let pw = TEST_PASSWORD;
    let lines = [
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}).to_string(),
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}).to_string(),
        // An id of the wrong type.
        json!({"jsonrpc":"2.0","id":true,"method":"tools/call","params":exec(pw)}).to_string(),
        // Truncated JSON.
        format!(r#"{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{{"arguments":{{"password":"{pw}""#),
        // An unknown method, and an unknown notification.
        json!({"jsonrpc":"2.0","id":4,"method":"secrets/leak","params":{"password":pw}}).to_string(),
        json!({"jsonrpc":"2.0","method":"notifications/leak","params":{"password":pw}}).to_string(),
        // Arguments of the wrong type, and a password of the wrong type.
        json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"execute_command","arguments":pw}}).to_string(),
        json!({"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"execute_command","arguments":{"host":"127.0.0.1","password":[pw]}}}).to_string(),
        // A valid call that logs in with it, through russh at trace.
        json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":exec(pw)}).to_string(),
    ];
    let mut stdin = child.stdin.take().unwrap();
    for line in &lines {
        writeln!(stdin, "{line}").unwrap();
    }
    let reader = BufReader::new(child.stdout.take().unwrap());
    let mut logged_in = false;
    for line in reader.lines() {
        let line = line.unwrap();
        let msg: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("non-JSON on stdout: {line:?}: {e}"));
        assert_eq!(msg["jsonrpc"], "2.0", "{line}");
        if msg["id"] == 7 {
            logged_in = msg.to_string().contains("logged-in");
            break;
        }
    }
    drop(stdin);
    let _ = child.wait();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(logged_in, "the valid call did not run; log:\n{log}");
    assert!(log.contains("TRACE"), "not logging at trace:\n{log}");
    if let Some(at) = log.find(pw) {
        let start = log[..at].rfind('\n').map_or(0, |i| i + 1);
        let end = log[at..].find('\n').map_or(log.len(), |i| at + i);
        panic!("the password is in the log: {}", &log[start..end]);
    }
}

/// rmcp logs a refused request's id at `warn`: a newline or an escape
/// sequence in it stays inside its record, and a huge one is cut.
#[test]
fn a_client_cannot_forge_or_flood_log_lines() {
    let home = tempfile::tempdir().unwrap();
    let log_path = home.path().join("stderr.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = crate::server::raw_server_logging_to(home.path(), log);
    let forged = "1\n2026-11-30T06:00:00.000000Z  INFO mcp_ssh_session: FORGED \u{1b}[31mred";
    let huge = "x".repeat(5 << 20);
    let lines = [
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}),
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
        json!({"jsonrpc":"2.0","id":forged,"method":"no/such/method","params":{}}),
        json!({"jsonrpc":"2.0","id":huge,"method":"no/such/method","params":{}}),
        json!({"jsonrpc":"2.0","id":3,"method":"tools/list"}),
    ];
    let mut stdin = child.stdin.take().unwrap();
    for line in &lines {
        writeln!(stdin, "{line}").unwrap();
    }
    let reader = BufReader::new(child.stdout.take().unwrap());
    let mut answered = vec![];
    for line in reader.lines() {
        let msg: Value = serde_json::from_str(&line.unwrap()).unwrap();
        answered.push(msg["id"].clone());
        if msg["id"] == 3 {
            break;
        }
    }
    drop(stdin);
    let _ = child.wait();
    assert!(answered.contains(&json!(forged)), "{answered:?}");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("FORGED"),
        "the refused request was not logged:\n{log}"
    );
    for line in log.lines() {
        assert!(
            !line.contains("FORGED") || line.contains("WARN"),
            "a forged line: {line}"
        );
        assert!(!line.contains('\u{1b}'), "an escape sequence: {line}");
        assert!(line.len() < 20 << 10, "a line of {} bytes", line.len());
    }
    assert!(
        log.contains("more bytes of this record dropped"),
        "the huge id was not cut:\n{}",
        &log[..log.len().min(4000)]
    );
}

#[tokio::test]
async fn the_running_server_writes_no_core_dump() {
    let server = Server::start().await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid)).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(&fields[4..6], ["0", "0"], "{core}");
}

/// Run as an unprivileged user: the `/proc` files of a process that is not
/// dumpable belong to root, which is how another process can tell (and
/// why that user's other processes cannot read its memory).
#[test]
fn the_running_server_is_not_dumpable() {
    use std::os::unix::fs::MetadataExt;
    let home = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            crate::server::BIN,
            "--no-plugins",
            "--no-cache",
        ])
        .env("HOME", home.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Until setpriv has exec'd the server, its files belong to root anyway.
    let exe = format!("/proc/{}/exe", child.id());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_link(&exe).ok().as_deref() != Some(std::path::Path::new(crate::server::BIN))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(500));
    let environ = format!("/proc/{}/environ", child.id());
    let owner = std::fs::metadata(&environ).unwrap().uid();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(owner, 0, "{environ} still belongs to uid {owner}");
}
