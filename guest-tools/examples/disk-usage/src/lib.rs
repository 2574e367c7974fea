//! Example third-party tool: the disk usage of the filesystem holding a
//! path, as `df -P -k` prints it. It runs one fixed argv through
//! `exec-argv`, so its grant can name exactly that command.

use mcp_ssh_guest::{
    Deserialize, JsonSchema, Output, Target, Tool, export_tools, ssh, stream_text,
};

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Args {
    /// Hostname or IP address of the SSH server.
    host: String,
    /// User to log in as (an open session, ssh-agent or default keys).
    username: String,
    /// SSH port (default 22).
    #[serde(default)]
    port: Option<u16>,
    /// A path on the filesystem to report (default "/").
    #[serde(default)]
    path: Option<String>,
}

struct DiskUsage;

impl Tool for DiskUsage {
    type Args = Args;
    const NAME: &'static str = "disk_usage";
    const DESCRIPTION: &'static str = "Disk usage of the filesystem holding a path on an SSH host.";

    fn call(a: Args) -> Output {
        let target = Target {
            host: a.host,
            username: Some(a.username),
            port: a.port,
            credentials: None,
        };
        let path = a.path.unwrap_or_else(|| "/".into());
        let argv = ["df", "-P", "-k", &path].map(String::from).to_vec();
        let request = ssh::ArgvRequest {
            argv,
            timeout_ms: Some(10_000),
            max_output_bytes: Some(65536),
        };
        match ssh::exec_argv(&target, &request) {
            Ok(out) if out.exit_status == Some(0) => Output::text(stream_text(&out.stdout)),
            Ok(out) => Output::error(format!("df failed: {}", stream_text(&out.stderr))),
            Err(e) => e.into(),
        }
    }
}

export_tools!(DiskUsage);
