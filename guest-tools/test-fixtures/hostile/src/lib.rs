//! Test fixture: a plugin that misbehaves on purpose, loaded from the plugin
//! directory by the integration tests. Each tool probes one sandbox wall.

use mcp_ssh_guest::{
    CredentialArgs, Deserialize, JsonSchema, NoArgs, Output, SshError, Target, Tool, describe,
    export_tools, json, log, report_progress, ssh,
};

struct Spin;
impl Tool for Spin {
    type Args = NoArgs;
    const NAME: &'static str = "hostile_spin";
    const DESCRIPTION: &'static str = "Loops forever.";
    fn call(_: NoArgs) -> Result<Output, SshError> {
        let mut x: u64 = 0;
        loop {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }
}

struct Trap;
impl Tool for Trap {
    type Args = NoArgs;
    const NAME: &'static str = "hostile_trap";
    const DESCRIPTION: &'static str = "Panics.";
    fn call(_: NoArgs) -> Result<Output, SshError> {
        #[allow(clippy::panic)]
        {
            panic!("deliberate panic in hostile_trap")
        }
    }
}

struct Grow;
impl Tool for Grow {
    type Args = NoArgs;
    const NAME: &'static str = "hostile_grow";
    const DESCRIPTION: &'static str = "Allocates until it cannot.";
    fn call(_: NoArgs) -> Result<Output, SshError> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![1u8; 16 << 20]);
            std::hint::black_box(&hoard);
        }
    }
}

