//! Progress: with a progress token, a running execute_command sends
//! `notifications/progress` (bytes, elapsed time, last line) at a bounded
//! rate and with growing values; without one it sends none. Raw JSON-RPC
//! over stdio, since rmcp's client always sends a token.

use serde_json::{Value, json};

use crate::sshd::{Sshd, TEST_USER};

/// Sends one `tools/call` (with `meta`, if any) and returns every message
/// the server wrote before its response, and the response.
fn call_raw(sshd: &Sshd, command: &str, meta: Option<Value>) -> (Vec<Value>, Value) {
    let home = tempfile::tempdir().unwrap();
    let mut child = crate::server::raw_server(home.path());
    let mut params = json!({"name": "execute_command", "arguments": {
        "host": "127.0.0.1", "port": sshd.port(), "username": TEST_USER,
        "key_filename": sshd.client_key(), "command": command}});
    if let Some(meta) = meta {
        params["_meta"] = meta;
    }
    let (stdin, lines) = crate::server::send_raw_call(&mut child, params);
    let mut before = Vec::new();
    let mut response = Value::Null;
    for line in lines {
        let msg: Value = serde_json::from_str(&line.unwrap()).unwrap();
        if msg["id"] == 2 {
            response = msg;
            break;
        }
        before.push(msg);
    }
    drop(stdin);
    let _ = child.wait();
    (before, response)
}

const SLOW: &str = "for i in 1 2 3 4 5 6; do echo line$i; sleep 0.4; done";

#[test]
fn a_long_command_reports_progress_when_asked() {
    let sshd = Sshd::start();
    let (before, response) = call_raw(&sshd, SLOW, Some(json!({"progressToken": "tok-1"})));
    assert_eq!(response["result"]["isError"], false, "{response}");
    let progress: Vec<&Value> = before
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .map(|m| &m["params"])
        .collect();
    assert!(progress.len() >= 2, "only {} notifications", progress.len());
    // Bounded rate: the command ran about 2.4 s.
    assert!(progress.len() <= 12, "{} notifications", progress.len());
    let values: Vec<f64> = progress
        .iter()
        .map(|p| p["progress"].as_f64().unwrap())
        .collect();
    assert!(
        values.windows(2).all(|w| w[0] < w[1]),
        "not growing: {values:?}"
    );
    for p in &progress {
        assert_eq!(p["progressToken"], "tok-1");
        let m = p["message"].as_str().unwrap();
        assert!(
            m.contains("bytes received") && m.contains("s elapsed"),
            "{m}"
        );
    }
    assert!(
        progress
            .iter()
            .any(|p| p["message"].as_str().unwrap().contains("last line: line")),
        "no last line in {progress:?}"
    );
}

#[test]
fn no_progress_is_sent_without_a_token() {
    let sshd = Sshd::start();
    let (before, response) = call_raw(&sshd, SLOW, None);
    assert_eq!(response["result"]["isError"], false, "{response}");
    assert!(
        before
            .iter()
            .all(|m| m["method"] != "notifications/progress"),
        "{before:?}"
    );
}
