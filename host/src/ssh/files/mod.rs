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

mod common;
mod parse;
mod scripts;
mod sftp;
mod shell;
mod stream;
mod verify;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio::time::Instant as Deadline;
use tokio_util::sync::CancellationToken;

use super::manager::Backend;
use super::{SessionManager, SshError, Target};
pub use common::TEMP_PREFIX;
use common::{Ctl, Feed, Reporter, Sum};
pub(crate) use sftp::Sftp;
use shell::Shell;

/// The most `read_file` returns and `write_file` takes in one call: their
/// data is in memory by design, and the host caps it lower.
pub const MAX_DATA: u64 = 64 << 20;

/// A connection's file state: its SFTP client, or that it has none.
#[derive(Default)]
pub(crate) struct ConnFiles {
    pub(crate) sftp: tokio::sync::Mutex<Option<Arc<Sftp>>>,
    /// The server refused the SFTP subsystem once: exec from now on.
    pub(crate) no_sftp: AtomicBool,
}

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

impl FileStat {
    /// Whether `offset` lies past the end the size says. A size of 0 says
    /// nothing (the kernel's files give it): never past it then.
    pub(crate) fn is_past(&self, offset: u64) -> bool {
        self.size > 0 && offset > self.size
    }

    /// Whether `got` bytes read at `offset` reach the end the size says;
    /// never for a size of 0, whose end only a read can show.
    pub(crate) fn reached_by(&self, offset: u64, got: u64) -> bool {
        self.size > 0 && offset.saturating_add(got) >= self.size
    }
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

/// Runs `$body` with the target's backend bound to `$backend` and
/// `$session`. For operations that change nothing: when the connection's
/// SFTP client died under it (its `sftp-server` was killed, the channel
/// closed), it runs once more on a new client instead of failing.
macro_rules! idempotent {
    ($self:ident, $target:ident, $ctl:ident, |$backend:ident, $session:ident| $body:expr) => {{
        let mut again = true;
        loop {
            let ($backend, $session) = $self.backend($target, &$ctl).await?;
            let result = $body;
            match (&$backend, &result) {
                (Backend::Sftp(s), Err(FileError::Ssh(SshError::ConnectionLost(_))))
                    if again && !s.alive() =>
                {
                    again = false;
                }
                _ => break result,
            }
        }
    }};
}

impl SessionManager {
    fn file_ctl(&self) -> Ctl {
        Ctl {
            deadline: Deadline::now() + self.config().default_command_timeout,
            cancel: CancellationToken::new(),
        }
    }

    async fn backend(&self, target: &Target, ctl: &Ctl) -> Result<(Backend, String), FileError> {
        Ok(self.file_backend(target, ctl.deadline, &ctl.cancel).await?)
    }

    /// `lstat` of `path`, with the target when it is a symlink.
    pub async fn stat(&self, target: &Target, path: &str) -> Result<FileStat, FileError> {
        common::check_path(path)?;
        let ctl = self.file_ctl();
        idempotent!(self, target, ctl, |backend, session| match &backend {
            Backend::Sftp(s) => ctl.guard(&session, "stat", s.stat(path, false)).await,
            Backend::Shell => self.shell(target, &session).stat(path, &ctl).await,
        })
    }

