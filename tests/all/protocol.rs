//! MCP protocol behaviour: the tool list, argument validation, routing
//! errors, and a stdout that carries JSON-RPC only.

use std::io::{BufRead, BufReader, Write};

use rmcp::model::ErrorCode;
use rmcp::service::ServiceError;
use serde_json::{Value, json};

use crate::server::Server;

fn invalid_params(res: Result<rmcp::model::CallToolResult, ServiceError>) -> String {
    match res {
        Err(ServiceError::McpError(e)) => {
            assert_eq!(e.code, ErrorCode::INVALID_PARAMS, "{e:?}");
            e.message.to_string()
        }
        other => panic!("expected invalid params, got {other:?}"),
    }
}

#[tokio::test]
async fn tools_list_shows_the_four_seed_tools_from_components() {
    let server = Server::start().await;
    let tools = server.client.list_all_tools().await.unwrap();
    let mut names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(names, crate::server::BUILT_IN_TOOLS);
    let exec = tools.iter().find(|t| t.name == "execute_command").unwrap();
    let schema = Value::Object((*exec.input_schema).clone());
    let mut required: Vec<_> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    required.sort();
    assert_eq!(required, ["command", "host"]);
    for optional in [
        "username",
        "password",
        "key_filename",
        "port",
        "passphrase",
        "timeout",
        "max_output_bytes",
    ] {
        assert!(
            schema["properties"].get(optional).is_some(),
            "{optional} missing"
        );
    }
    let output = exec
        .output_schema
        .as_ref()
        .expect("execute_command has an output schema");
    for field in [
        "exit_status",
        "exit_signal",
        "stdout",
        "stderr",
        "timed_out",
        "duration_ms",
    ] {
        assert!(output["properties"].get(field).is_some(), "{field} missing");
    }
    let close = tools.iter().find(|t| t.name == "close_session").unwrap();
    assert_eq!(close.input_schema["required"], json!(["host"]));
}

