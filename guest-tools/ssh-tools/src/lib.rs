//! The built-in session tools, with the seed's names, arguments and text
//! layout: `execute_command`, `list_sessions`, `close_session` and
//! `close_all_sessions`. Each is a thin translation between MCP arguments and
//! the host's `ssh` interface; the host owns connections, limits and policy.

use mcp_ssh_guest::{
    Annotations, Deserialize, JsonSchema, NoArgs, Output, Target, Tool, Value, export_tools, json,
    seconds_to_ms, ssh, stream_text,
};

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ExecuteCommandArgs {
    /// Host name, IP address, or an alias from the server's ~/.ssh/config
    /// (its HostName, User, Port, IdentityFile, ProxyJump... apply).
    host: String,
    /// User to log in as. Default: ssh_config's User for the host, else
    /// the local user name, as with `ssh`.
    #[serde(default)]
    username: Option<String>,
    /// Command line to run, interpreted by the remote user's shell. Stdin is
    /// closed, so commands that read it see end-of-file at once.
    command: String,
    /// Password for password authentication. Omit to reuse the open session,
    /// or to use ssh-agent and the default keys.
    #[serde(default)]
    password: Option<String>,
    /// Path of a private key file on the machine running this server.
    #[serde(default)]
    key_filename: Option<String>,
    /// Passphrase of an encrypted `key_filename`.
    #[serde(default)]
    passphrase: Option<String>,
    /// SSH port. Default: ssh_config's Port for the host, else 22.
    #[serde(default)]
    #[schemars(range(min = 1, max = 65535))]
    port: Option<u16>,
    /// Seconds to wait for the command. When it expires the output so far is
    /// returned, marked as timed out. Default set by the server (60 s).
    #[serde(default)]
    #[schemars(range(min = 0))]
    timeout: Option<f64>,
    /// Bytes kept of each of stdout and stderr; beyond it the head and tail
    /// are kept with a notice of how much was left out. Default set by the
    /// server (1 MiB).
    #[serde(default)]
    #[schemars(range(min = 0))]
    max_output_bytes: Option<u64>,
}

struct ExecuteCommand;

impl Tool for ExecuteCommand {
    type Args = ExecuteCommandArgs;
    const NAME: &'static str = "execute_command";
    const DESCRIPTION: &'static str = "Run a command on an SSH host over a persistent session \
        (opened on first use, then reused). Returns the exit status, stdout and stderr. A non-zero \
        exit status is a normal result; connection, authentication and host-key failures are errors.";

    fn annotations() -> Option<Annotations> {
        Annotations::changes("Execute SSH command", true, false, true)
    }

    fn output_schema() -> Option<Value> {
        let stream_flag = json!({"type": "boolean"});
        Some(json!({
            "type": "object",
            "properties": {
                "session": {"type": "string", "description": "username@host:port, or alias (username@host:port)"},
                "exit_status": {"type": ["integer", "null"]},
                "exit_signal": {"type": ["string", "null"]},
                "stdout": {"type": "string"},
                "stderr": {"type": "string"},
                "stdout_truncated": stream_flag,
                "stderr_truncated": stream_flag,
                "stdout_bytes": {"type": "integer", "description": "total bytes the command wrote"},
                "stderr_bytes": {"type": "integer", "description": "total bytes the command wrote"},
                "duration_ms": {"type": "integer"},
                "timed_out": {"type": "boolean"},
                "cancelled": {"type": "boolean"},
                "remote_stopped": {
                    "type": ["boolean", "null"],
                    "description": "after a timeout or cancel: true when the command and its children are verifiably gone, false when something survived, null when it could not be verified"
                }
            },
            "required": ["session", "exit_status", "exit_signal", "stdout", "stderr",
                         "stdout_truncated", "stderr_truncated", "duration_ms", "timed_out"]
        }))
    }

    fn call(a: ExecuteCommandArgs) -> Output {
        let target = Target::new(a.host, a.username, a.port).with_credentials(
            a.password,
            a.key_filename,
            a.passphrase,
        );
        let request = ssh::ExecRequest {
            command: a.command,
            timeout_ms: seconds_to_ms(a.timeout),
            max_output_bytes: a.max_output_bytes,
        };
        match ssh::run(&target, &request) {
            Ok(run) => render_exec(&run.output, run.remote_stopped),
            Err(e) => e.into(),
        }
    }
}

/// What the text says of a stop: "stopped" only when the host verified it.
fn stop_note(remote_stopped: Option<bool>) -> &'static str {
    match remote_stopped {
        Some(true) => "the command and its children were stopped (verified)",
        Some(false) => "WARNING: a process of the command survived the stop (KILL did not end it)",
        None => "WARNING: the command was signalled, but whether it stopped could not be verified",
    }
}

