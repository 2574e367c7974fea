//! `upload_file` and `download_file`: the host streams, verifies and
//! confines the local side to the operator's transfer roots; this says
//! what happened.

use mcp_ssh_guest::files::{self, hex};
use mcp_ssh_guest::{
    Annotations, CredentialArgs, Deserialize, JsonSchema, Output, SshError, TargetArgs, Tool,
    Value, json,
};

use crate::{annotations, finish, mode_arg};

fn transfer_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "local_path": {"type": "string", "description": "the local file, symlinks resolved"},
            "remote_path": {"type": "string"},
            "bytes": {"type": "integer"},
            "sha256": {"type": "string", "description": "SHA-256 of the bytes transferred, hex"},
            "remote_verified": {"type": "boolean", "description": "the remote side computed the same SHA-256 (false: only the size was verified)"}
        },
        "required": ["local_path", "remote_path", "bytes", "sha256", "remote_verified"]
    })
}

fn transfer_result(verb: &str, remote: &str, out: &files::TransferOutput) -> Output {
    let sha = hex(&out.sha256);
    let check = if out.remote_verified {
        "sha256 verified on both sides"
    } else {
        "size verified; the remote could not compute a sha256"
    };
    let (from, to) = match verb {
        "Uploaded" => (&out.local_path as &str, remote),
        _ => (remote, &out.local_path as &str),
    };
    Output::text(format!(
        "{verb} {} bytes from {from} to {to} (sha256 {sha}; {check})",
        out.bytes
    ))
    .with_structured(json!({
        "local_path": out.local_path,
        "remote_path": remote,
        "bytes": out.bytes,
        "sha256": sha,
        "remote_verified": out.remote_verified,
    }))
}

#[derive(Deserialize, JsonSchema)]
#[serde(crate = "mcp_ssh_guest::serde", deny_unknown_fields)]
#[schemars(crate = "mcp_ssh_guest::schemars")]
pub(crate) struct UploadArgs {
    #[serde(flatten)]
    target: TargetArgs,
    /// A regular file on the machine running this server, inside one of
    /// the operator's transfer roots (--transfer-root).
    local_path: String,
    /// Where to put it on the host: absolute, or relative to the user's
    /// home directory. Replaced atomically once the transfer is verified.
    remote_path: String,
    /// Permission bits in octal ("0644"). Default: an existing file keeps
    /// its mode; a new one gets 0644 less the remote umask.
    #[serde(default)]
    #[schemars(regex(pattern = r"^(0o)?[0-7]{1,5}$"))]
    mode: Option<String>,
    #[serde(flatten)]
    credentials: CredentialArgs,
}

pub(crate) struct UploadFile;

impl Tool for UploadFile {
    type Args = UploadArgs;
    const NAME: &'static str = "upload_file";
    const DESCRIPTION: &'static str = "Copy a file from the machine running this server to an \
        SSH host, streamed, verified by size and sha256, with progress; the destination is \
        replaced atomically. The local file must lie inside a transfer root the operator set \
        up (--transfer-root).";

    fn annotations() -> Option<Annotations> {
        annotations("Upload file", false, true, true)
    }

    fn output_schema() -> Option<Value> {
        Some(transfer_schema())
    }

    fn call(a: UploadArgs) -> Result<Output, SshError> {
        let mode = match mode_arg(a.mode.as_deref()) {
            Ok(m) => m,
            Err(why) => return Ok(Output::error(why)),
        };
        let target = a.target.with(a.credentials);
        finish(
            files::upload(&target, &a.local_path, &a.remote_path, mode)
                .map(|out| transfer_result("Uploaded", &a.remote_path, &out)),
        )
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(crate = "mcp_ssh_guest::serde", deny_unknown_fields)]
#[schemars(crate = "mcp_ssh_guest::schemars")]
pub(crate) struct DownloadArgs {
    #[serde(flatten)]
    target: TargetArgs,
    /// A regular file on the host: absolute, or relative to the user's
    /// home directory.
    remote_path: String,
    /// Where to put it on the machine running this server: inside one of
    /// the operator's transfer roots (--transfer-root), in a directory that
    /// exists. An existing file there is replaced once the transfer is
    /// verified; the new file has mode 0600.
    local_path: String,
    #[serde(flatten)]
    credentials: CredentialArgs,
}

pub(crate) struct DownloadFile;

impl Tool for DownloadFile {
    type Args = DownloadArgs;
    const NAME: &'static str = "download_file";
    const DESCRIPTION: &'static str = "Copy a file from an SSH host to the machine running this \
        server, streamed, verified by size and sha256, with progress; the local file is replaced \
        only once the transfer is verified. The local path must lie inside a transfer root the \
        operator set up (--transfer-root).";

    fn annotations() -> Option<Annotations> {
        // It writes (and may replace) a local file: not read-only.
        annotations("Download file", false, true, true)
    }

    fn output_schema() -> Option<Value> {
        Some(transfer_schema())
    }

    fn call(a: DownloadArgs) -> Result<Output, SshError> {
        let target = a.target.with(a.credentials);
        finish(
            files::download(&target, &a.remote_path, &a.local_path)
                .map(|out| transfer_result("Downloaded", &a.remote_path, &out)),
        )
    }
}
