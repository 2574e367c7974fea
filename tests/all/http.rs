//! The streamable HTTP transport (`--http`), against the real binary on a
//! free port, spoken to in raw HTTP/1.1 over a `TcpStream` so that every
//! status and header the server sends is the test's to check: tokens
//! (401), `Origin` (403), `Host` (421), one namespace per client, event
//! replay after a dropped stream, idle sessions, and shutdown.

use std::io::{BufRead, BufReader};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::http_server::{HttpServer, KeepAliveMcp, Mcp, PROTOCOL, new_token};
use crate::server::{BIN, Leftovers, Server, remote_running};
use crate::sshd::{Sshd, TEST_PASSWORD, TEST_USER};

/// Config lines: an audit log in the home, and `clients`.
fn config(home: &std::path::Path, clients: &[&str]) -> String {
    let mut text = format!("audit_log = \"{}\"\n", home.join("audit.jsonl").display());
    for c in clients {
        text.push_str(c);
    }
    text
}

fn target(sshd: &Sshd) -> Value {
    json!({"host": "127.0.0.1", "port": sshd.port(), "username": TEST_USER})
}

fn with_password(sshd: &Sshd, command: &str) -> Value {
    let mut t = target(sshd);
    t["password"] = json!(TEST_PASSWORD);
    t["command"] = json!(command);
    t
}

fn is_error(answer: &Value) -> bool {
    answer["result"]["isError"] == true || answer.get("error").is_some()
}

#[test]
fn requests_without_a_valid_token_get_401_and_are_audited_without_the_token() {
    let (token, lines) = new_token("alice");
    let builder = Server::builder();
    let cfg = config(builder.home(), &[&lines]);
    let server = HttpServer::start(builder, &cfg, &[]);
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":PROTOCOL,"capabilities":{},"clientInfo":{"name":"raw","version":"0"}}})
    .to_string();
    let base = [
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
    ];
    let none = server.request("POST", "/mcp", &base, &init);
    assert_eq!(none.status, 401, "{none:?}");
    // rmcp serves MCP on any path below /mcp: none is public.
    let below = "/mcp/.well-known/oauth-protected-resource";
    assert_eq!(server.request("POST", below, &base, &init).status, 401);
    let challenge = none.header("www-authenticate").unwrap();
    let metadata = format!(
        "resource_metadata=\"http://127.0.0.1:{}/.well-known/oauth-protected-resource/mcp\"",
        server.port
    );
    assert!(
        challenge.starts_with("Bearer ") && challenge.contains(&metadata),
        "{challenge}"
    );
    let wrong_token = format!("{token}x");
    let wrong = format!("Bearer {wrong_token}");
    let mut headers = base.to_vec();
    headers.push(("Authorization", &wrong));
    let refused = server.request("POST", "/mcp", &headers, &init);
    assert_eq!(refused.status, 401, "{refused:?}");
    assert!(
        refused
            .header("www-authenticate")
            .unwrap()
            .contains("invalid_token")
    );
    let right = Mcp::open(&server, Some(&token));
    assert!(!right.session.is_empty());

    // RFC 9728 metadata needs no token.
    let meta = server.request("GET", "/.well-known/oauth-protected-resource/mcp", &[], "");
    assert_eq!(meta.status, 200, "{meta:?}");
    let meta: Value = serde_json::from_str(meta.body.trim()).unwrap();
    assert_eq!(meta["resource"], server.url());
    assert_eq!(meta["authorization_servers"], json!([]));

    let audit = server.audit();
    let refusals: Vec<&Value> = audit.iter().filter(|l| l["kind"] == "http_auth").collect();
    assert_eq!(refusals.len(), 3, "{audit:?}");
    assert_eq!(refusals[0]["decision"], "denied: no bearer token");
    assert_eq!(refusals[2]["decision"], "denied: unknown bearer token");
    assert!(refusals.iter().all(|l| l["source"] == "127.0.0.1"));
    let everything = format!("{audit:?}{}", server.log());
    assert!(!everything.contains(&token), "a token was logged");
}

