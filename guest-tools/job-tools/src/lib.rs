//! The built-in background-job tools: commands that outlive one call.
//! `start_command` returns a job id at once; the others read, page,
//! stop and list jobs. The host keeps each job's output in a bounded ring
//! and reports jobs whose connection died as `lost`.

use mcp_ssh_guest::jobs::{self, JobInfo, JobState, OutputStream};
use mcp_ssh_guest::{
    Annotations, CredentialArgs, Deserialize, JsonSchema, NoArgs, Output, RunArgs, SshError,
    TargetArgs, Tool, Value, decode_lossy, export_tools, json, seconds_to_ms,
};

fn state_name(s: JobState) -> &'static str {
    match s {
        JobState::Running => "running",
        JobState::Exited => "exited",
        JobState::Killed => "killed",
        JobState::Lost => "lost",
    }
}

fn job_json(j: &JobInfo) -> Value {
    json!({
        "job_id": j.id,
        "session": j.session,
        "command": j.command,
        "state": state_name(j.state),
        "exit_status": j.exit_status,
        "exit_signal": j.exit_signal,
        "duration_ms": j.duration_ms,
        "stdout_bytes": j.stdout_bytes,
        "stderr_bytes": j.stderr_bytes,
        "remote_stopped": j.remote_stopped,
    })
}

fn job_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "job_id": {"type": "string"},
            "session": {"type": "string"},
            "command": {"type": "string"},
            "state": {"enum": ["running", "exited", "killed", "lost"]},
            "exit_status": {"type": ["integer", "null"]},
            "exit_signal": {"type": ["string", "null"]},
            "duration_ms": {"type": "integer"},
            "stdout_bytes": {"type": "integer"},
            "stderr_bytes": {"type": "integer"},
            "remote_stopped": {"type": ["boolean", "null"]}
        },
        "required": ["job_id", "session", "command", "state", "duration_ms"]
    })
}

fn job_line(j: &JobInfo) -> String {
    let mut s = format!(
        "{} [{}] on {}: {}",
        j.id,
        state_name(j.state),
        j.session,
        j.command
    );
    match (j.exit_status, &j.exit_signal) {
        (Some(code), _) => s.push_str(&format!(" (exit status {code})")),
        (None, Some(sig)) => s.push_str(&format!(" (signal {sig})")),
        _ => {}
    }
    s
}

fn describe_job(j: &JobInfo) -> String {
    let mut s = format!(
        "Job {}: {}\nSession: {}\nCommand: {}\nDuration: {:.1} s\nOutput: {} bytes on stdout, {} on stderr",
        j.id,
        state_name(j.state),
        j.session,
        j.command,
        j.duration_ms as f64 / 1000.0,
        j.stdout_bytes,
        j.stderr_bytes
    );
    if let Some(code) = j.exit_status {
        s.push_str(&format!("\nExit Status: {code}"));
    }
    if let Some(sig) = &j.exit_signal {
        s.push_str(&format!("\nExit Signal: {sig}"));
    }
    match (j.state, j.remote_stopped) {
        (JobState::Killed, Some(true)) => {
            s.push_str("\nThe command and its children were stopped (verified).")
        }
        (JobState::Killed, _) => s.push_str("\nWarning: could not verify the command stopped."),
        (JobState::Lost, _) => s.push_str(
            "\nThe connection was lost while it ran: whether it finished is unknown. \
             The output it sent until then is kept.",
        ),
        _ => {}
    }
    s
}

fn job_output(j: JobInfo) -> Output {
    Output::text(describe_job(&j)).with_structured(job_json(&j))
}

#[derive(Deserialize, JsonSchema)]
#[serde(crate = "mcp_ssh_guest::serde", deny_unknown_fields)]
#[schemars(crate = "mcp_ssh_guest::schemars")]
struct StartArgs {
    #[serde(flatten)]
    target: TargetArgs,
    /// Command line to run in the background, interpreted by the remote
    /// user's shell, in the session's working directory with its
    /// variables. A job does not change them.
    command: String,
    #[serde(flatten)]
    credentials: CredentialArgs,
    #[serde(flatten)]
    run: RunArgs,
    /// Stop the job after this many seconds (more than 0). Default: no
    /// limit.
    #[serde(default)]
    #[schemars(extend("exclusiveMinimum" = 0))]
    timeout: Option<f64>,
}

struct StartCommand;

impl Tool for StartCommand {
    type Args = StartArgs;
    const NAME: &'static str = "start_command";
    const DESCRIPTION: &'static str = "Start a command in the background on an SSH host (same \
        session rules as execute_command) and return its job id at once. Follow it with \
        get_command_status and get_command_output; stop it with interrupt_command.";

    fn annotations() -> Option<Annotations> {
        Annotations::changes("Start background command", true, false, true)
    }

    fn output_schema() -> Option<Value> {
        Some(job_schema())
    }

    fn call(a: StartArgs) -> Result<Output, SshError> {
        let request = jobs::JobRequest {
            command: a.command,
            timeout_ms: seconds_to_ms(a.timeout),
        };
        let options = a.run.options()?;
        let j = jobs::start_with(&a.target.with(a.credentials), &request, &options)?;
        Ok(Output::text(format!(
            "Started {} on {}: {}\nUse get_command_status or get_command_output with job_id \"{}\".",
            j.id, j.session, j.command, j.id
        ))
        .with_structured(job_json(&j)))
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(crate = "mcp_ssh_guest::serde", deny_unknown_fields)]
#[schemars(crate = "mcp_ssh_guest::schemars")]
struct JobArgs {
    /// The id start_command returned.
    job_id: String,
}

struct GetStatus;

impl Tool for GetStatus {
    type Args = JobArgs;
    const NAME: &'static str = "get_command_status";
    const DESCRIPTION: &'static str = "State of a background job: running, exited, killed or \
        lost (its connection died), with exit status, duration and bytes of output so far.";