    fn shell<'a>(&'a self, target: &'a Target, session: &'a str) -> Shell<'a> {
        Shell {
            manager: self,
            target,
            session,
        }
    }

    /// Up to `max_bytes` (at most [`MAX_DATA`]) of `path` from `offset`.
    /// Only regular files are read, symlinks followed: a directory is
    /// [`FileError::IsADirectory`], a FIFO or device is refused
    /// ([`FileError::Unsupported`]) before it is opened, since it could
    /// block or never end.
    pub async fn read_file(
        &self,
        target: &Target,
        path: &str,
        offset: u64,
        max_bytes: u64,
    ) -> Result<ReadChunk, FileError> {
        common::check_path(path)?;
        let max = max_bytes.min(MAX_DATA);
        let ctl = self.file_ctl();
        let (data, stat, eof) =
            idempotent!(self, target, ctl, |backend, session| match &backend {
                Backend::Sftp(s) => {
                    ctl.guard(&session, "read", s.read(path, offset, max, &ctl))
                        .await
                }
                Backend::Shell => {
                    self.shell(target, &session)
                        .read(path, offset, max, &ctl)
                        .await
                }
            })?;
        Ok(ReadChunk {
            data,
            offset,
            stat,
            eof,
        })
    }

    /// Replaces `request.path` atomically: a temporary file beside it
    /// (mode 0600 until done), then a rename over it. The mode is
    /// `request.mode`, else the replaced file's, else 0644. `if_match` is
    /// checked just before the rename: a write landing between that check
    /// and the rename is lost (no remote compare-and-swap exists); the
    /// window is one round trip.
    ///
    /// `cancel` stops the write until its rename (over SFTP; over exec,
    /// until its commit script is sent): the temporary file is removed and
    /// the file is left as it was. The rename itself is not cut off:
    /// whether it happened would be unknown.
    pub async fn write_file(
        &self,
        target: &Target,
        request: &WriteRequest,
        cancel: &CancellationToken,
    ) -> Result<WriteOutcome, FileError> {
        let path = request.path.as_str();
        common::check_path(path)?;
        let size = request.data.len() as u64;
        if size > MAX_DATA {
            return Err(FileError::TooLarge(format!(
                "{path}: {size} bytes is more than the {MAX_DATA} one write takes; upload it"
            )));
        }
        let staging = Ctl {
            cancel: cancel.clone(),
            ..self.file_ctl()
        };
        // Same deadline, no cancel.
        let ctl = Ctl {
            cancel: CancellationToken::new(),
            ..staging.clone()
        };
        let mut feed = Feed::new(&request.data[..], Reporter::new(None, None));
        let (backend, session) = self.backend(target, &staging).await?;
        let (bytes, sha256, created) = match backend {
            Backend::Sftp(s) => {
                let staged = s
                    .stage(path, &mut feed, request.create_parents, &staging)
                    .await?;
                if cancel.is_cancelled() {
                    s.abort(&staged.temp).await;
                    return Err(common::cancelled(&session, "write"));
                }
                let committed = ctl
                    .guard(
                        &session,
                        "write",
                        s.commit(
                            &staged,
                            path,
                            request.mode,
                            request.if_match.as_ref(),
                            &staging,
                        ),
                    )
                    .await;
                match committed {
                    Ok(created) => (staged.bytes, staged.sha256, created),
                    Err(e) => {
                        s.abort(&staged.temp).await;
                        return Err(e);
                    }
                }
            }
            Backend::Shell => {
                let sh = self.shell(target, &session);
                let staged = sh
                    .stage(path, &mut feed, size, request.create_parents, &staging)
                    .await?;
                if cancel.is_cancelled() {
                    sh.abort(&staged.temp).await;
                    return Err(common::cancelled(&session, "write"));
                }
                let created = self
                    .shell_commit(
                        &sh,
                        &staged,
                        path,
                        request.mode,
                        request.if_match.as_ref(),
                        &ctl,
                    )
                    .await?;
                (staged.bytes, staged.sha256, created)
            }
        };
        Ok(WriteOutcome {
            bytes,
            sha256,
            created,
        })
    }

    /// Checks what the remote side stored (when it could hash it), then
    /// commits; removes the temporary file on any failure.
    async fn shell_commit(
        &self,
        sh: &Shell<'_>,
        staged: &shell::Staged,
        path: &str,
        mode: Option<u32>,
        if_match: Option<&[u8; 32]>,
        ctl: &Ctl,
    ) -> Result<bool, FileError> {
        if staged.remote_sha256.is_some_and(|h| h != staged.sha256) {
            sh.abort(&staged.temp).await;
            return Err(verify::mismatch(sh.session, path));
        }
        sh.commit(staged, path, mode, if_match, ctl).await
    }

    /// The entries of directory `path` (symlinks followed), sorted by
    /// name, at most `max_entries`; `omitted` counts the rest.
    pub async fn list_directory(
        &self,
        target: &Target,
        path: &str,
        max_entries: u32,
    ) -> Result<DirListing, FileError> {
        common::check_path(path)?;
        let ctl = self.file_ctl();
        let max = max_entries as usize;
        let (mut entries, mut omitted) =
            idempotent!(self, target, ctl, |backend, session| match &backend {
                Backend::Sftp(s) => ctl
                    .guard(&session, "list", s.list(path, max, &ctl))
                    .await
                    .map(|(first, omitted)| {
                        let entries = first
                            .into_iter()
                            .map(|(name, stat)| DirEntry { name, stat })
                            .collect::<Vec<_>>();
                        (entries, omitted)
                    }),
                Backend::Shell => {
                    self.shell(target, &session)
                        .list(path, max_entries, &ctl)
                        .await
                }
            })?;
        entries.sort_by(|a: &DirEntry, b: &DirEntry| a.name.cmp(&b.name));
        if entries.len() > max {
            omitted += (entries.len() - max) as u64;
            entries.truncate(max);
        }
        Ok(DirListing { entries, omitted })
    }

    /// Streams `local` (already opened and checked by the caller) to
    /// `remote`: a temporary file beside it, verified (size, and sha256
    /// when the remote side can compute it), then renamed over it; the
    /// mode as for [`Self::write_file`]. On failure or cancel the
    /// temporary file is removed and `remote` is untouched.
    pub async fn upload(
        &self,
        target: &Target,
        local: tokio::fs::File,
        remote: &str,
        mode: Option<u32>,
        transfer: &Transfer,
    ) -> Result<TransferOutcome, FileError> {
        common::check_path(remote)?;
        let ctl = transfer_ctl(transfer);
        let size = local
            .metadata()
            .await
            .map_err(|e| FileError::Local(format!("reading the local file: {e}")))?
            .len();
        let mut feed = Feed::new(local, Reporter::new(transfer.progress.clone(), Some(size)));
        let (backend, session) = self.backend(target, &ctl).await?;
        let sh = self.shell(target, &session);
        let outcome = match backend {
            Backend::Sftp(s) => {
                let staged = s.stage(remote, &mut feed, false, &ctl).await?;
                let checked = async {
                    let theirs =
                        verify::remote_hash(&sh, &staged.temp, Some(staged.bytes), &ctl).await?;
                    if theirs.is_some_and(|h| h != staged.sha256) {
                        return Err(verify::mismatch(&session, remote));
                    }
                    let created = ctl
                        .guard(
                            &session,
                            "upload",
                            s.commit(&staged, remote, mode, None, &ctl),
                        )
                        .await;
                    created.map(|_| theirs.is_some())
                }
                .await;
                match checked {
                    Ok(verified) => TransferOutcome {
                        bytes: staged.bytes,
                        sha256: staged.sha256,
                        remote_verified: verified,
                    },
                    Err(e) => {
                        s.abort(&staged.temp).await;
                        return Err(e);
                    }
                }
            }
            Backend::Shell => {
                let staged = sh.stage(remote, &mut feed, size, false, &ctl).await?;
                self.shell_commit(&sh, &staged, remote, mode, None, &ctl)
                    .await?;
                TransferOutcome {
                    bytes: staged.bytes,
                    sha256: staged.sha256,
                    remote_verified: staged.remote_sha256.is_some(),
                }
            }
        };
        feed.report.finish(outcome.bytes);
        Ok(outcome)
    }

    /// Streams `remote` into `local` (a file the caller created, and
    /// removes or renames after), then checks the remote sha256 of the
    /// file against what arrived, when the remote side can compute it.
    pub async fn download(
        &self,
        target: &Target,
        remote: &str,
        local: &mut tokio::fs::File,
        transfer: &Transfer,
    ) -> Result<TransferOutcome, FileError> {
        common::check_path(remote)?;
        let ctl = transfer_ctl(transfer);
        let mut sum = Sum::new(Reporter::new(transfer.progress.clone(), None));
        let (backend, session) = self.backend(target, &ctl).await?;
        let sh = self.shell(target, &session);
        // Over SFTP the remote hash runs beside the transfer, reading what
        // the transfer reads: a file that changes meanwhile differs from
        // one or the other and is refused, as when hashed after.
        let mut hashed = None;
        let bytes = match backend {
            Backend::Sftp(s) => {
                let (got, theirs) = tokio::join!(
                    s.download(remote, local, &mut sum, &ctl),
                    verify::remote_hash(&sh, remote, None, &ctl)
                );
                let got = got?;
                hashed = Some(theirs?);
                got
            }
            Backend::Shell => {
                let (got, size) = sh.download(remote, local, &mut sum, &ctl).await?;
                if got != size {
                    return Err(FileError::Ssh(SshError::Other(format!(
                        "{session}: download {remote}: got {got} bytes of {size}: the file \
                         changed during the transfer"
                    ))));
                }
                got
            }
        };
        let sha256 = sum.sha256();
        let theirs = match hashed {
            Some(theirs) => theirs,
            None => verify::remote_hash(&sh, remote, Some(bytes), &ctl).await?,
        };
        if theirs.is_some_and(|h| h != sha256) {
            return Err(verify::mismatch(&session, remote));
        }
        sum.report.finish(bytes);
        Ok(TransferOutcome {
            bytes,
            sha256,
            remote_verified: theirs.is_some(),
        })
    }
}

fn transfer_ctl(transfer: &Transfer) -> Ctl {
    Ctl {
        deadline: Deadline::now() + transfer.timeout,
        cancel: transfer.cancel.clone(),
    }
}