/// MCP 2025-11-25 (SEP-1303): arguments that do not match the schema are a
/// tool result with `isError`, naming the field, so a model can correct
/// itself; only an unknown tool is a JSON-RPC error.
fn invalid_arguments(res: Result<rmcp::model::CallToolResult, ServiceError>) -> String {
    match res {
        Ok(r) if r.is_error == Some(true) => {
            let text = crate::server::text(&r);
            assert!(text.starts_with("invalid arguments for "), "{text}");
            text
        }
        other => panic!("expected a tool error for invalid arguments, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_arguments_are_tool_errors_naming_the_field() {
    let server = Server::start().await;
    let missing = server
        .try_call(
            "execute_command",
            json!({"host": "127.0.0.1", "username": "u"}),
        )
        .await;
    assert!(invalid_arguments(missing).contains("command"));

    // A field of the wrong type, past its range, or a deadline of 0 s
    // (it would race the command's start): each refused, named.
    for (field, value) in [
        ("port", json!("twenty-two")),
        ("port", json!(70000)),
        ("timeout", json!(0)),
    ] {
        let mut args = json!({"host": "127.0.0.1", "username": "u", "command": "true"});
        args[field] = value.clone();
        let res = server.try_call("execute_command", args).await;
        let msg = invalid_arguments(res);
        assert!(msg.contains(field), "{field} = {value}: {msg}");
    }

    let unknown_field = server
        .try_call("list_sessions", json!({"surprise": true}))
        .await;
    assert!(invalid_arguments(unknown_field).contains("surprise"));
}

#[tokio::test]
async fn invalid_argument_messages_do_not_echo_values() {
    let server = Server::start().await;
    let secret = 987_654_321;
    let res = server
        .try_call(
            "execute_command",
            json!({"host": "h", "username": "u", "command": "true", "password": secret}),
        )
        .await;
    let msg = invalid_arguments(res);
    assert!(
        msg.contains("password") && !msg.contains(&secret.to_string()),
        "{msg}"
    );
    let res = server
        .try_call(
            "execute_command",
            json!({"host": "h", "username": "u", "command": "true", "port": "s3cr3t-99"}),
        )
        .await;
    let msg = invalid_arguments(res);
    assert!(msg.contains("port") && !msg.contains("s3cr3t"), "{msg}");
    // An integer of the right type but past the field's range (2^64, which
    // JSON carries as a float): refused by the schema, value unquoted.
    let res = server
        .try_call(
            "execute_command",
            json!({"host": "h", "username": "u", "command": "true",
                   "max_output_bytes": 18_446_744_073_709_551_616_f64}),
        )
        .await;
    let msg = invalid_arguments(res);
    assert!(
        msg.contains("max_output_bytes")
            && !msg.contains("18446744073709551616")
            && !msg.contains("1.8446"),
        "{msg}"
    );
    assert!(!server.log().contains(&secret.to_string()));
    assert!(!server.log().contains("s3cr3t"));
}

/// Clients such as the MCP Inspector send `--tool-arg port=2212` as a
/// string: numbers and booleans written as strings are taken as such.
#[tokio::test]
async fn numbers_sent_as_strings_are_accepted() {
    let sshd = crate::sshd::Sshd::start();
    let server = Server::start().await;
    let mut args = crate::server::exec_args(&sshd, "printf 1234567890");
    args["port"] = json!(sshd.port().to_string());
    args["timeout"] = json!("20");
    args["max_output_bytes"] = json!("4");
    // Empty optional fields as some clients send them.
    args["passphrase"] = json!(null);
    args["password"] = json!(null);
    let res = server.call("execute_command", args).await;
    assert_ne!(res.is_error, Some(true), "{}", crate::server::text(&res));
    let out = crate::server::structured(&res);
    assert_eq!(out["stdout_bytes"], 10, "{out}");
    assert_eq!(out["stdout_truncated"], true, "{out}");
}

#[tokio::test]
async fn input_schemas_are_plain_json_schema_every_client_renders() {
    let server = Server::start().await;
    for tool in server.client.list_all_tools().await.unwrap() {
        let schema = Value::Object((*tool.input_schema).clone());
        let text = schema.to_string();
        assert!(!text.contains("\"null\""), "{}: {text}", tool.name);
        assert!(!text.contains("\"format\""), "{}: {text}", tool.name);
        assert_eq!(schema["additionalProperties"], false, "{}", tool.name);
        for (name, prop) in schema["properties"].as_object().into_iter().flatten() {
            assert!(prop["type"].is_string(), "{}.{name}: {prop}", tool.name);
        }
    }
}

#[tokio::test]
async fn unknown_tool_is_a_jsonrpc_error() {
    let server = Server::start().await;
    let msg = invalid_params(server.try_call("no_such_tool", json!({})).await);
    assert!(msg.contains("no_such_tool"), "{msg}");
}

#[tokio::test]
async fn a_failed_connection_is_a_tool_error_not_a_protocol_error() {
    let server = Server::start().await;
    let port = crate::sshd::free_port();
    let res = server
        .call(
            "execute_command",
            json!({"host": "127.0.0.1", "port": port, "username": "u", "command": "true"}),
        )
        .await;
    assert_eq!(res.is_error, Some(true));
    let msg = crate::server::text(&res);
    assert!(
        msg.contains("refused") && msg.contains(&port.to_string()),
        "{msg}"
    );
}

/// Raw stdio, no client library: every stdout line must be a JSON-RPC
/// message, even when calls fail and the server logs.
#[test]
fn stdout_carries_only_jsonrpc() {
    let home = tempfile::tempdir().unwrap();
    let mut child = crate::server::raw_server(home.path());
    let port = crate::sshd::free_port();
    let requests = [
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}),
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
        json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}),
        json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"execute_command","arguments":{"host":"127.0.0.1","port":port,"username":"u","command":"true","password":"pw"}}}),
        json!({"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"nope"}}),
        json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"execute_command","arguments":"not an object"}}),
    ];
    let mut stdin = child.stdin.take().unwrap();
    for r in &requests {
        writeln!(stdin, "{r}").unwrap();
    }
    let reader = BufReader::new(child.stdout.take().unwrap());
    let mut ids = Vec::new();
    for line in reader.lines() {
        let line = line.unwrap();
        let msg: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("non-JSON on stdout: {line:?}: {e}"));
        assert_eq!(msg["jsonrpc"], "2.0", "{line}");
        ids.push(msg["id"].as_i64().unwrap_or(-1));
        if ids.len() == 5 {
            break;
        }
    }
    drop(stdin);
    let _ = child.wait();
    ids.sort();
    assert_eq!(ids, [1, 2, 3, 4, 5]);
}

