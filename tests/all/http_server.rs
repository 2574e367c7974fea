//! The binary serving streamable HTTP on a free loopback port, and a raw
//! HTTP/1.1 client for it over a `TcpStream` (no HTTP client crate): every
//! status and header the server sends is the test's to check. Used by
//! `http.rs` and `http_clients.rs`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::server::{BIN, Builder};

/// A token from `mcp-ssh-session token new NAME`: `(token, config lines)`.
pub fn new_token(name: &str) -> (String, String) {
    let out = Command::new(BIN)
        .args(["token", "new", name])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let token = text
        .lines()
        .find(|l| l.starts_with("mss_"))
        .unwrap_or_else(|| panic!("no token in {text}"))
        .to_string();
    let lines = text[text.find("[clients.").unwrap()..].to_string();
    (token, lines)
}

/// The binary serving HTTP on a free loopback port; killed on drop.
pub struct HttpServer {
    pub child: Child,
    pub port: u16,
    pub builder: Builder,
    log: PathBuf,
}

impl HttpServer {
    /// Starts `builder`'s server with `config` appended to its config file
    /// and `--http 127.0.0.1:0`, and waits for the port it prints.
    pub fn start(builder: Builder, config: &str, extra: &[&str]) -> Self {
        let config_path = builder.home().join("config.toml");
        let mut text = std::fs::read_to_string(&config_path).unwrap_or_default();
        text.push_str(config);
        std::fs::write(&config_path, text).unwrap();
        let (mut args, env) = builder.args_and_env();
        if !args.iter().any(|a| a == "--config") {
            args.extend(["--config".into(), config_path.display().to_string()]);
        }
        args.extend(["--http".into(), "127.0.0.1:0".into()]);
        args.extend(extra.iter().map(|a| a.to_string()));
        let log = builder.home().join("server.log");
        let child = Command::new(BIN)
            .args(args)
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("RUST_LOG")
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(180);
        let port = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(rest) = text
                .split("listening on ")
                .nth(1)
                .and_then(|r| r.split("://127.0.0.1:").nth(1))
            {
                break rest[..rest.find('/').unwrap()].parse().unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "the server did not start:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Self {
            child,
            port,
            builder,
            log,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The audit log's lines (the config below points it into the home).
    pub fn audit(&self) -> Vec<Value> {
        std::fs::read_to_string(self.builder.home().join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Sends one request; the connection is left open for the caller.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> TcpStream {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut head = format!("{method} {path} HTTP/1.1\r\n");
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            head.push_str(&format!("Host: 127.0.0.1:{}\r\n", self.port));
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        ));
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body.as_bytes()).unwrap();
        stream
    }

    /// One request, read to the end.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        let mut stream = self.send(method, path, headers, body);
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        Reply::parse(&String::from_utf8_lossy(&raw))
    }

    /// `body` POSTed to `/mcp` as an MCP client sends it, with `token` as
    /// the bearer.
    pub fn post_with_bearer(&self, token: &str, body: &str) -> Reply {
        let bearer = format!("Bearer {token}");
        let headers = [
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
            ("Authorization", bearer.as_str()),
        ];
        self.request("POST", "/mcp", &headers, body)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP response (a chunked body is left as sent: the tests look for
/// lines in it).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Reply {
    fn parse(raw: &str) -> Self {
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Self {
            status,
            head: head.to_string(),
            body: body.to_string(),
        }
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    /// The JSON-RPC message of `id` among the SSE `data:` lines or the
    /// JSON body.
    pub fn message(&self, id: u64) -> Option<Value> {
        self.body
            .lines()
            .map(|l| l.strip_prefix("data:").unwrap_or(l).trim())
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|m| m["id"] == id)
    }
}

/// An MCP session spoken in raw HTTP.
pub struct Mcp<'a> {
    pub server: &'a HttpServer,
    pub token: Option<String>,
    pub session: String,
    pub next: u64,
}

pub const PROTOCOL: &str = "2025-11-25";

impl<'a> Mcp<'a> {
    pub fn open(server: &'a HttpServer, token: Option<&str>) -> Self {
        let mut mcp = Self {
            server,
            token: token.map(String::from),
            session: String::new(),
            next: 1,
        };
        let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
            "protocolVersion":PROTOCOL,"capabilities":{},"clientInfo":{"name":"raw","version":"0"}}});
        let reply = mcp.post(&init);
        assert_eq!(reply.status, 200, "{reply:?}");
        mcp.session = reply.header("mcp-session-id").expect("no Mcp-Session-Id");
        let done = mcp.post(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}));
        assert_eq!(done.status, 202, "{done:?}");
        mcp
    }

    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![
            ("Content-Type", "application/json".to_string()),
            ("Accept", "application/json, text/event-stream".to_string()),
            ("MCP-Protocol-Version", PROTOCOL.to_string()),
        ];
        if !self.session.is_empty() {
            h.push(("Mcp-Session-Id", self.session.clone()));
        }
        if let Some(t) = &self.token {
            h.push(("Authorization", format!("Bearer {t}")));
        }
        h
    }

    pub fn post(&self, message: &Value) -> Reply {
        let h = self.headers();
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.server
            .request("POST", "/mcp", &h, &message.to_string())
    }

    /// `tools/call`; the JSON-RPC message answering it.
    pub fn call(&mut self, tool: &str, arguments: Value) -> Value {
        let id = self.next;
        self.next += 1;
        let reply = self.post(&json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
            "params":{"name":tool,"arguments":arguments}}));
        assert_eq!(reply.status, 200, "{tool}: {reply:?}");
        reply
            .message(id)
            .unwrap_or_else(|| panic!("{tool}: no answer in {reply:?}"))
    }
}