#[test]
fn a_foreign_origin_gets_403_and_a_foreign_host_421() {
    let (token, lines) = new_token("alice");
    let builder = Server::builder();
    let mut cfg = config(builder.home(), &[&lines]);
    cfg.push_str("[http]\nallowed_origins = [\"http://app.example:*\"]\n");
    let server = HttpServer::start(builder, &cfg, &[]);
    let bearer = format!("Bearer {token}");
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":PROTOCOL,"capabilities":{},"clientInfo":{"name":"raw","version":"0"}}})
    .to_string();
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut h = vec![
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
            ("Authorization", bearer.as_str()),
        ];
        h.extend_from_slice(extra);
        server.request("POST", "/mcp", &h, &init)
    };
    let foreign = with(&[("Origin", "https://evil.example")]);
    assert_eq!(foreign.status, 403, "{foreign:?}");
    let rebinding = with(&[("Host", "evil.example")]);
    assert_eq!(rebinding.status, 421, "{rebinding:?}");
    let rebinding_with_port = with(&[("Host", "evil.example:80")]);
    assert_eq!(rebinding_with_port.status, 421, "{rebinding_with_port:?}");
    // Userinfo has no place in Host (it would reach the metadata's URLs).
    let userinfo = format!("evil.example@127.0.0.1:{}", server.port);
    let h = [("Host", userinfo.as_str())];
    assert_eq!(
        server.request("POST", "/mcp", &h, &init).status,
        421,
        "{userinfo}"
    );
    // Each refusal is audited, with its reason.
    let reasons: Vec<String> = server
        .audit()
        .iter()
        .filter(|l| l["kind"] == "http_auth")
        .map(|l| l["decision"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(reasons[0].contains("Origin is not allowed"), "{reasons:?}");
    assert!(
        reasons[1].contains("Host evil.example is not a name"),
        "{reasons:?}"
    );
    assert!(reasons[3].contains("no usable Host"), "{reasons:?}");
    // What the lists allow still works.
    assert_eq!(with(&[("Origin", "http://app.example:5173")]).status, 200);
    assert_eq!(with(&[("Host", "localhost")]).status, 200);
    assert_eq!(with(&[]).status, 200);
}

/// Large requests take room in a budget shared by all clients until
/// their answer is sent: 150 calls of 2 MiB one after the other, 300 MiB
/// in all, find room each time (a room not given back would leave the
/// 129th waiting, then refused with 503).
#[test]
fn large_requests_give_back_their_room_once_answered() {
    let (token, lines) = new_token("alice");
    let builder = Server::builder();
    let cfg = config(builder.home(), &[&lines]);
    let server = HttpServer::start(builder, &cfg, &[]);
    let mut mcp = Mcp::open(&server, Some(&token));
    let padding = "x".repeat(2 << 20);
    for i in 0..150 {
        let answer = mcp.call("no_such_tool", json!({ "padding": padding }));
        assert!(
            answer.to_string().contains("no_such_tool"),
            "call {i}: {answer}"
        );
    }
}

/// A refused request's connection is closed after the answer: a peer
/// refused again and again on one keep-alive connection would otherwise
/// hold it for ever, each refusal restarting its idle time.
#[test]
fn a_refused_request_closes_its_connection() {
    use std::io::{BufRead, BufReader, Read, Write};
    let (_token, lines) = new_token("alice");
    let builder = Server::builder();
    let cfg = config(builder.home(), &[&lines]);
    let server = HttpServer::start(builder, &cfg, &[]);
    let stream = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let request = format!(
        "GET /mcp HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAccept: text/event-stream\r\n\r\n",
        server.port
    );
    let mut reader = BufReader::new(stream);
    reader.get_mut().write_all(request.as_bytes()).unwrap();
    let mut head = String::new();
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
        head.push_str(&line);
        if line == "\r\n" || line.is_empty() {
            break;
        }
    }
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    // A second request on it gets no answer: the server closed it.
    let _ = reader.get_mut().write_all(request.as_bytes());
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
    assert!(
        rest.is_empty(),
        "answered again: {}",
        String::from_utf8_lossy(&rest)
    );
}

#[test]
fn binding_a_non_loopback_address_without_clients_is_refused_at_start() {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["--no-plugins", "--http", "0.0.0.0:0"])
        .env("HOME", home.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("token new") && stderr.contains("127.0.0.1"),
        "{stderr}"
    );
}

#[test]
fn a_client_restricted_to_commands_cannot_run_shell_lines() {
    let sshd = Sshd::start();
    let (token, lines) = new_token("ci");
    let lines = format!("{lines}commands = [[\"echo\", \"*\"]]\n");
    let builder = Server::builder();
    let cfg = config(builder.home(), &[&lines]);
    let server = HttpServer::start(builder, &cfg, &[]);
    let mut mcp = Mcp::open(&server, Some(&token));
    let answer = mcp.call("execute_command", with_password(&sshd, "echo hi"));
    assert!(is_error(&answer), "{answer}");
    let text = answer.to_string();
    assert!(text.contains("client ci"), "{text}");
    let denied = server.audit();
    assert!(
        denied.iter().any(|l| l["kind"] == "ssh_command"
            && l["client"] == "ci"
            && l["decision"]
                .as_str()
                .unwrap()
                .starts_with("denied: client ci")),
        "{denied:?}"
    );
}

