//! Real MCP clients over streamable HTTP: the official Python SDK's
//! streamable HTTP client calls every tool through one server with a
//! bearer token, and the MCP Inspector CLI (`--transport http`) calls the
//! built-in tools; each Inspector run is a new MCP session of the same
//! client, so what it opened is still there in the next run, and a second
//! client's token sees none of it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::http_server::{HttpServer, new_token};
use crate::server::{BUILT_IN_TOOLS, Leftovers, Server};
use crate::sshd::{Sshd, TEST_PASSWORD, TEST_USER};

use crate::clients::{THIRD_PARTY, installed, with_third_party};

#[test]
fn the_python_sdk_calls_every_tool_over_http_with_a_bearer_token() {
    python_sdk_calls_every_tool(false);
}

#[test]
fn the_python_sdk_calls_every_tool_over_https_with_the_servers_certificate() {
    python_sdk_calls_every_tool(true);
}

/// A self-signed certificate for 127.0.0.1 and localhost: `(cert, key)`.
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    (cert, key)
}

fn python_sdk_calls_every_tool(tls: bool) {
    let python = installed("MCP_SSH_CLIENT_PYTHON");
    let sshd = Sshd::start();
    let (token, lines) = new_token("python");
    let builder = with_third_party(&sshd);
    let (cert, key) = certificate(builder.home());
    let (cert_s, key_s) = (cert.display().to_string(), key.display().to_string());
    let extra: Vec<&str> = if tls {
        vec!["--tls-cert", &cert_s, "--tls-key", &key_s]
    } else {
        Vec::new()
    };
    let server = HttpServer::start(builder, &lines, &extra);
    let url = if tls {
        server.url().replace("http://", "https://")
    } else {
        server.url()
    };
    let marker = format!("mcpssh-http-python-{}", sshd.port());
    let remote = std::env::temp_dir().join(format!("mcpssh-http-python-files-{}", sshd.port()));
    let _ = std::fs::remove_dir_all(&remote);
    let root = server.builder.home().join("transfers");
    std::fs::write(root.join("up.txt"), format!("up {marker}\n")).unwrap();
    let _sleeper = Leftovers::new(TEST_USER, &format!("sleep 300.{}", sshd.port()));
    let config = json!({
        "url": url,
        "ca": if tls { Some(&cert_s) } else { None },
        "token": token,
        "port": sshd.port(),
        "username": TEST_USER,
        "password": TEST_PASSWORD,
        "marker": marker,
        "third_party": THIRD_PARTY,
        "remote_dir": remote.display().to_string(),
        "transfer_root": root,
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/clients/python_client.py");
    let out = Command::new(&python)
        .arg(&script)
        .env("MCP_SSH_CLIENT_CONFIG", config.to_string())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&remote);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = format!(
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    assert!(out.status.success(), "python_client.py failed:\n{report}");
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}\n{report}")))
        .collect();
    let step = |name: &str| lines.iter().find(|l| l["step"] == name);
    assert_eq!(
        step("initialize").map(|s| s["protocolVersion"].clone()),
        Some(json!("2025-11-25")),
        "{report}"
    );
    assert!(step("done").is_some(), "{report}");
    for tool in BUILT_IN_TOOLS.iter().chain([&THIRD_PARTY]) {
        assert!(
            lines.iter().any(|l| l["tool"] == *tool),
            "{tool} was not called:\n{report}"
        );
    }
    for line in lines.iter().filter(|l| l.get("tool").is_some()) {
        assert_eq!(line["schemaError"], Value::Null, "{line}");
    }
    let find = |tool: &str, label: Option<&str>| {
        lines
            .iter()
            .find(|l| l["tool"] == tool && l["label"].as_str() == label)
            .unwrap_or_else(|| panic!("no {tool} in {report}"))
    };
    let exec = find("execute_command", None);
    assert_eq!(exec["structured"]["exit_status"], 3, "{exec}");
    assert_eq!(
        exec["structured"]["stdout"],
        format!("{marker}\n"),
        "{exec}"
    );
    let interrupted = find("interrupt_command", None);
    assert_eq!(
        interrupted["structured"]["state"], "killed",
        "{interrupted}"
    );
    let read = find("read_file", None);
    assert_eq!(
        read["structured"]["content"],
        format!("two {marker}\n"),
        "{read}"
    );
    let df = find(THIRD_PARTY, None);
    assert_eq!(df["isError"], false, "{df}");
    assert_eq!(
        std::fs::read_to_string(root.join("down.txt")).unwrap(),
        format!("up {marker}\n")
    );
    let all = find("close_all_sessions", None);
    assert_eq!(all["structured"]["closed"], 1, "{all}");
}

/// The Inspector CLI on a running HTTP server, with a bearer token.
fn inspector(server: &HttpServer, token: &str, method: &[&str]) -> Value {
    let node = std::env::var_os("MCP_SSH_NODE").unwrap_or_else(|| "node".into());
    let out = Command::new(node)
        .arg(installed("MCP_SSH_INSPECTOR"))
        .args(["--format", "json", "--transport", "http", "--server-url"])
        .arg(server.url())
        .arg("--header")
        .arg(format!("Authorization: Bearer {token}"))
        .args(method)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    [&stdout, &stderr]
        .iter()
        .flat_map(|s| s.lines().rev())
        .find_map(|l| {
            serde_json::from_str::<Value>(l.trim())
                .ok()
                .filter(Value::is_object)
        })
        .or_else(|| serde_json::from_str(stdout.trim()).ok())
        .unwrap_or_else(|| panic!("no JSON answer ({}):\n{stdout}\n{stderr}", out.status))
}

fn call(server: &HttpServer, token: &str, tool: &str, args: &[(&str, String)]) -> Value {
    let mut method = vec![
        "--method".to_string(),
        "tools/call".into(),
        "--tool-name".into(),
        tool.into(),
    ];
    for (k, v) in args {
        method.push("--tool-arg".into());
        method.push(format!("{k}={v}"));
    }
    let method: Vec<&str> = method.iter().map(String::as_str).collect();
    let answer = inspector(server, token, &method);
    answer
        .get("result")
        .unwrap_or_else(|| panic!("{tool}: no result: {answer}"))
        .clone()
}

#[test]
fn the_inspector_cli_calls_the_built_in_tools_over_http_and_sessions_outlive_its_runs() {
    let sshd = Sshd::start();
    let (alice, lines_a) = new_token("alice");
    let (bob, lines_b) = new_token("bob");
    let server = HttpServer::start(Server::builder(), &format!("{lines_a}{lines_b}"), &[]);
    let listed = inspector(&server, &alice, &["--method", "tools/list"]);
    let names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{listed}"))
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for tool in BUILT_IN_TOOLS {
        assert!(names.contains(&tool), "{tool} not listed: {names:?}");
    }
    let target = vec![
        ("host", "127.0.0.1".to_string()),
        ("port", sshd.port().to_string()),
        ("username", TEST_USER.to_string()),
    ];
    let with = |more: &[(&'static str, &str)]| {
        let mut args = target.clone();
        args.extend(more.iter().map(|(k, v)| (*k, v.to_string())));
        args
    };
    let ran = call(
        &server,
        &alice,
        "execute_command",
        &with(&[
            ("password", TEST_PASSWORD),
            ("command", "echo mcpssh-inspector-http"),
        ]),
    );
    assert_eq!(ran["isError"], false, "{ran}");
    // A new Inspector run, the same client: its session is still there.
    let again = call(
        &server,
        &alice,
        "execute_command",
        &with(&[("command", "echo again")]),
    );
    assert_eq!(again["structuredContent"]["stdout"], "again\n", "{again}");
    let started = call(
        &server,
        &alice,
        "start_command",
        &with(&[("command", "echo job")]),
    );
    let job = started["structuredContent"]["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let status = call(
        &server,
        &alice,
        "get_command_status",
        &[("job_id", job.clone())],
    );
    assert_eq!(status["isError"], false, "{status}");
    let mine = call(&server, &alice, "list_sessions", &[]);
    assert_eq!(
        mine["structuredContent"]["sessions"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    // Another client's token: nothing of alice's.
    let theirs = call(&server, &bob, "list_sessions", &[]);
    assert_eq!(
        theirs["structuredContent"]["sessions"],
        json!([]),
        "{theirs}"
    );
    let jobs = call(&server, &bob, "list_commands", &[]);
    assert_eq!(jobs["structuredContent"]["jobs"], json!([]), "{jobs}");
    let closed = call(&server, &alice, "close_all_sessions", &[]);
    assert_eq!(closed["structuredContent"]["closed"], 1, "{closed}");
}
