//! The built-in session tools, with the seed's names, arguments and text
//! layout: `execute_command`, `list_sessions`, `close_session` and
//! `close_all_sessions`, and `reset_session`. Each is a thin translation between MCP arguments and
//! the host's `ssh` interface; the host owns connections, limits and policy.

use mcp_ssh_guest::{
    Annotations, CredentialArgs, Deserialize, JsonSchema, NoArgs, Output, RunArgs, SshError,
    Target, TargetArgs, Tool, Value, export_tools, fit, json, seconds_to_ms, ssh,
    stream_text_within,
};

#[derive(Deserialize, JsonSchema)]
#[serde(crate = "mcp_ssh_guest::serde", deny_unknown_fields)]
#[schemars(crate = "mcp_ssh_guest::schemars")]
struct ExecuteCommandArgs {
    #[serde(flatten)]
    target: TargetArgs,
    /// Command line to run, interpreted by the remote user's shell, in the
    /// session's working directory with its variables; where it `cd`s and
    /// what it exports are kept for the session's next commands.
    command: String,
    #[serde(flatten)]
    credentials: CredentialArgs,
    #[serde(flatten)]
    run: RunArgs,
    /// Seconds to wait for the command (more than 0). When it expires the
    /// output so far is returned, marked as timed out. Default set by the
    /// server (60 s).
    #[serde(default)]
    #[schemars(extend("exclusiveMinimum" = 0))]
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
        (opened on first use, then reused). The session remembers its working directory and \
        exported variables between calls, like a terminal. Returns the exit status, stdout and \
        stderr. A non-zero exit status is a normal result; connection, authentication and \
        host-key failures are errors.";

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
                },
                "cwd": {"type": ["string", "null"], "description": "the directory the command ended in, when known"},
                "notes": {"type": "array", "items": {"type": "string"}, "description": "what became of the session's state"}
            },
            "required": ["session", "exit_status", "exit_signal", "stdout", "stderr",
                         "stdout_truncated", "stderr_truncated", "duration_ms", "timed_out"]
        }))
    }

    fn call(a: ExecuteCommandArgs) -> Result<Output, SshError> {
        let request = ssh::ExecRequest {
            command: a.command,
            timeout_ms: seconds_to_ms(a.timeout),
            max_output_bytes: a.max_output_bytes,
        };
        let options = a.run.options()?;
        let run = ssh::run_with(&a.target.with(a.credentials), &request, &options)?;
        Ok(render_exec(&run))
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

fn render_exec(run: &ssh::CommandOutput) -> Output {
    let (out, remote_stopped) = (&run.output, run.remote_stopped);
    let (stdout, stdout_cut) = stream_text_within(&out.stdout, fit::JSON_BUDGET);
    let (stderr, stderr_cut) = stream_text_within(&out.stderr, fit::JSON_BUDGET);
    let mut notes = run.notes.clone();
    for (name, cut) in [("stdout", stdout_cut), ("stderr", stderr_cut)] {
        if cut {
            notes.push(format!(
                "{name} was cut in its middle to {} MiB as JSON so that the answer fits (control \
                 characters take 6 bytes each, bytes that are not UTF-8 3); lower \
                 max_output_bytes, or write the output to a file",
                fit::JSON_BUDGET >> 20
            ));
        }
    }
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
    for note in &notes {
        text.push_str(&format!("Note: {note}\n"));
    }
    text.push('\n');
    // The output is most of the answer: appended once, then moved into
    // the structured result rather than copied.
    text.reserve(stdout.len() + stderr.len() + 18);
    for (label, stream) in [("STDOUT", &stdout), ("STDERR", &stderr)] {
        if !stream.is_empty() {
            text.push_str(label);
            text.push_str(":\n");
            text.push_str(stream);
            text.push('\n');
        }
    }
    let mut structured = json!({
        "session": out.session,
        "exit_status": out.exit_status,
        "exit_signal": out.exit_signal,
        "stdout_truncated": out.stdout.truncated || stdout_cut,
        "stderr_truncated": out.stderr.truncated || stderr_cut,
        "stdout_bytes": out.stdout.total_bytes,
        "stderr_bytes": out.stderr.total_bytes,
        "duration_ms": out.duration_ms,
        "timed_out": out.timed_out,
        "cancelled": out.cancelled,
        "remote_stopped": remote_stopped,
        "cwd": run.cwd,
        "notes": notes,
    });
    structured["stdout"] = Value::String(stdout);
    structured["stderr"] = Value::String(stderr);
    Output::text(text).with_structured(structured)
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
                            "idle_ms": {"type": "integer"},
                            "cwd": {"type": ["string", "null"], "description": "its working directory; null: the login directory"},
                            "variables": {"type": "integer", "description": "how many variables its commands exported or unset"}
                        },
                        "required": ["session", "username", "host", "port"]
                    }
                }
            },
            "required": ["sessions"]
        }))
    }

    fn call(_: NoArgs) -> Result<Output, SshError> {
        let sessions = ssh::list_sessions();
        let states = ssh::session_states();
        let state = |key: &str| states.iter().find(|s| s.key == key);
        let text = if sessions.is_empty() {
            "No active SSH sessions".to_string()
        } else {
            let lines: Vec<String> = sessions
                .iter()
                .map(|s| match state(&s.key).and_then(|st| st.cwd.as_deref()) {
                    Some(cwd) => format!("- {} (cwd: {cwd})", s.key),
                    None => format!("- {}", s.key),
                })
                .collect();
            format!("Active SSH Sessions:\n{}", lines.join("\n"))
        };
        let list: Vec<Value> = sessions
            .iter()
            .map(|s| {
                let st = state(&s.key);
                json!({
                    "session": s.key,
                    "username": s.username,
                    "host": s.host,
                    "port": s.port,
                    "active_commands": s.active_commands,
                    "age_ms": s.age_ms,
                    "idle_ms": s.idle_ms,
                    "cwd": st.and_then(|st| st.cwd.clone()),
                    "variables": st.map_or(0, |st| st.variables),
                })
            })
            .collect();
        Ok(Output::text(text).with_structured(json!({ "sessions": list })))
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(crate = "mcp_ssh_guest::serde", deny_unknown_fields)]
#[schemars(crate = "mcp_ssh_guest::schemars")]
struct CloseSessionArgs {
    #[serde(flatten)]
    target: TargetArgs,
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

