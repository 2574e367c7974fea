//! What both backends share: the call's deadline and cancel, the data
//! feed of a write (hashing and progress as it goes), progress pacing, and
//! the messages of errors, which name the session and the path and never
//! file contents.

use std::future::Future;
use std::time::Instant;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant as Deadline;
use tokio_util::sync::CancellationToken;

use super::{FileError, PROGRESS_EVERY, TransferProgressFn};
use crate::ssh::SshError;

/// When a call must end, and the token that ends it early.
#[derive(Debug, Clone)]
pub(crate) struct Ctl {
    pub(crate) deadline: Deadline,
    pub(crate) cancel: CancellationToken,
}

impl Ctl {
    /// Runs `fut` until it ends, the deadline passes or the call is
    /// cancelled.
    pub(crate) async fn guard<T>(
        &self,
        session: &str,
        what: &str,
        fut: impl Future<Output = Result<T, FileError>>,
    ) -> Result<T, FileError> {
        tokio::select! {
            biased;
            () = self.cancel.cancelled() => Err(cancelled(session, what)),
            () = tokio::time::sleep_until(self.deadline) => Err(timed_out(session, what)),
            r = fut => r,
        }
    }

    /// A short, fresh allowance for cleaning up after a failure or a
    /// cancel (removing a temporary file).
    pub(crate) fn cleanup() -> Self {
        Self {
            deadline: Deadline::now() + std::time::Duration::from_secs(10),
            cancel: CancellationToken::new(),
        }
    }
}

pub(crate) fn cancelled(session: &str, what: &str) -> FileError {
    FileError::Ssh(SshError::Cancelled(format!("{session}: {what}: cancelled")))
}

pub(crate) fn timed_out(session: &str, what: &str) -> FileError {
    FileError::Ssh(SshError::Timeout(format!(
        "{session}: {what}: the call's time ran out"
    )))
}

/// Calls a progress callback at most every [`PROGRESS_EVERY`], and once at
/// the end.
pub(crate) struct Reporter {
    progress: Option<TransferProgressFn>,
    total: Option<u64>,
    last: Option<Instant>,
}

impl Reporter {
    pub(crate) fn new(progress: Option<TransferProgressFn>, total: Option<u64>) -> Self {
        Self {
            progress,
            total,
            last: None,
        }
    }

    pub(crate) fn set_total(&mut self, total: Option<u64>) {
        self.total = total;
    }

    pub(crate) fn tick(&mut self, done: u64) {
        let Some(p) = &self.progress else { return };
        if self.last.is_some_and(|t| t.elapsed() < PROGRESS_EVERY) {
            return;
        }
        self.last = Some(Instant::now());
        (p.0)(done, self.total);
    }

    pub(crate) fn finish(&mut self, done: u64) {
        if let Some(p) = &self.progress {
            (p.0)(done, self.total);
        }
    }
}

/// The data of a write, read in chunks, hashed and counted on the way.
pub(crate) struct Feed<R> {
    reader: R,
    hasher: Sha256,
    pub(crate) done: u64,
    pub(crate) report: Reporter,
}

impl<R: AsyncRead + Unpin> Feed<R> {
    pub(crate) fn new(reader: R, report: Reporter) -> Self {
        Self {
            reader,
            hasher: Sha256::new(),
            done: 0,
            report,
        }
    }

    /// The next chunk of at most `max` bytes (full unless at the end), or
    /// `None` at the end.
    pub(crate) async fn next(&mut self, max: usize) -> Result<Option<Vec<u8>>, FileError> {
        let mut buf = vec![0u8; max];
        let mut n = 0;
        while n < max {
            let k = self
                .reader
                .read(&mut buf[n..])
                .await
                .map_err(|e| FileError::Local(format!("reading the local file: {e}")))?;
            if k == 0 {
                break;
            }
            n += k;
        }
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        self.hasher.update(&buf);
        self.done += n as u64;
        self.report.tick(self.done);
        Ok(Some(buf))
    }

    pub(crate) fn sha256(&self) -> [u8; 32] {
        self.hasher.clone().finalize().into()
    }
}

/// The hash of data received, counted and reported as it comes.
pub(crate) struct Sum {
    hasher: Sha256,
    pub(crate) done: u64,
    pub(crate) report: Reporter,
}

impl Sum {
    pub(crate) fn new(report: Reporter) -> Self {
        Self {
            hasher: Sha256::new(),
            done: 0,
            report,
        }
    }

    pub(crate) fn add(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.done += data.len() as u64;
        self.report.tick(self.done);
    }

    pub(crate) fn sha256(&self) -> [u8; 32] {
        self.hasher.clone().finalize().into()
    }
}

