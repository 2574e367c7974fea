//! Test fixture: a plugin that misbehaves on purpose, loaded from the plugin
//! directory by the integration tests. Each tool probes one sandbox wall.

use mcp_ssh_guest::{
    Credentials, Deserialize, JsonSchema, NoArgs, Output, Target, Tool, describe, export_tools,
    json, ssh,
};

struct Spin;
impl Tool for Spin {
    type Args = NoArgs;
    const NAME: &'static str = "hostile_spin";
    const DESCRIPTION: &'static str = "Loops forever.";
    fn call(_: NoArgs) -> Output {
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
    fn call(_: NoArgs) -> Output {
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
    fn call(_: NoArgs) -> Output {
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
    const DESCRIPTION: &'static str = "Tries files, environment, sockets and stdout.";
    fn call(_: NoArgs) -> Output {
        println!("hostile stdout line");
        eprintln!("hostile stderr line");
        let file = std::fs::read_to_string("/etc/passwd").is_ok();
        let dir = std::fs::read_dir("/").is_ok();
        let env = std::env::vars().count();
        let socket = std::net::TcpStream::connect("127.0.0.1:22").is_ok();
        Output::text("probed").with_structured(json!({
            "file": file, "dir": dir, "env_vars": env, "socket": socket,
        }))
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
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
    fn call(a: CredArgs) -> Output {
        let target = Target {
            host: a.host,
            username: Some(a.username),
            port: Some(a.port),
            credentials: Some(Credentials {
                password: Some(a.password),
                key_file: None,
                passphrase: None,
            }),
        };
        let req = ssh::ExecRequest {
            command: "id".into(),
            timeout_ms: None,
            max_output_bytes: None,
        };
        match ssh::exec(&target, &req) {
            Ok(_) => Output::text("ran"),
            Err(e) => Output::error(describe(&e)),
        }
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
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
    fn call(a: ShellArgs) -> Output {
        let target = Target {
            host: a.host,
            username: Some(a.username),
            port: Some(a.port),
            credentials: None,
        };
        let req = ssh::ExecRequest {
            command: a.command,
            timeout_ms: None,
            max_output_bytes: None,
        };
        match ssh::exec(&target, &req) {
            Ok(out) => Output::text(String::from_utf8_lossy(&out.stdout.head)),
            Err(e) => Output::error(describe(&e)),
        }
    }
}

/// Starts a shell command line as a background job and returns its id:
/// its grant's max_concurrency must hold while the job runs.
struct Job;
impl Tool for Job {
    type Args = ShellArgs;
    const NAME: &'static str = "hostile_job";
    const DESCRIPTION: &'static str = "Starts a background job; returns its id.";
    fn call(a: ShellArgs) -> Output {
        let target = Target {
            host: a.host,
            username: Some(a.username),
            port: Some(a.port),
            credentials: None,
        };
        let req = mcp_ssh_guest::jobs::JobRequest {
            command: a.command,
            timeout_ms: None,
        };
        match mcp_ssh_guest::jobs::start(&target, &req) {
            Ok(job) => Output::text(job.id),
            Err(e) => Output::error(describe(&e)),
        }
    }
}

/// Floods stdout and stderr.
struct Spam;
impl Tool for Spam {
    type Args = NoArgs;
    const NAME: &'static str = "hostile_spam";
    const DESCRIPTION: &'static str = "Writes 8 MB to stdout and to stderr.";
    fn call(_: NoArgs) -> Output {
        let line = "spam ".repeat(200);
        for _ in 0..8000 {
            println!("{line}");
            eprintln!("{line}");
        }
        Output::text("spammed")
    }
}

/// Returns a result far larger than any tool needs.
struct Huge;
impl Tool for Huge {
    type Args = NoArgs;
    const NAME: &'static str = "hostile_huge";
    const DESCRIPTION: &'static str = "Returns 100 MB of text.";
    fn call(_: NoArgs) -> Output {
        Output::text("x".repeat(100 << 20))
    }
}

/// Lists and closes sessions it did not open, which a plugin may not.
struct Sessions;
impl Tool for Sessions {
    type Args = NoArgs;
    const NAME: &'static str = "hostile_sessions";
    const DESCRIPTION: &'static str = "Lists, then closes, every session.";
    fn call(_: NoArgs) -> Output {
        let seen = ssh::list_sessions().len();
        let closed = ssh::close_all_sessions().map_err(|e| describe(&e));
        Output::text("tried")
            .with_structured(json!({"seen": seen, "closed": format!("{closed:?}")}))
    }
}

export_tools!(
    Spin, Trap, Grow, Snoop, Supply, Sessions, Shell, Spam, Huge, Job
);
