//! `list_directory` and its walk: one `list-directory` call per directory,
//! depth first in name order, bounded by the entries the caller wants.
//! Symlinks are listed, never followed, so a link loop cannot trap the
//! walk; once the budget is spent, no further directory is listed.

use mcp_ssh_guest::files::{self, DirEntry, FileError, FileKind};
use mcp_ssh_guest::{
    Annotations, CredentialArgs, Deserialize, JsonSchema, Output, SshError, Target, TargetArgs,
    Tool, Value, json,
};

use crate::{annotations, finish};

#[derive(Deserialize, JsonSchema)]
#[serde(crate = "mcp_ssh_guest::serde", deny_unknown_fields)]
#[schemars(crate = "mcp_ssh_guest::schemars")]
pub(crate) struct ListArgs {
    #[serde(flatten)]
    target: TargetArgs,
    /// The directory: absolute, or relative to the user's home directory.
    path: String,
    /// List subdirectories too, depth first (default false). Symlinks are
    /// listed, not followed.
    #[serde(default)]
    recursive: Option<bool>,
    /// Entries returned at most (default 1000, at most 10000); the result
    /// says how many were left out.
    #[serde(default)]
    #[schemars(range(min = 1, max = 10000))]
    max_entries: Option<u32>,
    /// Include names starting with a dot (default false).
    #[serde(default)]
    include_hidden: Option<bool>,
    #[serde(flatten)]
    credentials: CredentialArgs,
}

pub(crate) struct ListDirectory;

impl Tool for ListDirectory {
    type Args = ListArgs;
    const NAME: &'static str = "list_directory";
    const DESCRIPTION: &'static str = "List a directory on an SSH host: name, type, size, mode, \
        modification time and link target of each entry, optionally recursive. Bounded (1000 \
        entries by default), saying how many were left out.";

    fn annotations() -> Option<Annotations> {
        annotations("List remote directory", true, false, true)
    }

    fn output_schema() -> Option<Value> {
        Some(json!({
            "type": "object",
            "properties": {
                "path": {"type": "string"},
                "entries": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string", "description": "path relative to the listed directory"},
                            "type": {"type": "string", "enum": ["file", "directory", "symlink", "other"]},
                            "size": {"type": "integer"},
                            "mode": {"type": "string", "description": "permission bits in octal, e.g. 0755"},
                            "mtime": {"type": ["integer", "null"], "description": "seconds since the epoch"},
                            "link_target": {"type": ["string", "null"]}
                        },
                        "required": ["name", "type", "size", "mode", "mtime", "link_target"]
                    }
                },
                "omitted": {"type": "integer", "description": "entries left out beyond max_entries"},
                "unlisted_directories": {"type": "integer", "description": "directories not listed once max_entries was reached (recursive), or that could not be read"},
                "complete": {"type": "boolean", "description": "nothing was left out"}
            },
            "required": ["path", "entries", "omitted", "unlisted_directories", "complete"]
        }))
    }

    fn call(a: ListArgs) -> Result<Output, SshError> {
        finish(list_directory(a))
    }
}

fn list_directory(a: ListArgs) -> Result<Output, FileError> {
    let target: Target = a.target.with(a.credentials);
    let options = Options {
        recursive: a.recursive.unwrap_or(false),
        max_entries: a.max_entries.unwrap_or(1000).clamp(1, 10_000) as usize,
        include_hidden: a.include_hidden.unwrap_or(false),
    };
    let walk = walk(&target, &a.path, &options)?;
    let mut text: Vec<String> = walk.entries.iter().map(|(p, e)| entry_line(p, e)).collect();
    if walk.entries.is_empty() {
        text.push(format!("{} is empty", a.path));
    }
    let complete = walk.omitted == 0 && walk.unlisted_directories == 0;
    if !complete {
        let mut note = format!(
            "[{} entries shown; {} more left out",
            walk.entries.len(),
            walk.omitted
        );
        if walk.unlisted_directories > 0 {
            note.push_str(&format!(
                ", and {} directories not listed",
                walk.unlisted_directories
            ));
        }
        note.push_str(": raise max_entries or list a subdirectory]");
        text.push(note);
    }
    let entries: Vec<Value> = walk.entries.iter().map(|(p, e)| entry_json(p, e)).collect();
    Ok(Output::text(text.join("\n")).with_structured(json!({
        "path": a.path,
        "entries": entries,
        "omitted": walk.omitted,
        "unlisted_directories": walk.unlisted_directories,
        "complete": complete,
    })))
}

