//! The real `mcp-ssh-session` binary, spawned over stdio and driven by
//! rmcp's MCP client.
//!
//! Each server gets its own `HOME` (so `~/.ssh/config`, `known_hosts` and
//! keys are the test's), no system-wide ssh_config, no ssh-agent unless asked, and the shared
//! compile cache of this test run. Its stderr is kept for inspection.
//!
//! Also the guest components the tests install as plugins (fixtures and
//! the example), built from `guest-tools/` on first use. The benchmark
//! (`host/benches/perf.rs`) includes this file too.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::{RunningService, ServiceError};
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::sshd::{Sshd, TEST_USER};

#[path = "../../host/guest_build.rs"]
mod guest_build;

pub const BIN: &str = env!("CARGO_BIN_EXE_mcp-ssh-session");

/// The server binary spawned: [`BIN`], unless `MCP_SSH_SERVER_BIN` names
/// another build of it (the benchmark's profiling run uses the
/// `profiling` profile's, which keeps its symbols).
pub fn server_bin() -> PathBuf {
    std::env::var_os("MCP_SSH_SERVER_BIN").map_or_else(|| BIN.into(), PathBuf::from)
}

/// Every built-in tool, sorted by name.
pub const BUILT_IN_TOOLS: [&str; 16] = [
    "close_all_sessions",
    "close_session",
    "download_file",
    "edit_file",
    "execute_command",
    "get_command_output",
    "get_command_status",
    "interrupt_command",
    "list_commands",
    "list_directory",
    "list_sessions",
    "read_file",
    "reset_session",
    "start_command",
    "upload_file",
    "write_file",
];

/// The compile cache shared by every server of this test run.
pub fn shared_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache")
}

/// A guest component of `guest-tools/` by library name (`hostile_tools`,
/// `disk_usage`, `ssh_tools`).
///
/// The first call builds the whole guest workspace, as `host/build.rs`
/// builds the built-in components and into the same target dir (under the
/// one this test binary was built in), so the built-ins are not compiled
/// twice. Tests run in parallel: the others wait for that one build.
pub fn guest_wasm(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = manifest_dir.parent().unwrap_or(manifest_dir);
        let host_target = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .ok_or("CARGO_TARGET_TMPDIR has no parent")?;
        let dir = guest_build::guest_target_dir(host_target);
        guest_build::build(root, &dir, &[])?;
        Ok(dir)
    });
    match built {
        Ok(dir) => guest_build::wasm_path(dir, name),
        Err(e) => panic!("{e}"),
    }
}

/// Installs `wasm` as `name` in a plugin directory under the server's
/// home, with `manifest` beside it and `config` as the operator's config.
pub fn install_plugin(
    builder: Builder,
    wasm: &Path,
    name: &str,
    manifest: Option<&str>,
    config: &str,
) -> Builder {
    let dir = builder.home().join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(wasm, dir.join(format!("{name}.wasm"))).unwrap();
    if let Some(m) = manifest {
        std::fs::write(dir.join(format!("{name}.toml")), m).unwrap();
    }
    let config_path = builder.home().join("config.toml");
    std::fs::write(&config_path, config).unwrap();
    builder
        .arg("--plugins")
        .arg(dir.display().to_string())
        .arg("--config")
        .arg(config_path.display().to_string())
}

pub struct Builder {
    args: Vec<String>,
    env: Vec<(String, String)>,
    home: TempDir,
    netns: Option<String>,
}

impl Builder {
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs the server inside network namespace `ns`.
    pub fn netns(mut self, ns: &str) -> Self {
        self.netns = Some(ns.into());
        self
    }

    /// Writes the server's `~/.ssh/config`.
    pub fn ssh_config(self, text: &str) -> Self {
        std::fs::write(self.home.path().join(".ssh").join("config"), text).unwrap();
        self
    }

    /// The `HOME` the server will see.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// The server's arguments and environment, as [`Builder::command`]
    /// passes them: for clients that spawn the binary themselves
    /// (`clients.rs`).
    pub fn args_and_env(&self) -> (Vec<String>, Vec<(String, String)>) {
        let has = |flag: &str| self.args.iter().any(|a| a == flag);
        let mut args = Vec::new();
        // The machine's /etc/ssh/ssh_config (HashKnownHosts, ...) is not
        // the test's; tests of the system file name their own.
        if !has("--system-ssh-config") {
            args.extend(["--system-ssh-config".into(), "none".into()]);
        }
        if !has("--cache-dir") && !has("--no-cache") {
            args.extend(["--cache-dir".into(), shared_cache().display().to_string()]);
        }
        if !has("--plugins") {
            args.push("--no-plugins".into());
        }
        args.extend(self.args.iter().cloned());
        let mut env = vec![
            ("HOME".to_string(), self.home.path().display().to_string()),
            (
                "MCP_SSH_LOG".to_string(),
                "debug,russh=info,wasmtime=info,cranelift=info".to_string(),
            ),
        ];
        env.extend(self.env.iter().cloned());
        (args, env)
    }