pub(crate) fn hex(hash: &[u8; 32]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn parse_hex(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Refuses paths no remote file can have.
pub(crate) fn check_path(path: &str) -> Result<(), FileError> {
    if path.is_empty() {
        return Err(SshError::InvalidArgument("path must not be empty".into()).into());
    }
    if path.contains('\0') {
        return Err(SshError::InvalidArgument("path must not contain NUL bytes".into()).into());
    }
    if path.len() > 4096 {
        return Err(SshError::InvalidArgument(format!(
            "path of {} bytes is too long (at most 4096)",
            path.len()
        ))
        .into());
    }
    Ok(())
}

/// The directory and the name of a file to write. A path ending in `/`,
/// `.` or `..` names a directory.
pub(crate) fn split_path<'a>(
    session: &str,
    path: &'a str,
) -> Result<(&'a str, &'a str), FileError> {
    let (dir, name) = match path.rsplit_once('/') {
        Some(("", name)) => ("/", name),
        Some((dir, name)) => (dir, name),
        None => (".", path),
    };
    if name.is_empty() || name == "." || name == ".." {
        return Err(FileError::IsADirectory(format!(
            "{session}: {path}: is a directory"
        )));
    }
    Ok((dir, name))
}

/// A name for a temporary file beside the target: hidden, unguessable.
pub(crate) fn temp_name(dir: &str) -> String {
    let mut bytes = [0u8; 12];
    if getrandom::fill(&mut bytes).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        bytes[..8].copy_from_slice(&(t.as_nanos() as u64).to_le_bytes());
    }
    let tag: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    if dir == "/" {
        format!("/{TEMP_PREFIX}{tag}")
    } else {
        format!("{dir}/{TEMP_PREFIX}{tag}")
    }
}

/// Temporary files of writes start with this (both backends).
pub const TEMP_PREFIX: &str = ".mcp-ssh.tmp.";

pub(crate) fn not_found(session: &str, path: &str) -> FileError {
    FileError::NotFound(format!("{session}: {path}: no such file or directory"))
}

pub(crate) fn parent_not_found(session: &str, path: &str, parent: &str) -> FileError {
    FileError::NotFound(format!(
        "{session}: cannot write {path}: its directory {parent} does not exist (create_parents \
         makes it)"
    ))
}

pub(crate) fn denied(session: &str, path: &str) -> FileError {
    FileError::PermissionDenied(format!("{session}: {path}: permission denied"))
}

pub(crate) fn is_dir(session: &str, path: &str) -> FileError {
    FileError::IsADirectory(format!("{session}: {path}: is a directory"))
}

pub(crate) fn not_dir(session: &str, path: &str) -> FileError {
    FileError::NotADirectory(format!("{session}: {path}: not a directory"))
}

pub(crate) fn not_regular(session: &str, path: &str, kind: &str) -> FileError {
    FileError::Unsupported(format!(
        "{session}: {path}: is {kind}, not a regular file; only regular files are read (a FIFO or \
         device could block or never end)"
    ))
}

pub(crate) fn conflict(session: &str, path: &str, missing: bool) -> FileError {
    if missing {
        FileError::Conflict(format!(
            "{session}: {path}: if_match was given but the file does not exist"
        ))
    } else {
        FileError::Conflict(format!(
            "{session}: {path}: the file changed: its sha256 is not the if_match given; read it \
             again"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_splits_into_its_directory_and_a_file_name() {
        let s = "u@h:22";
        assert_eq!(split_path(s, "/etc/x").unwrap(), ("/etc", "x"));
        assert_eq!(split_path(s, "/x").unwrap(), ("/", "x"));
        assert_eq!(split_path(s, "x").unwrap(), (".", "x"));
        assert_eq!(split_path(s, "a//b").unwrap(), ("a/", "b"));
        for dir in ["/", "a/", "a/.", "a/..", ".", ".."] {
            assert!(
                matches!(split_path(s, dir), Err(FileError::IsADirectory(_))),
                "{dir}"
            );
        }
    }

    #[test]
    fn temporary_names_are_hidden_beside_the_target_and_never_repeat() {
        let a = temp_name("/d");
        let b = temp_name("/d");
        assert!(a.starts_with("/d/.mcp-ssh.tmp.") && a.len() == "/d/.mcp-ssh.tmp.".len() + 24);
        assert_ne!(a, b);
        assert!(temp_name("/").starts_with("/.mcp-ssh.tmp."));
    }

    #[test]
    fn hashes_read_back_from_hex_and_nothing_else_does() {
        let h = [0xab; 32];
        assert_eq!(parse_hex(&hex(&h)), Some(h));
        assert_eq!(parse_hex(&format!("{}\n", hex(&h))), Some(h));
        assert_eq!(parse_hex("abc"), None);
        assert_eq!(parse_hex(&"zz".repeat(32)), None);
    }

    #[test]
    fn paths_with_nul_or_nothing_are_refused() {
        assert!(check_path("").is_err());
        assert!(check_path("a\0b").is_err());
        assert!(check_path(&"a".repeat(5000)).is_err());
        assert!(check_path("/ok").is_ok());
    }
}
