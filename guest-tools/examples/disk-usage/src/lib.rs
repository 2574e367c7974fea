//! Example third-party tool: the disk usage of the filesystem holding a
//! path, as `df -P -k` prints it. It runs one fixed argv through
//! `exec-argv`, so its grant can name exactly that command.

use mcp_ssh_guest::{
    Deserialize, JsonSchema, Output, SshError, TargetArgs, Tool, export_tools, ssh, stream_text,
};

#[derive(Deserialize, JsonSchema)]
#[serde(crate = "mcp_ssh_guest::serde", deny_unknown_fields)]
#[schemars(crate = "mcp_ssh_guest::schemars")]
struct Args {
    #[serde(flatten)]
    target: TargetArgs,
    /// A path on the filesystem to report (default "/").
    #[serde(default)]
    path: Option<String>,
}

struct DiskUsage;

impl Tool for DiskUsage {
    type Args = Args;
    const NAME: &'static str = "disk_usage";
    const DESCRIPTION: &'static str = "Disk usage of the filesystem holding a path on an SSH host.";

    fn call(a: Args) -> Result<Output, SshError> {
        let path = a.path.unwrap_or_else(|| "/".into());
        let request = ssh::ArgvRequest {
            argv: ["df", "-P", "-k", &path].map(String::from).to_vec(),
            timeout_ms: Some(10_000),
            max_output_bytes: Some(65536),
        };
        let out = ssh::exec_argv(&a.target.into(), &request)?;
        Ok(match out.exit_status {
            Some(0) => Output::text(stream_text(&out.stdout)),
            _ => Output::error(format!("df failed: {}", stream_text(&out.stderr))),
        })
    }
}

export_tools!(DiskUsage);