    pub fn command(&self) -> tokio::process::Command {
        let bin = server_bin();
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = tokio::process::Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&bin);
                c
            }
            None => tokio::process::Command::new(&bin),
        };
        let (args, env) = self.args_and_env();
        // Removed before the test's own env, which may name an agent.
        cmd.args(args)
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("RUST_LOG")
            .envs(env);
        cmd
    }

    pub async fn spawn(self) -> Server {
        let log_path = self.home.path().join("server.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let (transport, _) = TokioChildProcess::builder(self.command())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let pid = transport.id().unwrap();
        let client = tokio::time::timeout(Duration::from_secs(60), ().serve(transport))
            .await
            .expect("initialize timed out")
            .unwrap_or_else(|e| {
                panic!(
                    "initialize failed: {e}\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                )
            });
        Server {
            client,
            home: self.home,
            log_path,
            pid,
        }
    }
}

pub struct Server {
    pub client: RunningService<RoleClient, ()>,
    home: TempDir,
    log_path: PathBuf,
    /// The server process (not a wrapper: tests read its `/proc` entry).
    pub pid: u32,
}

impl Server {
    pub fn builder() -> Builder {
        let home = tempfile::Builder::new()
            .prefix("mcpssh-home-")
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(home.path().join(".ssh")).unwrap();
        Builder {
            args: Vec::new(),
            env: Vec::new(),
            home,
            netns: None,
        }
    }

    pub async fn start() -> Self {
        Self::builder().spawn().await
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.home.path().join(".ssh").join("known_hosts")
    }

    /// A field of `/proc/PID/status` (`VmHWM`, `VmRSS`, ...), in its units.
    pub fn status_field(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/{}/status", self.pid))
    }

    /// The file the server's stderr goes to.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The server's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub async fn try_call(&self, tool: &str, args: Value) -> Result<CallToolResult, ServiceError> {
        let mut params = CallToolRequestParams::new(tool.to_string());
        if let Value::Object(map) = args {
            params = params.with_arguments(map);
        }
        tokio::time::timeout(Duration::from_secs(120), self.client.call_tool(params))
            .await
            .expect("tools/call did not answer in 120 s")
    }

    /// A call that must produce a tool result (failed or not).
    pub async fn call(&self, tool: &str, args: Value) -> CallToolResult {
        self.try_call(tool, args)
            .await
            .unwrap_or_else(|e| panic!("{tool} failed at the protocol level: {e}\n{}", self.log()))
    }

    /// `execute_command` with the fixture's key; must succeed as a tool.
    pub async fn exec(&self, sshd: &Sshd, command: &str) -> CallToolResult {
        let res = self.call("execute_command", exec_args(sshd, command)).await;
        assert_ne!(
            res.is_error,
            Some(true),
            "execute_command failed: {}",
            text(&res)
        );
        res
    }
}

/// Arguments for `execute_command` against `sshd` with its unencrypted key.
pub fn exec_args(sshd: &Sshd, command: &str) -> Value {
    json!({
        "host": "127.0.0.1",
        "port": sshd.port(),
        "username": TEST_USER,
        "key_filename": sshd.client_key(),
        "command": command,
    })
}

/// Arguments for `execute_command` against `sshd` with `password`.
pub fn password_args(sshd: &Sshd, password: &str, command: &str) -> Value {
    json!({
        "host": "127.0.0.1",
        "port": sshd.port(),
        "username": TEST_USER,
        "password": password,
        "command": command,
    })
}

/// Arguments with no credentials: only an open session (or the server's
/// agent and default keys) can serve them.
pub fn bare_args(sshd: &Sshd, command: &str) -> Value {
    json!({
        "host": "127.0.0.1",
        "port": sshd.port(),
        "username": TEST_USER,
        "command": command,
    })
}

