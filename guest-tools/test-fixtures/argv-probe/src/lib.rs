//! Test fixture: one tool, `run_argv`, that hands an argv to the host's
//! `exec-argv` unchanged and returns the program's output byte for byte,
//! so a test can check that every word reached the program exactly as the
//! grant matched it, whatever the account's login shell.

use mcp_ssh_guest::{
    CredentialArgs, Deserialize, JsonSchema, Output, SshError, Target, Tool, export_tools, json,
    ssh,
};

#[derive(Deserialize, JsonSchema)]
#[serde(crate = "mcp_ssh_guest::serde", deny_unknown_fields)]
#[schemars(crate = "mcp_ssh_guest::schemars")]
struct Args {
    host: String,
    port: u16,
    username: String,
    /// Needs `credentials = true` in the grant; otherwise an open session
    /// serves the call.
    #[serde(default)]
    password: Option<String>,
    argv: Vec<String>,
}

struct RunArgv;

impl Tool for RunArgv {
    type Args = Args;
    const NAME: &'static str = "run_argv";
    const DESCRIPTION: &'static str =
        "Runs argv through exec-argv; returns stdout and stderr as bytes.";

    fn call(a: Args) -> Result<Output, SshError> {
        let target =
            Target::new(a.host, Some(a.username), Some(a.port)).with_credentials(CredentialArgs {
                password: a.password,
                ..CredentialArgs::default()
            });
        let request = ssh::ArgvRequest {
            argv: a.argv,
            timeout_ms: Some(20_000),
            max_output_bytes: Some(65536),
        };
        let out = ssh::exec_argv(&target, &request)?;
        Ok(
            Output::text(String::from_utf8_lossy(&out.stdout.head)).with_structured(json!({
                "stdout": out.stdout.head,
                "stderr": String::from_utf8_lossy(&out.stderr.head),
                "exit_status": out.exit_status,
                "timed_out": out.timed_out,
            })),
        )
    }
}

export_tools!(RunArgv);