#[test]
fn two_clients_cannot_see_reuse_close_or_interrupt_each_others_sessions_and_jobs() {
    let sshd = Sshd::start();
    let (token_a, lines_a) = new_token("alice");
    let (token_b, lines_b) = new_token("bob");
    let builder = Server::builder();
    let cfg = config(builder.home(), &[&lines_a, &lines_b]);
    let server = HttpServer::start(builder, &cfg, &[]);
    let sleeper = format!("sleep 300.{}", sshd.port());
    let _leftover = Leftovers::new(TEST_USER, &sleeper);

    let mut a = Mcp::open(&server, Some(&token_a));
    let ran = a.call(
        "execute_command",
        with_password(&sshd, "echo mcpssh-http-a"),
    );
    assert!(!is_error(&ran), "{ran}");
    let mut job = target(&sshd);
    job["command"] = json!(sleeper);
    let started = a.call("start_command", job);
    let id = started["result"]["structuredContent"]["job_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{started}"))
        .to_string();

    let mut b = Mcp::open(&server, Some(&token_b));
    let listed = b.call("list_sessions", json!({}));
    assert_eq!(
        listed["result"]["structuredContent"]["sessions"],
        json!([]),
        "{listed}"
    );
    let jobs = b.call("list_commands", json!({}));
    assert_eq!(
        jobs["result"]["structuredContent"]["jobs"],
        json!([]),
        "{jobs}"
    );
    assert!(is_error(
        &b.call("get_command_status", json!({"job_id": id}))
    ));
    assert!(is_error(
        &b.call("interrupt_command", json!({"job_id": id}))
    ));
    assert!(remote_running(&sleeper), "B stopped A's job");
    // Without credentials B has nothing to ride on: A's session is not its.
    let mut bare = target(&sshd);
    bare["command"] = json!("echo mcpssh-http-b");
    let reused = b.call("execute_command", bare);
    assert!(is_error(&reused), "B reused A's session: {reused}");
    let closed = b.call("close_session", target(&sshd));
    assert_eq!(
        closed["result"]["structuredContent"]["closed"], false,
        "{closed}"
    );
    let all = b.call("close_all_sessions", json!({}));
    assert_eq!(all["result"]["structuredContent"]["closed"], 0, "{all}");
    // Nor can B post into A's MCP session.
    let hijack = Mcp {
        server: &server,
        token: Some(token_b.clone()),
        session: a.session.clone(),
        next: 100,
    };
    let reply = hijack.post(&json!({"jsonrpc":"2.0","id":100,"method":"tools/list"}));
    assert_eq!(reply.status, 404, "{reply:?}");
    let audit = server.audit();
    assert!(
        audit.iter().any(|l| l["kind"] == "http_auth"
            && l["client"] == "bob"
            && l["decision"] == "denied: MCP session of another client, or none"),
        "{audit:?}"
    );

    let mine = a.call("list_sessions", json!({}));
    assert_eq!(
        mine["result"]["structuredContent"]["sessions"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "{mine}"
    );
    let stopped = a.call("interrupt_command", json!({"job_id": id}));
    assert_eq!(
        stopped["result"]["structuredContent"]["state"], "killed",
        "{stopped}"
    );

    let audit = server.audit();
    let by = |client: &str, kind: &str| {
        audit
            .iter()
            .filter(|l| l["client"] == client && l["kind"] == kind)
            .count()
    };
    assert!(by("alice", "ssh_command") >= 2, "{audit:?}");
    assert!(by("bob", "tool_call") >= 6, "{audit:?}");
    assert!(audit.iter().all(|l| l.get("client").is_some()), "{audit:?}");
}

#[test]
fn sigterm_stops_the_server_and_closes_its_ssh_sessions() {
    let sshd = Sshd::start();
    let builder = Server::builder();
    let cfg = config(builder.home(), &[]);
    let mut server = HttpServer::start(builder, &cfg, &[]);
    let mut mcp = Mcp::open(&server, None);
    let ran = mcp.call("execute_command", with_password(&sshd, "echo hi"));
    assert!(!is_error(&ran), "{ran}");
    let audit = server.audit();
    assert!(audit.iter().any(|l| l["client"] == "local"), "{audit:?}");
    let kill = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "still running:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}:\n{}", server.log());
    assert!(server.log().contains("closed=1"), "{}", server.log());
}

