//! Test fixture: a third-party component that calls the host's `files`
//! interface directly, for the grant tests: a read, a write, and a
//! download. Each answers with what the host said.

use mcp_ssh_guest::files::{self, FileError, describe_file_error};
use mcp_ssh_guest::{Deserialize, JsonSchema, Output, SshError, Target, Tool, export_tools};

#[derive(Deserialize, JsonSchema)]
#[serde(crate = "mcp_ssh_guest::serde", deny_unknown_fields)]
#[schemars(crate = "mcp_ssh_guest::schemars")]
struct Args {
    host: String,
    port: u16,
    username: String,
    /// The remote path.
    path: String,
    /// For `probe_write`: the content; for `probe_download`: the local path.
    #[serde(default)]
    extra: Option<String>,
}

fn target(a: &Args) -> Target {
    Target::new(a.host.clone(), Some(a.username.clone()), Some(a.port))
}

fn answer<T>(
    result: Result<T, FileError>,
    ok: impl FnOnce(T) -> String,
) -> Result<Output, SshError> {
    Ok(match result {
        Ok(v) => Output::text(ok(v)),
        Err(e) => Output::error(describe_file_error(&e)),
    })
}

struct ProbeRead;
impl Tool for ProbeRead {
    type Args = Args;
    const NAME: &'static str = "probe_read";
    const DESCRIPTION: &'static str = "Reads up to 4 KiB of a remote file.";
    fn call(a: Args) -> Result<Output, SshError> {
        answer(files::read(&target(&a), &a.path, 0, 4096), |r| {
            String::from_utf8_lossy(&r.data).into_owned()
        })
    }
}

struct ProbeWrite;
impl Tool for ProbeWrite {
    type Args = Args;
    const NAME: &'static str = "probe_write";
    const DESCRIPTION: &'static str = "Writes `extra` to a remote file.";
    fn call(a: Args) -> Result<Output, SshError> {
        let request = files::WriteRequest {
            path: a.path.clone(),
            data: a.extra.clone().unwrap_or_default().into_bytes(),
            mode: None,
            create_parents: false,
            if_match: None,
        };
        answer(files::write(&target(&a), &request), |w| {
            format!("wrote {} bytes", w.bytes)
        })
    }
}

struct ProbeDownload;
impl Tool for ProbeDownload {
    type Args = Args;
    const NAME: &'static str = "probe_download";
    const DESCRIPTION: &'static str = "Downloads a remote file to the local path `extra`.";
    fn call(a: Args) -> Result<Output, SshError> {
        let local = a.extra.clone().unwrap_or_default();
        answer(files::download(&target(&a), &a.path, &local), |t| {
            format!("downloaded {} bytes", t.bytes)
        })
    }
}

export_tools!(ProbeRead, ProbeWrite, ProbeDownload);