    fn annotations() -> Option<Annotations> {
        Annotations::read_only("Background command status")
    }

    fn output_schema() -> Option<Value> {
        Some(job_schema())
    }

    fn call(a: JobArgs) -> Result<Output, SshError> {
        Ok(job_output(jobs::status(&a.job_id)?))
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(crate = "mcp_ssh_guest::serde", rename_all = "lowercase")]
#[schemars(crate = "mcp_ssh_guest::schemars")]
enum StreamArg {
    Stdout,
    Stderr,
}

#[derive(Deserialize, JsonSchema)]
#[serde(crate = "mcp_ssh_guest::serde", deny_unknown_fields)]
#[schemars(crate = "mcp_ssh_guest::schemars")]
struct OutputArgs {
    /// The id start_command returned.
    job_id: String,
    /// Which stream to read (default stdout).
    #[serde(default)]
    stream: Option<StreamArg>,
    /// Byte offset to read from (default 0). Pass the previous call's
    /// next_offset to page on without re-reading.
    #[serde(default)]
    offset: Option<u64>,
    /// Most bytes to return (default 65536).
    #[serde(default)]
    #[schemars(range(min = 1, max = 4194304))]
    max_bytes: Option<u32>,
}

struct GetOutput;

impl Tool for GetOutput {
    type Args = OutputArgs;
    const NAME: &'static str = "get_command_output";
    const DESCRIPTION: &'static str = "Read a background job's stdout or stderr from a byte \
        offset. Returns the text and next_offset to continue from; `complete` once the job has \
        ended and everything was read. Old output beyond the server's buffer is dropped, and the \
        result says how many bytes were.";

    fn annotations() -> Option<Annotations> {
        Annotations::read_only("Background command output")
    }

    fn output_schema() -> Option<Value> {
        Some(json!({
            "type": "object",
            "properties": {
                "job_id": {"type": "string"},
                "stream": {"enum": ["stdout", "stderr"]},
                "data": {"type": "string"},
                "offset": {"type": "integer"},
                "next_offset": {"type": "integer"},
                "dropped": {"type": "integer"},
                "complete": {"type": "boolean"}
            },
            "required": ["job_id", "stream", "data", "offset", "next_offset", "dropped", "complete"]
        }))
    }

    fn call(a: OutputArgs) -> Result<Output, SshError> {
        let (which, name) = match a.stream {
            Some(StreamArg::Stderr) => (OutputStream::Stderr, "stderr"),
            _ => (OutputStream::Stdout, "stdout"),
        };
        let chunk = jobs::read(
            &a.job_id,
            which,
            a.offset.unwrap_or(0),
            a.max_bytes.unwrap_or(65536),
        )?;
        let data = decode_lossy(&chunk.data).into_owned();
        let mut text = String::new();
        if chunk.dropped > 0 {
            text.push_str(&format!(
                "[... {} earlier bytes were dropped from the buffer before they were read ...]\n",
                chunk.dropped
            ));
        }
        text.push_str(&data);
        if !data.is_empty() && !data.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!(
            "[{name} bytes {}..{}; {}]",
            chunk.offset,
            chunk.next_offset,
            if chunk.complete {
                "complete: the job ended and nothing follows".to_string()
            } else {
                format!("read on with offset {}", chunk.next_offset)
            }
        ));
        Ok(Output::text(text).with_structured(json!({
            "job_id": a.job_id,
            "stream": name,
            "data": data,
            "offset": chunk.offset,
            "next_offset": chunk.next_offset,
            "dropped": chunk.dropped,
            "complete": chunk.complete,
        })))
    }
}

struct Interrupt;

impl Tool for Interrupt {
    type Args = JobArgs;
    const NAME: &'static str = "interrupt_command";
    const DESCRIPTION: &'static str = "Stop a background job and its child processes (TERM, \
        then KILL after a grace period) and verify that nothing is left running.";

    fn annotations() -> Option<Annotations> {
        Annotations::changes("Interrupt background command", true, true, false)
    }

    fn output_schema() -> Option<Value> {
        Some(job_schema())
    }

    fn call(a: JobArgs) -> Result<Output, SshError> {
        Ok(job_output(jobs::interrupt(&a.job_id)?))
    }
}

struct ListCommands;

impl Tool for ListCommands {
    type Args = NoArgs;
    const NAME: &'static str = "list_commands";
    const DESCRIPTION: &'static str =
        "List background jobs: the running ones and the most recent finished ones.";

    fn annotations() -> Option<Annotations> {
        Annotations::read_only("List background commands")
    }

    fn output_schema() -> Option<Value> {
        Some(json!({
            "type": "object",
            "properties": {"jobs": {"type": "array", "items": job_schema()}},
            "required": ["jobs"]
        }))
    }

    fn call(_: NoArgs) -> Result<Output, SshError> {
        let all = jobs::list_jobs();
        let text = if all.is_empty() {
            "No background jobs".to_string()
        } else {
            let lines: Vec<String> = all.iter().map(|j| format!("- {}", job_line(j))).collect();
            format!("Background jobs:\n{}", lines.join("\n"))
        };
        let list: Vec<Value> = all.iter().map(job_json).collect();
        Ok(Output::text(text).with_structured(json!({ "jobs": list })))
    }
}

export_tools!(StartCommand, GetStatus, GetOutput, Interrupt, ListCommands);