    fn call(a: CloseSessionArgs) -> Result<Output, SshError> {
        let target = Target::from(a.target);
        let key = ssh::describe_target(&target)?;
        let closed = ssh::close_session(&target)?;
        let text = if closed {
            format!("Closed session: {key}")
        } else {
            format!("No open session: {key}")
        };
        Ok(Output::text(text).with_structured(json!({"session": key, "closed": closed})))
    }
}

struct ResetSession;

impl Tool for ResetSession {
    type Args = CloseSessionArgs;
    const NAME: &'static str = "reset_session";
    const DESCRIPTION: &'static str = "Return the SSH session to username@host:port to its login \
        state: the next command starts in the login directory without the variables earlier \
        commands exported. The connection stays open.";

    fn annotations() -> Option<Annotations> {
        Annotations::changes("Reset SSH session state", false, true, true)
    }

    fn output_schema() -> Option<Value> {
        Some(json!({
            "type": "object",
            "properties": {
                "session": {"type": "string"},
                "reset": {"type": "boolean", "description": "whether there was state to forget"}
            },
            "required": ["session", "reset"]
        }))
    }

    fn call(a: CloseSessionArgs) -> Result<Output, SshError> {
        let target = Target::from(a.target);
        let key = ssh::describe_target(&target)?;
        let reset = ssh::reset_session(&target)?;
        let text = if reset {
            format!("Reset session: {key}: the next command starts in the login state")
        } else {
            format!("Session {key} was already in the login state")
        };
        Ok(Output::text(text).with_structured(json!({"session": key, "reset": reset})))
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

    fn call(_: NoArgs) -> Result<Output, SshError> {
        let n = ssh::close_all_sessions()?;
        Ok(Output::text(format!("All SSH sessions closed ({n})"))
            .with_structured(json!({ "closed": n })))
    }
}

export_tools!(
    ExecuteCommand,
    ListSessions,
    CloseSession,
    ResetSession,
    CloseAllSessions
);