/// A keep-alive HTTP/1.1 connection, as real clients hold one: requests
/// one after the other, each response read to its end (by
/// `Content-Length` or the last chunk). For the benchmark, where a new
/// TCP connection per call would be measured too.
pub struct Conn {
    reader: std::io::BufReader<TcpStream>,
    port: u16,
}

impl Conn {
    pub fn open(port: u16) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        Self {
            reader: std::io::BufReader::new(stream),
            port,
        }
    }

    pub fn request(&mut self, method: &str, headers: &[(&str, String)], body: &str) -> Reply {
        use std::io::BufRead;
        let mut head = format!(
            "{method} /mcp HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\n",
            self.port,
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        head.push_str(body);
        self.reader.get_mut().write_all(head.as_bytes()).unwrap();
        let mut text = String::new();
        let mut line = String::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line).unwrap();
            text.push_str(&line);
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        let mut reply = Reply::parse(&text);
        let mut body = Vec::new();
        if let Some(len) = reply.header("content-length") {
            body.resize(len.parse().unwrap(), 0);
            self.reader.read_exact(&mut body).unwrap();
        } else {
            loop {
                line.clear();
                self.reader.read_line(&mut line).unwrap();
                let size = usize::from_str_radix(line.trim(), 16).unwrap();
                let mut chunk = vec![0; size + 2];
                self.reader.read_exact(&mut chunk).unwrap();
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        }
        reply.body = String::from_utf8_lossy(&body).into_owned();
        reply
    }
}

/// An MCP session over one [`Conn`].
pub struct KeepAliveMcp {
    conn: Conn,
    headers: Vec<(&'static str, String)>,
    next: u64,
}

impl KeepAliveMcp {
    pub fn open(port: u16, token: Option<&str>) -> Self {
        let mut headers = vec![
            ("Content-Type", "application/json".to_string()),
            ("Accept", "application/json, text/event-stream".to_string()),
            ("MCP-Protocol-Version", PROTOCOL.to_string()),
        ];
        if let Some(t) = token {
            headers.push(("Authorization", format!("Bearer {t}")));
        }
        let mut conn = Conn::open(port);
        let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
            "protocolVersion":PROTOCOL,"capabilities":{},"clientInfo":{"name":"ka","version":"0"}}});
        let reply = conn.request("POST", &headers, &init.to_string());
        assert_eq!(reply.status, 200, "{reply:?}");
        headers.push(("Mcp-Session-Id", reply.header("mcp-session-id").unwrap()));
        let done = json!({"jsonrpc":"2.0","method":"notifications/initialized"});
        assert_eq!(
            conn.request("POST", &headers, &done.to_string()).status,
            202
        );
        Self {
            conn,
            headers,
            next: 1,
        }
    }

    /// `tools/call`; the answer, or why there is none.
    pub fn call(&mut self, tool: &str, arguments: &Value) -> Result<Value, String> {
        let id = self.next;
        self.next += 1;
        let call = json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
            "params":{"name":tool,"arguments":arguments}});
        let reply = self.conn.request("POST", &self.headers, &call.to_string());
        let answer = reply.message(id).ok_or_else(|| format!("{reply:?}"))?;
        if answer["result"]["isError"] == true || answer.get("error").is_some() {
            return Err(answer.to_string());
        }
        Ok(answer)
    }
}