/// Sends `execute_command` with `command` as request `id`, drops the
/// connection after its first event, waits `wait`, and reconnects with
/// `Last-Event-ID`: the answer the resumed stream brings.
fn drop_and_resume(
    server: &HttpServer,
    mcp: &Mcp,
    sshd: &Sshd,
    id: u64,
    command: &str,
    wait: Duration,
) -> Value {
    let call = json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{
        "name":"execute_command", "arguments": with_password(sshd, command)}});
    let h = mcp.headers();
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let stream = server.send("POST", "/mcp", &h, &call.to_string());
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let event_id = loop {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "stream ended early"
        );
        if let Some(id) = line.trim().strip_prefix("id:") {
            break id.trim().to_string();
        }
    };
    drop(reader);
    std::thread::sleep(wait);
    let mut h = h.clone();
    h.retain(|(k, _)| *k != "Content-Type" && *k != "Accept");
    h.push(("Accept", "text/event-stream"));
    h.push(("Last-Event-ID", &event_id));
    let mut reader = BufReader::new(server.send("GET", "/mcp", &h, ""));
    loop {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "replay ended without the answer"
        );
        if let Some(m) = line.trim().strip_prefix("data:")
            && let Ok(m) = serde_json::from_str::<Value>(m.trim())
            && m["id"] == id
        {
            return m;
        }
    }
}

#[test]
fn a_dropped_event_stream_is_replayed_from_last_event_id_during_and_after_the_call() {
    let sshd = Sshd::start();
    let builder = Server::builder();
    let cfg = config(builder.home(), &[]);
    let server = HttpServer::start(builder, &cfg, &[]);
    let mcp = Mcp::open(&server, None);
    // Back while the command still runs: what it missed, then the rest.
    let during = drop_and_resume(
        &server,
        &mcp,
        &sshd,
        7,
        "sleep 3; echo mcpssh-http-during",
        Duration::from_secs(1),
    );
    assert!(
        during.to_string().contains("mcpssh-http-during"),
        "{during}"
    );
    // Back only after it answered: the answer was kept.
    let after = drop_and_resume(
        &server,
        &mcp,
        &sshd,
        8,
        "sleep 1; echo mcpssh-http-after",
        Duration::from_secs(3),
    );
    assert!(after.to_string().contains("mcpssh-http-after"), "{after}");
}

#[test]
fn an_http_session_idle_past_its_limit_is_dropped() {
    let builder = Server::builder();
    let cfg = config(builder.home(), &[]);
    let server = HttpServer::start(builder, &cfg, &["--http-session-idle", "1"]);
    let mcp = Mcp::open(&server, None);
    let list = json!({"jsonrpc":"2.0","id":1,"method":"tools/list"});
    assert_eq!(mcp.post(&list).status, 200);
    std::thread::sleep(Duration::from_millis(2500));
    let after = mcp.post(&list);
    assert_eq!(after.status, 404, "{after:?}");
}

#[test]
fn operator_key_sessions_are_shared_between_clients_only_when_configured() {
    let sshd = Sshd::start();
    for shared in [false, true] {
        let (token_a, lines_a) = new_token("alice");
        let (token_b, lines_b) = new_token("bob");
        let builder = Server::builder();
        // The operator's own default key: calls without credentials use it.
        std::fs::copy(sshd.client_key(), builder.home().join(".ssh/id_ed25519")).unwrap();
        let mut cfg = config(builder.home(), &[&lines_a, &lines_b]);
        cfg.push_str(&format!("[http]\nshared_operator_sessions = {shared}\n"));
        let server = HttpServer::start(builder, &cfg, &[]);
        let mut bare = target(&sshd);
        bare["command"] = json!("echo mcpssh-http-shared");
        let mut a = Mcp::open(&server, Some(&token_a));
        assert!(!is_error(&a.call("execute_command", bare.clone())));
        let mut b = Mcp::open(&server, Some(&token_b));
        let seen = b.call("list_sessions", json!({}));
        let seen = seen["result"]["structuredContent"]["sessions"]
            .as_array()
            .map(Vec::len);
        assert_eq!(seen, Some(usize::from(shared)), "shared = {shared}");
        assert!(!is_error(&b.call("execute_command", bare.clone())));
        let connects = server
            .log()
            .lines()
            .filter(|l| l.contains("ssh::manager") && l.contains(" connected"))
            .count();
        assert_eq!(
            connects,
            if shared { 1 } else { 2 },
            "shared = {shared}:\n{}",
            server.log()
        );
        // A password session stays its client's, shared or not.
        let own = b.call("execute_command", with_password(&sshd, "echo own"));
        assert!(!is_error(&own), "{own}");
        let mine = a.call("list_sessions", json!({}));
        let mine = mine["result"]["structuredContent"]["sessions"]
            .as_array()
            .map(Vec::len);
        assert_eq!(mine, Some(1), "shared = {shared}");
    }
}