/// All text content of a result.
pub fn text(res: &CallToolResult) -> String {
    res.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The text of a result that must not be a tool error.
pub fn succeeded(res: &CallToolResult) -> String {
    assert_ne!(res.is_error, Some(true), "tool failed: {}", text(res));
    text(res)
}

/// The `session` names of a `list_sessions` result.
pub fn session_names(res: &CallToolResult) -> Vec<String> {
    structured(res)["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["session"].as_str().unwrap().to_string())
        .collect()
}

/// The text of a result that must be a tool error (`isError: true`).
pub fn tool_error(res: &CallToolResult) -> String {
    assert_eq!(
        res.is_error,
        Some(true),
        "expected a tool error, got: {}",
        text(res)
    );
    text(res)
}

pub fn structured(res: &CallToolResult) -> &Value {
    res.structured_content
        .as_ref()
        .expect("no structuredContent")
}

pub fn stdout(res: &CallToolResult) -> String {
    structured(res)["stdout"].as_str().unwrap().to_string()
}

/// The `SSH_CONNECTION` client port of a session: same port, same TCP
/// connection.
pub async fn connection_port(server: &Server, sshd: &Sshd) -> String {
    let res = server
        .call("execute_command", bare_args(sshd, "echo $SSH_CONNECTION"))
        .await;
    assert_ne!(res.is_error, Some(true), "{}", text(&res));
    stdout(&res).split_whitespace().nth(1).unwrap().to_string()
}

/// Whether the test account runs a process whose command line is exactly
/// `cmd`: the sshd fixture runs on this machine, so pgrep sees its side.
pub fn remote_running(cmd: &str) -> bool {
    remote_running_as(TEST_USER, cmd)
}

/// Whether `user` runs a process whose command line is exactly `cmd`.
pub fn remote_running_as(user: &str, cmd: &str) -> bool {
    remote_count_as(user, cmd) > 0
}

/// How many processes of `user` have exactly the command line `cmd`.
pub fn remote_count_as(user: &str, cmd: &str) -> usize {
    let out = std::process::Command::new("pgrep")
        .args(["-u", user, "-x", "-f", cmd])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// Kills, when dropped, whatever `user` still runs as exactly `cmd`: a
/// test that fails must not leave its sleepers behind for the next run.
pub struct Leftovers {
    pub user: String,
    pub cmd: String,
}

impl Leftovers {
    pub fn new(user: &str, cmd: &str) -> Self {
        Self {
            user: user.into(),
            cmd: cmd.into(),
        }
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        let _ = std::process::Command::new("pkill")
            .args(["-KILL", "-u", &self.user, "-x", "-f", &self.cmd])
            .status();
    }
}

pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for `child` to exit; past `limit` it is killed and the test fails
/// with `what()`: a hang check, not a speed test.
pub fn exit_within(
    child: &mut std::process::Child,
    limit: Duration,
    what: impl FnOnce() -> String,
) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running after {limit:?}: {}", what());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The binary with piped stdio and nothing between the test and its
/// JSON-RPC stream: for cases rmcp's client would hide.
pub fn raw_server(home: &Path) -> std::process::Child {
    raw_server_logging_to(home, Stdio::null())
}

/// [`raw_server`] with its stderr (logging at trace) sent to `stderr`.
pub fn raw_server_logging_to(home: &Path, stderr: impl Into<Stdio>) -> std::process::Child {
    raw_server_with(home, &[], stderr)
}

/// [`raw_server_logging_to`] with `args` after the usual flags.
pub fn raw_server_with(
    home: &Path,
    args: &[&std::ffi::OsStr],
    stderr: impl Into<Stdio>,
) -> std::process::Child {
    std::process::Command::new(BIN)
        .args(["--no-plugins", "--cache-dir"])
        .arg(shared_cache())
        .arg("--known-hosts")
        .arg(home.join("kh"))
        .args(args)
        .env("HOME", home)
        .env("MCP_SSH_LOG", "trace")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap()
}

/// The answer to one `tools/call` with `params` on a raw server of its
/// own, read whole whatever its size (rmcp's client drops lines past 16
/// MiB).
pub fn raw_call_answer(params: Value) -> Value {
    let home = tempfile::tempdir().unwrap();
    let mut child = raw_server_with(home.path(), &[], Stdio::null());
    let (stdin, lines) = send_raw_call(&mut child, params);
    let mut answer = Value::Null;
    for line in lines {
        let msg: Value = serde_json::from_str(&line.unwrap()).unwrap();
        if msg["id"] == 2 {
            answer = msg;
            break;
        }
    }
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    answer
}

/// Starts a session on a raw server and sends one `tools/call` (id 2)
/// with `params`; returns its stdin, still open, and its stdout's lines.
pub fn send_raw_call(
    child: &mut std::process::Child,
    params: Value,
) -> (
    std::process::ChildStdin,
    std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
) {
    use std::io::{BufRead, Write};
    let mut stdin = child.stdin.take().unwrap();
    for msg in [
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}),
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":params}),
    ] {
        writeln!(stdin, "{msg}").unwrap();
    }
    let lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    (stdin, lines)
}

/// The `remote_stopped` field of an `execute_command` result that timed out
/// or was cancelled: `Some(true)` only when the stop was verified, `None`
/// when unknown (`null`). The field must be there.
pub fn remote_stopped(res: &CallToolResult) -> Option<bool> {
    let value = structured(res)
        .get("remote_stopped")
        .unwrap_or_else(|| panic!("no remote_stopped in the result: {}", text(res)));
    assert!(
        value.is_boolean() || value.is_null(),
        "remote_stopped is {value}"
    );
    value.as_bool()
}

/// Checks that a stopped command's result is honest: its text says the
/// command "was stopped" only when `remote_stopped` is true. Returns
/// `remote_stopped`.
pub fn honest_stop(res: &CallToolResult) -> Option<bool> {
    let stopped = remote_stopped(res);
    if stopped != Some(true) {
        assert!(
            !text(res).contains("was stopped"),
            "remote_stopped is {stopped:?} but the text claims the stop: {}",
            text(res)
        );
    }
    stopped
}