/// Entries asked of the host per directory: its own cap.
const PER_DIRECTORY: u32 = 10_000;

/// What the walk found.
pub struct Walk {
    /// `(path relative to the root, entry)`, in the order listed.
    pub entries: Vec<(String, DirEntry)>,
    /// Entries seen but left out beyond the budget, plus those the host
    /// left out of a directory too large for one call.
    pub omitted: u64,
    /// Directories that were not listed because the budget was spent.
    pub unlisted_directories: u64,
}

pub struct Options {
    pub recursive: bool,
    pub max_entries: usize,
    pub include_hidden: bool,
}

pub fn walk(target: &Target, root: &str, o: &Options) -> Result<Walk, FileError> {
    let mut out = Walk {
        entries: Vec::new(),
        omitted: 0,
        unlisted_directories: 0,
    };
    // (remote path, path relative to the root); popped from the end, so
    // pushed in reverse to keep name order.
    let mut pending: Vec<(String, String)> = vec![(root.to_string(), String::new())];
    while let Some((dir, rel)) = pending.pop() {
        if out.entries.len() >= o.max_entries {
            out.unlisted_directories += 1;
            continue;
        }
        let listing = match files::list_directory(target, &dir, PER_DIRECTORY) {
            Ok(l) => l,
            // Below the root, a directory that vanished or may not be read
            // is left out rather than failing the whole walk.
            Err(FileError::NotFound(_) | FileError::PermissionDenied(_)) if !rel.is_empty() => {
                out.unlisted_directories += 1;
                continue;
            }
            Err(e) => return Err(e),
        };
        out.omitted += listing.omitted;
        let mut subdirs = Vec::new();
        for entry in listing.entries {
            if !o.include_hidden && entry.name.starts_with('.') {
                continue;
            }
            if out.entries.len() >= o.max_entries {
                out.omitted += 1;
                continue;
            }
            let path = if rel.is_empty() {
                entry.name.clone()
            } else {
                format!("{rel}/{}", entry.name)
            };
            if o.recursive && entry.stat.kind == FileKind::Directory {
                subdirs.push((join(&dir, &entry.name), path.clone()));
            }
            out.entries.push((path, entry));
        }
        pending.extend(subdirs.into_iter().rev());
    }
    Ok(out)
}

/// `dir/name`, without doubling a `/`.
pub fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// One entry as structured content.
pub fn entry_json(path: &str, e: &DirEntry) -> Value {
    json!({
        "name": path,
        "type": e.stat.kind.name(),
        "size": e.stat.size,
        "mode": files::mode_text(e.stat.mode),
        "mtime": e.stat.mtime,
        "link_target": e.stat.link_target,
    })
}

/// One entry as a line of text: `d 0755       4096 2026-01-02 03:04:05 name/`.
pub fn entry_line(path: &str, e: &DirEntry) -> String {
    let (mark, suffix) = match e.stat.kind {
        FileKind::File => ('-', ""),
        FileKind::Directory => ('d', "/"),
        FileKind::Symlink => ('l', ""),
        FileKind::Other => ('?', ""),
    };
    let mtime = e.stat.mtime.map_or_else(|| "-".repeat(19), utc);
    let mut line = format!(
        "{mark} {} {:>12} {mtime} {path}{suffix}",
        files::mode_text(e.stat.mode),
        e.stat.size
    );
    if let Some(target) = &e.stat.link_target {
        line.push_str(" -> ");
        line.push_str(target);
    }
    line
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_825_600), "2000-02-29 12:00:00");
        assert_eq!(utc(1_798_761_599), "2026-12-31 23:59:59");
    }

    #[test]
    fn paths_join_with_one_slash() {
        assert_eq!(join("/", "etc"), "/etc");
        assert_eq!(join("/etc", "ssh"), "/etc/ssh");
        assert_eq!(join("rel/", "x"), "rel/x");
    }
}