#[test]
fn one_keep_alive_connection_carries_a_whole_session_of_calls() {
    let sshd = Sshd::start();
    let (token, lines) = new_token("alice");
    let builder = Server::builder();
    let cfg = config(builder.home(), &[&lines]);
    let server = HttpServer::start(builder, &cfg, &[]);
    let mut mcp = KeepAliveMcp::open(server.port, Some(&token));
    mcp.call("execute_command", &with_password(&sshd, "echo one"))
        .unwrap();
    let mut bare = target(&sshd);
    bare["command"] = json!("echo two");
    let two = mcp.call("execute_command", &bare).unwrap();
    assert_eq!(
        two["result"]["structuredContent"]["stdout"], "two\n",
        "{two}"
    );
    let listed = mcp.call("list_sessions", &json!({})).unwrap();
    assert_eq!(
        listed["result"]["structuredContent"]["sessions"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "{listed}"
    );
}

#[test]
fn a_shared_operator_session_keeps_no_clients_directory_or_variables_for_another() {
    let sshd = Sshd::start();
    let (token_a, lines_a) = new_token("alice");
    let (token_b, lines_b) = new_token("bob");
    let builder = Server::builder();
    std::fs::copy(sshd.client_key(), builder.home().join(".ssh/id_ed25519")).unwrap();
    let mut cfg = config(builder.home(), &[&lines_a, &lines_b]);
    cfg.push_str("[http]\nshared_operator_sessions = true\n");
    let server = HttpServer::start(builder, &cfg, &[]);
    let bare = |command: &str| {
        let mut args = target(&sshd);
        args["command"] = json!(command);
        args
    };
    let mut a = Mcp::open(&server, Some(&token_a));
    let set = a.call(
        "execute_command",
        bare("cd /tmp && export A_SECRET=alice-only"),
    );
    assert!(!is_error(&set), "{set}");
    let mut b = Mcp::open(&server, Some(&token_b));
    let seen = b.call("execute_command", bare("pwd; echo \"${A_SECRET-unset}\""));
    let out = seen["result"]["structuredContent"]["stdout"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        out.ends_with("\nunset\n") && !out.starts_with("/tmp"),
        "{seen}"
    );
}

#[test]
fn a_call_longer_than_the_idle_limit_keeps_its_session_and_gets_its_answer() {
    let sshd = Sshd::start();
    let builder = Server::builder();
    let cfg = config(builder.home(), &[]);
    let server = HttpServer::start(builder, &cfg, &["--http-session-idle", "1"]);
    let mut mcp = Mcp::open(&server, None);
    let long = mcp.call(
        "execute_command",
        with_password(&sshd, "sleep 3; echo long-done"),
    );
    assert_eq!(
        long["result"]["structuredContent"]["stdout"], "long-done\n",
        "{long}"
    );
    // The session was in use the whole time: it still answers.
    let list = json!({"jsonrpc":"2.0","id":9,"method":"tools/list"});
    assert_eq!(mcp.post(&list).status, 200);
}

#[test]
fn a_connection_that_never_finishes_its_headers_is_closed() {
    use std::io::{Read, Write};
    let builder = Server::builder();
    let cfg = config(builder.home(), &[]);
    let server = HttpServer::start(builder, &cfg, &[]);
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    tcp.write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    // The server closes it (after its header timeout) rather than waiting.
    let _ = tcp.read_to_end(&mut rest);
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "held for {:?}",
        started.elapsed()
    );
}

#[test]
fn an_http_client_may_not_name_key_files_on_the_server_unless_allowed() {
    let sshd = Sshd::start();
    for allowed in [false, true] {
        let (token, lines) = new_token("alice");
        let lines = if allowed {
            format!("{lines}key_files = true\n")
        } else {
            lines
        };
        let builder = Server::builder();
        let cfg = config(builder.home(), &[&lines]);
        let server = HttpServer::start(builder, &cfg, &[]);
        let mut mcp = Mcp::open(&server, Some(&token));
        let mut args = target(&sshd);
        args["key_filename"] = json!(sshd.client_key());
        args["command"] = json!("echo via-key");
        let res = mcp.call("execute_command", args);
        if allowed {
            assert_eq!(
                res["result"]["structuredContent"]["stdout"], "via-key\n",
                "{res}"
            );
        } else {
            assert!(is_error(&res), "{res}");
            assert!(res.to_string().contains("key_files = true"), "{res}");
        }
    }
}