/// The JSON-RPC answer with `id`, skipping notifications.
fn answer(lines: &mut impl Iterator<Item = std::io::Result<String>>, id: i64) -> Value {
    for line in lines {
        let msg: Value = serde_json::from_str(&line.unwrap()).unwrap();
        if msg["id"] == id {
            return msg;
        }
    }
    panic!("the server closed stdout before answering {id}");
}

/// Raw JSON-RPC, so the version sent is exactly `requested`: initializes,
/// then lists tools and runs a command on `sshd`. Returns the version the
/// server answered with.
fn negotiated_session(requested: &str, sshd: &crate::sshd::Sshd) -> String {
    let home = tempfile::tempdir().unwrap();
    let mut child = crate::server::raw_server(home.path());
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion": requested, "capabilities":{},
        "clientInfo":{"name":"raw","version":"0"}}});
    writeln!(stdin, "{init}").unwrap();
    let init = answer(&mut lines, 1);
    let version = init["result"]["protocolVersion"]
        .as_str()
        .unwrap_or_else(|| panic!("{requested}: {init}"))
        .to_string();
    assert_eq!(init["result"]["serverInfo"]["name"], "mcp-ssh-session");
    writeln!(
        stdin,
        "{}",
        json!({"jsonrpc":"2.0","method":"notifications/initialized"})
    )
    .unwrap();
    writeln!(
        stdin,
        "{}",
        json!({"jsonrpc":"2.0","id":2,"method":"tools/list"})
    )
    .unwrap();
    let tools = answer(&mut lines, 2);
    let names: Vec<_> = tools["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{requested}: {tools}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"execute_command"), "{requested}: {names:?}");
    let marker = format!("mcpssh-version-{requested}");
    let mut args =
        crate::server::password_args(sshd, crate::sshd::TEST_PASSWORD, &format!("echo {marker}"));
    args["timeout"] = json!(20);
    let call = json!({"jsonrpc":"2.0","id":3,"method":"tools/call",
        "params":{"name":"execute_command","arguments": args}});
    writeln!(stdin, "{call}").unwrap();
    let res = answer(&mut lines, 3);
    assert_eq!(res["result"]["isError"], false, "{requested}: {res}");
    assert_eq!(
        res["result"]["structuredContent"]["stdout"],
        format!("{marker}\n"),
        "{requested}: {res}"
    );
    drop(stdin);
    let _ = child.wait();
    version
}

#[test]
fn initialize_with_2025_11_25_is_answered_with_it_and_tools_work() {
    let sshd = crate::sshd::Sshd::start();
    assert_eq!(negotiated_session("2025-11-25", &sshd), "2025-11-25");
}

#[test]
fn initialize_with_2025_06_18_is_answered_with_it_and_tools_work() {
    let sshd = crate::sshd::Sshd::start();
    assert_eq!(negotiated_session("2025-06-18", &sshd), "2025-06-18");
}

/// A client newer than the server gets the newest version that has an
/// `initialize` handshake (MCP lifecycle: the server answers with one it
/// supports); 2026-07-28 dropped the handshake, so it cannot be that.
#[test]
fn an_unknown_future_version_gets_the_newest_with_a_handshake() {
    let sshd = crate::sshd::Sshd::start();
    assert_eq!(negotiated_session("2099-01-01", &sshd), "2025-11-25");
}
