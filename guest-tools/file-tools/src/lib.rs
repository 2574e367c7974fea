//! The built-in file tools: `read_file`, `write_file`, `edit_file`,
//! `list_directory`, `upload_file` and `download_file`. Each translates
//! MCP arguments into calls on the host's `files` interface (WIT 0.1.5);
//! the host owns SFTP, the exec fallback, grants, transfer roots and the
//! audit log. What lives here is what an agent sees: encodings, the
//! 1 MiB default read with the offset to continue from, `edit_file` as
//! read + exact replacement + a write guarded by the SHA-256 of what was
//! read (so a concurrent change is a conflict, never lost), the diff, and
//! the bounded recursive listing.

mod diff;
mod listing;
mod text;
mod transfer;

use mcp_ssh_guest::files::{self, FileError, hex};
use mcp_ssh_guest::{
    Annotations, CredentialArgs, Deserialize, JsonSchema, Output, SshError, TargetArgs, Tool,
    Value, export_tools, fit, json,
};
use sha2::{Digest, Sha256};

use listing::ListDirectory;
use text::Encoding;
use transfer::{DownloadFile, UploadFile};

/// Bytes `read_file` returns when no `length` is given.
const DEFAULT_READ: u64 = 1 << 20;
/// The host's cap on one read and on one write.
const MAX_CALL_BYTES: u64 = 16 << 20;

/// Hints shared by the file tools: they reach an SSH host.
fn annotations(
    title: &str,
    read_only: bool,
    destructive: bool,
    idempotent: bool,
) -> Option<Annotations> {
    Some(Annotations {
        title: Some(title.into()),
        read_only: Some(read_only),
        destructive: Some(destructive),
        idempotent: Some(idempotent),
        open_world: Some(true),
    })
}

/// Runs a tool body whose errors are file errors: they become tool errors.
fn finish(result: Result<Output, FileError>) -> Result<Output, SshError> {
    Ok(result.unwrap_or_else(Output::from))
}

#[derive(Deserialize, JsonSchema)]
#[serde(crate = "mcp_ssh_guest::serde", deny_unknown_fields)]
#[schemars(crate = "mcp_ssh_guest::schemars")]
struct ReadArgs {
    #[serde(flatten)]
    target: TargetArgs,
    /// Path of a regular file on the host: absolute, or relative to the
    /// user's home directory.
    path: String,
    /// Byte offset to start at (default 0): a previous read's
    /// `next_offset` to continue.
    #[serde(default)]
    offset: Option<u64>,
    /// Bytes to read, at most 16777216 (16 MiB). Default: 1 MiB, and the
    /// result says whether more follows and the offset to continue from.
    #[serde(default)]
    #[schemars(range(min = 0, max = 16777216))]
    length: Option<u64>,
    /// `text` (default): the bytes as UTF-8 text, refused when they are not
    /// UTF-8. `base64`: any bytes, base64-encoded.
    #[serde(default)]
    encoding: Option<Encoding>,
    #[serde(flatten)]
    credentials: CredentialArgs,
}

struct ReadFile;

impl Tool for ReadFile {
    type Args = ReadArgs;
    const NAME: &'static str = "read_file";
    const DESCRIPTION: &'static str = "Read a file on an SSH host (over SFTP, or the host's own \
        commands where it has none), as UTF-8 text or base64. Returns at most 1 MiB unless \
        `length` says otherwise, and says where to continue when more follows.";

    fn annotations() -> Option<Annotations> {
        annotations("Read remote file", true, false, true)
    }

    fn output_schema() -> Option<Value> {
        Some(json!({
            "type": "object",
            "properties": {
                "path": {"type": "string"},
                "content": {"type": "string", "description": "the bytes read, as text or base64 per `encoding`"},
                "encoding": {"type": "string", "enum": ["text", "base64"]},
                "size": {"type": "integer", "description": "the file's size in bytes"},
                "offset": {"type": "integer", "description": "where `content` starts"},
                "bytes": {"type": "integer", "description": "bytes of the file in `content`"},
                "next_offset": {"type": "integer", "description": "pass as `offset` to read on"},
                "eof": {"type": "boolean", "description": "nothing follows `next_offset`"},
                "mode": {"type": "string", "description": "permission bits in octal, e.g. 0644"},
                "mtime": {"type": ["integer", "null"], "description": "seconds since the epoch"}
            },
            "required": ["path", "content", "encoding", "size", "offset", "bytes", "next_offset", "eof", "mode", "mtime"]
        }))
    }

    fn call(a: ReadArgs) -> Result<Output, SshError> {
        finish(read_file(a))
    }
}