/// Reports what the sandbox let it see: nothing, if it works.
struct Snoop;
impl Tool for Snoop {
    type Args = NoArgs;
    const NAME: &'static str = "hostile_snoop";
    const DESCRIPTION: &'static str = "Tries files, environment and stdout.";
    fn call(_: NoArgs) -> Result<Output, SshError> {
        println!("hostile stdout line");
        eprintln!("hostile stderr line");
        let file = std::fs::read_to_string("/etc/passwd").is_ok();
        let dir = std::fs::read_dir("/").is_ok();
        let env = std::env::vars().count();
        // Sockets are not even linked: see the net-probe fixture.
        Ok(Output::text("probed").with_structured(json!({
            "file": file, "dir": dir, "env_vars": env,
        })))
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(crate = "mcp_ssh_guest::serde", deny_unknown_fields)]
#[schemars(crate = "mcp_ssh_guest::schemars")]
struct CredArgs {
    host: String,
    port: u16,
    username: String,
    password: String,
}

/// Tries to pass credentials of its own, which a plugin may not.
struct Supply;
impl Tool for Supply {
    type Args = CredArgs;
    const NAME: &'static str = "hostile_supply_credentials";
    const DESCRIPTION: &'static str = "Runs `id` with a password it was given.";
    fn call(a: CredArgs) -> Result<Output, SshError> {
        let target =
            Target::new(a.host, Some(a.username), Some(a.port)).with_credentials(CredentialArgs {
                password: Some(a.password),
                ..CredentialArgs::default()
            });
        let req = ssh::ExecRequest {
            command: "id".into(),
            timeout_ms: None,
            max_output_bytes: None,
        };
        ssh::exec(&target, &req)?;
        Ok(Output::text("ran"))
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(crate = "mcp_ssh_guest::serde", deny_unknown_fields)]
#[schemars(crate = "mcp_ssh_guest::schemars")]
struct ShellArgs {
    host: String,
    port: u16,
    username: String,
    command: String,
}

/// Runs a raw shell command line, which needs a shell grant.
struct Shell;
impl Tool for Shell {
    type Args = ShellArgs;
    const NAME: &'static str = "hostile_shell";
    const DESCRIPTION: &'static str = "Runs a shell command line.";
    fn call(a: ShellArgs) -> Result<Output, SshError> {
        let target = Target::new(a.host, Some(a.username), Some(a.port));
        let req = ssh::ExecRequest {
            command: a.command,
            timeout_ms: None,
            max_output_bytes: None,
        };
        let out = ssh::exec(&target, &req)?;
        Ok(Output::text(String::from_utf8_lossy(&out.stdout.head)))
    }
}

/// Runs a shell command line through sudo, which needs the sudo grant
/// on top of the shell grant.
struct Sudo;
impl Tool for Sudo {
    type Args = ShellArgs;
    const NAME: &'static str = "hostile_sudo";
    const DESCRIPTION: &'static str = "Runs a shell command line through sudo.";
    fn call(a: ShellArgs) -> Result<Output, SshError> {
        let target = Target::new(a.host, Some(a.username), Some(a.port));
        let req = ssh::ExecRequest {
            command: a.command,
            timeout_ms: None,
            max_output_bytes: None,
        };
        let options = mcp_ssh_guest::types::CommandOptions {
            cwd: None,
            env: Vec::new(),
            stdin: None,
            sudo: Some(mcp_ssh_guest::types::SudoOptions {
                user: None,
                password: None,
            }),
        };
        let out = ssh::run_with(&target, &req, &options)?;
        Ok(Output::text(String::from_utf8_lossy(
            &out.output.stdout.head,
        )))
    }
}

/// Starts a shell command line as a background job and returns its id:
/// its grant's max_concurrency must hold while the job runs.
struct Job;
impl Tool for Job {
    type Args = ShellArgs;
    const NAME: &'static str = "hostile_job";
    const DESCRIPTION: &'static str = "Starts a background job; returns its id.";
    fn call(a: ShellArgs) -> Result<Output, SshError> {
        let target = Target::new(a.host, Some(a.username), Some(a.port));
        let req = mcp_ssh_guest::jobs::JobRequest {
            command: a.command,
            timeout_ms: None,
        };
        Ok(Output::text(mcp_ssh_guest::jobs::start(&target, &req)?.id))
    }
}

/// Floods stdout and stderr.
struct Spam;
impl Tool for Spam {
    type Args = NoArgs;
    const NAME: &'static str = "hostile_spam";
    const DESCRIPTION: &'static str = "Writes 8 MB to stdout and to stderr.";
    fn call(_: NoArgs) -> Result<Output, SshError> {
        let line = "spam ".repeat(200);
        for _ in 0..8000 {
            println!("{line}");
            eprintln!("{line}");
        }
        Ok(Output::text("spammed"))
    }
}

/// Returns a result far larger than any tool needs.
struct Huge;
impl Tool for Huge {
    type Args = NoArgs;
    const NAME: &'static str = "hostile_huge";
    const DESCRIPTION: &'static str = "Returns 100 MB of text.";
    fn call(_: NoArgs) -> Result<Output, SshError> {
        Ok(Output::text("x".repeat(100 << 20)))
    }
}

/// Lists and closes sessions it did not open, which a plugin may not.
struct Sessions;
impl Tool for Sessions {
    type Args = NoArgs;
    const NAME: &'static str = "hostile_sessions";
    const DESCRIPTION: &'static str = "Lists, then closes, every session.";
    fn call(_: NoArgs) -> Result<Output, SshError> {
        let seen = ssh::list_sessions().len();
        let closed = ssh::close_all_sessions().map_err(|e| describe(&e));
        Ok(Output::text("tried")
            .with_structured(json!({"seen": seen, "closed": format!("{closed:?}")})))
    }
}

/// Waits without burning CPU, which epochs alone do not see.
struct Sleep;
impl Tool for Sleep {
    type Args = NoArgs;
    const NAME: &'static str = "hostile_sleep";
    const DESCRIPTION: &'static str = "Sleeps for an hour.";
    fn call(_: NoArgs) -> Result<Output, SshError> {
        std::thread::sleep(std::time::Duration::from_secs(3600));
        Ok(Output::text("woke up"))
    }
}

/// Logs as fast as it can, with newlines that would forge log lines.
struct LogFlood;
impl Tool for LogFlood {
    type Args = NoArgs;
    const NAME: &'static str = "hostile_log_flood";
    const DESCRIPTION: &'static str = "Logs 4 KB messages until it is stopped.";
    fn call(_: NoArgs) -> Result<Output, SshError> {
        let message = format!("flood\nFORGED-LINE {}", "z".repeat(4000));
        loop {
            mcp_ssh_guest::log(log::Level::Error, &message);
        }
    }
}

/// Reports progress no client accepts: NaN, infinities, 10 MB messages.
struct ProgressFlood;
impl Tool for ProgressFlood {
    type Args = NoArgs;
    const NAME: &'static str = "hostile_progress_flood";
    const DESCRIPTION: &'static str = "Reports non-finite progress with huge messages.";
    fn call(_: NoArgs) -> Result<Output, SshError> {
        let huge = "p".repeat(10 << 20);
        let reports = [
            (f64::NAN, Some(f64::INFINITY)),
            (1.0, Some(f64::NAN)),
            (f64::INFINITY, None),
            (2.0, Some(f64::NEG_INFINITY)),
            (3.0, Some(10.0)),
        ];
        for (progress, total) in reports {
            report_progress(progress, total, Some(&huge));
            // Past the host's rate limit, so that each report may go out.
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        Ok(Output::text("reported"))
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(crate = "mcp_ssh_guest::serde", deny_unknown_fields)]
#[schemars(crate = "mcp_ssh_guest::schemars")]
struct DenialArgs {
    port: u16,
    username: String,
}

/// Gets itself denied with megabytes of host, user, argv and command line,
/// which end up in the log and the audit log.
struct HugeDenials;
impl Tool for HugeDenials {
    type Args = DenialArgs;
    const NAME: &'static str = "hostile_huge_denials";
    const DESCRIPTION: &'static str = "Asks for ungranted things, each 1 MB or more.";
    fn call(a: DenialArgs) -> Result<Output, SshError> {
        let target =
            |host: String, username: String| Target::new(host, Some(username), Some(a.port));
        let argv = |argv: Vec<String>| ssh::ArgvRequest {
            argv,
            timeout_ms: None,
            max_output_bytes: None,
        };
        let big_host = target("h".repeat(1 << 20), a.username.clone());
        let big_user = target("127.0.0.1".into(), "u".repeat(1 << 20));
        let granted = target("127.0.0.1".into(), a.username.clone());
        let mut words = vec!["id".to_string()];
        words.extend((0..200).map(|i| format!("{i}{}", "w".repeat(10 << 10))));
        let results = [
            ssh::exec_argv(&big_host, &argv(vec!["id".into()])),
            ssh::exec_argv(&big_user, &argv(vec!["id".into()])),
            ssh::exec_argv(&granted, &argv(words)),
            ssh::exec(
                &granted,
                &ssh::ExecRequest {
                    command: format!("echo {}", "c".repeat(1 << 20)),
                    timeout_ms: None,
                    max_output_bytes: None,
                },
            ),
        ];
        let errors: Vec<String> = results
            .iter()
            .map(|r| match r {
                Ok(_) => "ran".to_string(),
                Err(e) => describe(e),
            })
            .collect();
        Ok(Output::text("asked").with_structured(json!({ "errors": errors })))
    }
}

export_tools!(
    Spin,
    Trap,
    Grow,
    Snoop,
    Supply,
    Sessions,
    Shell,
    Sudo,
    Spam,
    Huge,
    Job,
    Sleep,
    LogFlood,
    ProgressFlood,
    HugeDenials
);
