//! Test fixture: one tool, `run_argv`, that hands an argv to the host's
//! `exec-argv` unchanged and returns the program's output byte for byte,
//! so a test can check that every word reached the program exactly as the
//! grant matched it, whatever the account's login shell.

use mcp_ssh_guest::{Deserialize, JsonSchema, Output, Target, Tool, export_tools, json, ssh};

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
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

    fn call(a: Args) -> Output {
        let target = Target::new(a.host, Some(a.username), Some(a.port))
            .with_credentials(a.password, None, None);
        let request = ssh::ArgvRequest {
            argv: a.argv,
            timeout_ms: Some(20_000),
            max_output_bytes: Some(65536),
        };
        match ssh::exec_argv(&target, &request) {
            Ok(out) => {
                Output::text(String::from_utf8_lossy(&out.stdout.head)).with_structured(json!({
                    "stdout": out.stdout.head,
                    "stderr": String::from_utf8_lossy(&out.stderr.head),
                    "exit_status": out.exit_status,
                    "timed_out": out.timed_out,
                }))
            }
            Err(e) => e.into(),
        }
    }
}

export_tools!(RunArgv);