fn read_file(a: ReadArgs) -> Result<Output, FileError> {
    let target = a.target.with(a.credentials);
    let offset = a.offset.unwrap_or(0);
    let asked = a.length.unwrap_or(DEFAULT_READ).min(MAX_CALL_BYTES);
    let encoding = a.encoding.unwrap_or_default();
    let read = files::read(&target, &a.path, offset, asked as u32)?;
    let (content, used) = match text::encode(&read.data, encoding, read.eof) {
        Ok(v) => v,
        Err(at) => {
            return Ok(Output::error(format!(
                "{} is not UTF-8 text (invalid byte at offset {}): read it with \
                 encoding \"base64\" instead",
                a.path,
                read.offset + at as u64
            )));
        }
    };
    // Text of control characters takes up to 6 times its size in JSON:
    // a read that would not fit in an answer stops earlier, and says where
    // to go on.
    let (content, used) =
        if encoding == Encoding::Text && !fit::fits(content.as_bytes(), fit::JSON_BUDGET) {
            let end = fit::prefix_within(content.as_bytes(), fit::JSON_BUDGET);
            let mut content = content;
            content.truncate(end);
            (content, end)
        } else {
            (content, used)
        };
    let next = read.offset + used as u64;
    // A text read that stopped inside a character ends before it.
    let eof = read.eof && used == read.data.len();
    let mut body = content.clone();
    if !eof {
        let left = read.stat.size.saturating_sub(next);
        body.push_str(&format!(
            "\n\n[{} bytes of {} read from offset {}; {left} more follow: call read_file \
             again with offset={next}]",
            used, read.stat.size, read.offset
        ));
    }
    Ok(Output::text(body).with_structured(json!({
        "path": a.path,
        "content": content,
        "encoding": encoding.name(),
        "size": read.stat.size,
        "offset": read.offset,
        "bytes": used,
        "next_offset": next,
        "eof": eof,
        "mode": files::mode_text(read.stat.mode),
        "mtime": read.stat.mtime,
    })))
}

#[derive(Deserialize, JsonSchema)]
#[serde(crate = "mcp_ssh_guest::serde", deny_unknown_fields)]
#[schemars(crate = "mcp_ssh_guest::schemars")]
struct WriteArgs {
    #[serde(flatten)]
    target: TargetArgs,
    /// Path of the file to write: absolute, or relative to the user's home
    /// directory. It is replaced atomically (a temporary file beside it,
    /// then a rename), so readers see the old or the new content, never a
    /// part.
    path: String,
    /// The whole new content (at most 16 MiB once decoded).
    content: String,
    /// `text` (default): `content` is written as UTF-8. `base64`: `content`
    /// is base64 and its decoded bytes are written.
    #[serde(default)]
    encoding: Option<Encoding>,
    /// Permission bits in octal, as chmod takes them: "644", "0644" or
    /// "0o644" (at most 7777). Default: an existing file keeps its mode; a
    /// new one gets 0644 less the remote umask.
    #[serde(default)]
    #[schemars(regex(pattern = r"^(0o)?[0-7]{1,5}$"))]
    mode: Option<String>,
    /// Create missing parent directories (default false).
    #[serde(default)]
    create_parents: Option<bool>,
    /// The SHA-256 (64 hex digits) the file's current content must have:
    /// the `sha256` of your last read or write. The write is refused with a
    /// conflict if the file changed since, or does not exist.
    #[serde(default)]
    #[schemars(regex(pattern = r"^[0-9a-fA-F]{64}$"))]
    if_match: Option<String>,
    #[serde(flatten)]
    credentials: CredentialArgs,
}

