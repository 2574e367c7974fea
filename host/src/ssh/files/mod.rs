//! File operations on a session: stat, ranged reads, atomic writes,
//! directory listings and streamed transfers with verification.
//!
//! Each connection gets one SFTP client ([`sftp`]), opened on first use on
//! a channel of its own, shared by every concurrent call (requests are
//! matched by id), reopened when it dies and dropped with the connection.
//! A server with no SFTP subsystem (Dropbear without `sftp-server`, an
//! sshd without `Subsystem sftp`) gets the same operations with the same
//! semantics over exec channels ([`shell`]): POSIX tools run through the
//! launcher with paths as argv words, data on stdin and stdout. Once a
//! connection's SFTP request is refused it uses exec for good.
//!
//! Memory: `read_file`/`write_file` carry their data in memory by design;
//! the caller caps it (16 MiB is what the host expects). Transfers stream
//! in chunks of at most [`CHUNK`] with a bounded number in flight.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{SessionManager, SshError, Target};

/// Transfers move data in chunks of at most this many bytes.
pub(crate) const CHUNK: usize = 256 * 1024;

/// Why a file operation failed. Every message names the session
/// (`user@host:port`) and the path; none repeats file contents.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    IsADirectory(String),
    #[error("{0}")]
    NotADirectory(String),
    #[error("{0}")]
    Exists(String),
    /// `if_match` did not match the current content.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    /// Neither SFTP nor the commands the exec fallback needs: the message
    /// says what is missing.
    #[error("{0}")]
    Unsupported(String),
    /// A problem with the local file of an upload or download.
    #[error("{0}")]
    Local(String),
    #[error(transparent)]
    Ssh(#[from] SshError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    File,
    Directory,
    Symlink,
    Other,
}

/// What `lstat` says of a path, with the target of a symlink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStat {
    pub kind: FileKind,
    pub size: u64,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    /// Modification time, Unix seconds.
    pub mtime: Option<u64>,
    pub link_target: Option<String>,
}

/// A range of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadChunk {
    pub data: Vec<u8>,
    pub offset: u64,
    pub stat: FileStat,
    /// The range reached the end of the file.
    pub eof: bool,
}

/// An atomic write of a whole file.
#[derive(Debug, Clone, Default)]
pub struct WriteRequest {
    pub path: String,
    pub data: Vec<u8>,
    /// Permission bits; `None` keeps an existing file's mode (0644 for a
    /// new file, less the remote umask on the exec path).
    pub mode: Option<u32>,
    /// Creates missing parent directories.
    pub create_parents: bool,
    /// The sha256 the current content must have; a missing file is a
    /// conflict too.
    pub if_match: Option<[u8; 32]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOutcome {
    pub bytes: u64,
    pub sha256: [u8; 32],
    /// No file was there before.
    pub created: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub stat: FileStat,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DirListing {
    /// Sorted by name, without `.` and `..`.
    pub entries: Vec<DirEntry>,
    /// Entries left out past `max_entries`.
    pub omitted: u64,
}

/// A transfer's progress callback: bytes done and the total when known.
/// Called from the transfer's task at most every [`PROGRESS_EVERY`]: it
/// must not block.
#[derive(Clone)]
pub struct TransferProgressFn(pub Arc<dyn Fn(u64, Option<u64>) + Send + Sync>);

impl std::fmt::Debug for TransferProgressFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TransferProgressFn")
    }
}

/// How often, at most, a transfer reports progress.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// How a transfer is run.
#[derive(Debug, Clone)]
pub struct Transfer {
    /// Fired when the client gives up: the transfer stops and its
    /// temporary files are removed.
    pub cancel: CancellationToken,
    pub progress: Option<TransferProgressFn>,
    /// The whole transfer, verification included.
    pub timeout: Duration,
}

impl Default for Transfer {
    fn default() -> Self {
        Self {
            cancel: CancellationToken::new(),
            progress: None,
            timeout: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferOutcome {
    pub bytes: u64,
    pub sha256: [u8; 32],
    /// The remote side computed the same sha256 (false when it has no
    /// hasher: the size was still checked).
    pub remote_verified: bool,
}

impl SessionManager {
    /// `lstat` of `path`, with the target when it is a symlink.
    pub async fn stat(&self, target: &Target, path: &str) -> Result<FileStat, FileError> {
        let _ = (target, path);
        Err(FileError::Unsupported("not yet".into()))
    }

    /// Up to `max_bytes` of `path` from `offset`. Only regular files are
    /// read: a directory is [`FileError::IsADirectory`], a FIFO or device
    /// is refused before it is opened (it could block or never end).
    pub async fn read_file(
        &self,
        target: &Target,
        path: &str,
        offset: u64,
        max_bytes: u64,
    ) -> Result<ReadChunk, FileError> {
        let _ = (target, path, offset, max_bytes);
        Err(FileError::Unsupported("not yet".into()))
    }

    /// Replaces `request.path` atomically: a temporary file beside it, then
    /// a rename over it.
    pub async fn write_file(
        &self,
        target: &Target,
        request: &WriteRequest,
    ) -> Result<WriteOutcome, FileError> {
        let _ = (target, request);
        Err(FileError::Unsupported("not yet".into()))
    }

    /// The entries of directory `path`, sorted by name, at most
    /// `max_entries`.
    pub async fn list_directory(
        &self,
        target: &Target,
        path: &str,
        max_entries: u32,
    ) -> Result<DirListing, FileError> {
        let _ = (target, path, max_entries);
        Err(FileError::Unsupported("not yet".into()))
    }

    /// Streams `local` (already opened and checked by the caller) to
    /// `remote`: temp file beside it, then rename.
    pub async fn upload(
        &self,
        target: &Target,
        local: tokio::fs::File,
        remote: &str,
        mode: Option<u32>,
        transfer: &Transfer,
    ) -> Result<TransferOutcome, FileError> {
        let _ = (target, local, remote, mode, transfer);
        Err(FileError::Unsupported("not yet".into()))
    }

    /// Streams `remote` into `local` (a file the caller created, e.g. a
    /// temp file it renames after success).
    pub async fn download(
        &self,
        target: &Target,
        remote: &str,
        local: &mut tokio::fs::File,
        transfer: &Transfer,
    ) -> Result<TransferOutcome, FileError> {
        let _ = (target, remote, local, transfer);
        Err(FileError::Unsupported("not yet".into()))
    }
}