fn render_exec(out: &ssh::ExecOutput, remote_stopped: Option<bool>) -> Output {
    let stdout = stream_text(&out.stdout);
    let stderr = stream_text(&out.stderr);
    let mut text = match (out.exit_status, &out.exit_signal) {
        (Some(code), _) => format!("Exit Status: {code}\n"),
        (None, Some(sig)) => format!("Exit Status: none (killed by signal {sig})\n"),
        (None, None) => "Exit Status: none\n".to_string(),
    };
    if out.timed_out {
        text.push_str(&format!(
            "Timed out after {:.1} s: {}; the output so far follows.\n",
            out.duration_ms as f64 / 1000.0,
            stop_note(remote_stopped)
        ));
    }
    if out.cancelled {
        text.push_str(&format!(
            "Cancelled: {}; the output so far follows.\n",
            stop_note(remote_stopped)
        ));
    }
    text.push('\n');
    if !stdout.is_empty() {
        text.push_str(&format!("STDOUT:\n{stdout}\n"));
    }
    if !stderr.is_empty() {
        text.push_str(&format!("STDERR:\n{stderr}\n"));
    }
    Output::text(text).with_structured(json!({
        "session": out.session,
        "exit_status": out.exit_status,
        "exit_signal": out.exit_signal,
        "stdout": stdout,
        "stderr": stderr,
        "stdout_truncated": out.stdout.truncated,
        "stderr_truncated": out.stderr.truncated,
        "stdout_bytes": out.stdout.total_bytes,
        "stderr_bytes": out.stderr.total_bytes,
        "duration_ms": out.duration_ms,
        "timed_out": out.timed_out,
        "cancelled": out.cancelled,
        "remote_stopped": remote_stopped,
    }))
}

struct ListSessions;

impl Tool for ListSessions {
    type Args = NoArgs;
    const NAME: &'static str = "list_sessions";
    const DESCRIPTION: &'static str =
        "List the open persistent SSH sessions, as username@host:port.";

    fn annotations() -> Option<Annotations> {
        Annotations::read_only("List SSH sessions")
    }

    fn output_schema() -> Option<Value> {
        Some(json!({
            "type": "object",
            "properties": {
                "sessions": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "session": {"type": "string"},
                            "username": {"type": "string"},
                            "host": {"type": "string"},
                            "port": {"type": "integer"},
                            "active_commands": {"type": "integer"},
                            "age_ms": {"type": "integer"},
                            "idle_ms": {"type": "integer"}
                        },
                        "required": ["session", "username", "host", "port"]
                    }
                }
            },
            "required": ["sessions"]
        }))
    }

    fn call(_: NoArgs) -> Output {
        let sessions = ssh::list_sessions();
        let text = if sessions.is_empty() {
            "No active SSH sessions".to_string()
        } else {
            let lines: Vec<String> = sessions.iter().map(|s| format!("- {}", s.key)).collect();
            format!("Active SSH Sessions:\n{}", lines.join("\n"))
        };
        let list: Vec<Value> = sessions
            .iter()
            .map(|s| {
                json!({
                    "session": s.key,
                    "username": s.username,
                    "host": s.host,
                    "port": s.port,
                    "active_commands": s.active_commands,
                    "age_ms": s.age_ms,
                    "idle_ms": s.idle_ms,
                })
            })
            .collect();
        Output::text(text).with_structured(json!({ "sessions": list }))
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CloseSessionArgs {
    /// Host name, IP address or ssh_config alias the session was opened to.
    host: String,
    /// User the session logged in as. Default: as for execute_command
    /// (ssh_config's User, else the local user name).
    #[serde(default)]
    username: Option<String>,
    /// SSH port. Default: ssh_config's Port for the host, else 22.
    #[serde(default)]
    #[schemars(range(min = 1, max = 65535))]
    port: Option<u16>,
}

struct CloseSession;

impl Tool for CloseSession {
    type Args = CloseSessionArgs;
    const NAME: &'static str = "close_session";
    const DESCRIPTION: &'static str = "Close the persistent SSH session to username@host:port. \
        Commands still running on it finish first.";

    fn annotations() -> Option<Annotations> {
        Annotations::changes("Close SSH session", false, true, false)
    }

    fn output_schema() -> Option<Value> {
        Some(json!({
            "type": "object",
            "properties": {
                "session": {"type": "string"},
                "closed": {"type": "boolean", "description": "whether a session was open"}
            },
            "required": ["session", "closed"]
        }))
    }

    fn call(a: CloseSessionArgs) -> Output {
        let target = Target::new(a.host, a.username, a.port);
        let key = match ssh::describe_target(&target) {
            Ok(key) => key,
            Err(e) => return e.into(),
        };
        match ssh::close_session(&target) {
            Ok(closed) => {
                let text = if closed {
                    format!("Closed session: {key}")
                } else {
                    format!("No open session: {key}")
                };
                Output::text(text).with_structured(json!({"session": key, "closed": closed}))
            }
            Err(e) => e.into(),
        }
    }
}

struct CloseAllSessions;

impl Tool for CloseAllSessions {
    type Args = NoArgs;
    const NAME: &'static str = "close_all_sessions";
    const DESCRIPTION: &'static str = "Close every persistent SSH session.";

    fn annotations() -> Option<Annotations> {
        Annotations::changes("Close all SSH sessions", false, true, false)
    }

    fn output_schema() -> Option<Value> {
        Some(json!({
            "type": "object",
            "properties": {"closed": {"type": "integer"}},
            "required": ["closed"]
        }))
    }

    fn call(_: NoArgs) -> Output {
        match ssh::close_all_sessions() {
            Ok(n) => Output::text(format!("All SSH sessions closed ({n})"))
                .with_structured(json!({ "closed": n })),
            Err(e) => e.into(),
        }
    }
}

export_tools!(ExecuteCommand, ListSessions, CloseSession, CloseAllSessions);