fn write_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "path": {"type": "string"},
            "bytes": {"type": "integer", "description": "bytes written"},
            "sha256": {"type": "string", "description": "SHA-256 of the new content, hex: pass it as if_match next time"},
            "created": {"type": "boolean", "description": "the file did not exist before"}
        },
        "required": ["path", "bytes", "sha256", "created"]
    })
}

struct WriteFile;

impl Tool for WriteFile {
    type Args = WriteArgs;
    const NAME: &'static str = "write_file";
    const DESCRIPTION: &'static str = "Write a whole file on an SSH host, atomically (a \
        temporary file beside it, then a rename), keeping an existing file's mode. With \
        `if_match` (the sha256 of your last read or write) a file changed by someone else is \
        never overwritten.";

    fn annotations() -> Option<Annotations> {
        annotations("Write remote file", false, true, true)
    }

    fn output_schema() -> Option<Value> {
        Some(write_schema())
    }

    fn call(a: WriteArgs) -> Result<Output, SshError> {
        finish(write_file(a))
    }
}

fn write_file(a: WriteArgs) -> Result<Output, FileError> {
    let data = match text::decode(a.content, a.encoding.unwrap_or_default()) {
        Ok(d) => d,
        Err(why) => return Ok(Output::error(why)),
    };
    let mode = match mode_arg(a.mode.as_deref()) {
        Ok(m) => m,
        Err(why) => return Ok(Output::error(why)),
    };
    let if_match = match a
        .if_match
        .as_deref()
        .map(|h| (h, files::parse_sha256_hex(h)))
    {
        None => None,
        Some((_, Some(d))) => Some(d),
        Some((h, None)) => {
            return Ok(Output::error(format!(
                "if_match {h:?} is not a SHA-256 in hex (64 digits)"
            )));
        }
    };
    let request = files::WriteRequest {
        path: a.path.clone(),
        data,
        mode,
        create_parents: a.create_parents.unwrap_or(false),
        if_match,
    };
    let target = a.target.with(a.credentials);
    let out = match files::write(&target, &request) {
        Err(FileError::Conflict(m)) => return Ok(Output::error(conflict(&a.path, &m))),
        other => other?,
    };
    let sha = hex(&out.sha256);
    let verb = if out.created { "Created" } else { "Replaced" };
    Ok(Output::text(format!(
        "{verb} {} ({} bytes, sha256 {sha})",
        a.path, out.bytes
    ))
    .with_structured(json!({
        "path": a.path,
        "bytes": out.bytes,
        "sha256": sha,
        "created": out.created,
    })))
}

/// The `mode` argument: octal text to permission bits.
fn mode_arg(mode: Option<&str>) -> Result<Option<u32>, String> {
    mode.map(|m| {
        files::parse_mode(m).ok_or_else(|| {
            format!("mode {m:?} is not octal permission bits such as \"0644\" (at most 7777)")
        })
    })
    .transpose()
}

fn conflict(path: &str, host_message: &str) -> String {
    format!(
        "Conflict: {path} changed since it was read ({host_message}); nothing was written. \
         Read it again and retry."
    )
}

#[derive(Deserialize, JsonSchema)]
#[serde(crate = "mcp_ssh_guest::serde", deny_unknown_fields)]
#[schemars(crate = "mcp_ssh_guest::schemars")]
struct EditArgs {
    #[serde(flatten)]
    target: TargetArgs,
    /// Path of a UTF-8 text file (at most 16 MiB): absolute, or relative
    /// to the user's home directory.
    path: String,
    /// The exact text to replace, whitespace and line breaks included. It
    /// must occur in the file, and exactly once unless `replace_all`.
    old_text: String,
    /// The text to put in its place.
    new_text: String,
    /// Replace every occurrence (default false: `old_text` must be unique).
    #[serde(default)]
    replace_all: Option<bool>,
    #[serde(flatten)]
    credentials: CredentialArgs,
}

struct EditFile;

impl Tool for EditFile {
    type Args = EditArgs;
    const NAME: &'static str = "edit_file";
    const DESCRIPTION: &'static str = "Edit a text file on an SSH host by exact replacement: \
        `old_text` must occur exactly once (or set `replace_all`). The file is rewritten \
        atomically, and only if nobody changed it since it was read (otherwise: a conflict, \
        nothing lost). Returns the number of replacements and a short unified diff.";

    fn annotations() -> Option<Annotations> {
        annotations("Edit remote file", false, true, false)
    }

    fn output_schema() -> Option<Value> {
        let mut schema = write_schema();
        schema["properties"]["replacements"] = json!({"type": "integer"});
        schema["properties"]["diff"] =
            json!({"type": "string", "description": "a short unified diff of the change"});
        schema["required"] = json!(["path", "bytes", "sha256", "created", "replacements", "diff"]);
        Some(schema)
    }

    fn call(a: EditArgs) -> Result<Output, SshError> {
        finish(edit_file(a))
    }
}

fn edit_file(a: EditArgs) -> Result<Output, FileError> {
    if a.old_text.is_empty() {
        return Ok(Output::error("old_text must not be empty"));
    }
    let target = a.target.with(a.credentials);
    let read = files::read(&target, &a.path, 0, MAX_CALL_BYTES as u32)?;
    if !read.eof {
        return Ok(Output::error(format!(
            "{} is {} bytes, larger than edit_file handles (16 MiB); use write_file",
            a.path, read.stat.size
        )));
    }
    let sha: [u8; 32] = Sha256::digest(&read.data).into();
    let old = match String::from_utf8(read.data) {
        Ok(s) => s,
        Err(e) => {
            return Ok(Output::error(format!(
                "{} is not UTF-8 text (invalid byte at offset {}): edit_file edits text only",
                a.path,
                e.utf8_error().valid_up_to()
            )));
        }
    };
    let count = old.matches(a.old_text.as_str()).count();
    let replace_all = a.replace_all.unwrap_or(false);
    if count == 0 {
        return Ok(Output::error(format!(
            "old_text was not found in {}; nothing was changed. It must match exactly, \
             whitespace and line breaks included: read the file to copy it.",
            a.path
        )));
    }
    if count > 1 && !replace_all {
        return Ok(Output::error(format!(
            "old_text occurs {count} times in {}; nothing was changed. Include more of the \
             surrounding text to make it unique, or set replace_all to replace all {count}.",
            a.path
        )));
    }
    let new = old.replace(a.old_text.as_str(), &a.new_text);
    let request = files::WriteRequest {
        path: a.path.clone(),
        data: new.clone().into_bytes(),
        mode: None,
        create_parents: false,
        if_match: Some(sha.to_vec()),
    };
    let out = match files::write(&target, &request) {
        Err(FileError::Conflict(m)) => return Ok(Output::error(conflict(&a.path, &m))),
        other => other?,
    };
    let diff = diff::unified(&a.path, &old, &new);
    let sha = hex(&out.sha256);
    let plural = if count == 1 { "" } else { "s" };
    Ok(Output::text(format!(
        "Replaced {count} occurrence{plural} in {} ({} bytes, sha256 {sha}).\n\n{diff}",
        a.path, out.bytes
    ))
    .with_structured(json!({
        "path": a.path,
        "bytes": out.bytes,
        "sha256": sha,
        "created": out.created,
        "replacements": count,
        "diff": diff,
    })))
}

export_tools!(
    ReadFile,
    WriteFile,
    EditFile,
    ListDirectory,
    UploadFile,
    DownloadFile
);
