//! The host side of the WIT `files` interface (0.1.5): stat, read, write,
//! list, upload and download on a target. Each goes through the gate
//! ([`super::authorize`]) as a command does: the grant (`read_paths`,
//! `write_paths`, `transfer` for a third-party component), the concurrency
//! slot, the guest clock and an audit line with the path, the operation
//! and the byte count, never the content. The SSH core does the file work
//! (SFTP, or the remote's commands); the local side of a transfer is
//! confined to the operator's transfer roots ([`TransferRoots`]).
//!
//! Writes and uploads to one remote path through this server are
//! serialised ([`WriteLocks`]): the core checks `if-match` just before its
//! rename, and two calls through this server must not both pass the check
//! and then both rename (the second would lose the first's change without
//! a conflict). A writer outside this server still has the core's window
//! of one round trip.
//!
//! Caps, so that no call makes the host or the guest hold more than a
//! bounded amount: a read returns at most [`MAX_READ`] bytes (the guest
//! reads on from the offset it is given back), a write carries at most
//! [`MAX_WRITE`], a listing at most [`MAX_ENTRIES`] entries. Transfers are
//! streamed by the core and bounded only by [`TRANSFER_TIMEOUT`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::authorize::{Access, Audited, FileAccess, FileOp};
use super::target_from_wit;
use crate::audit;
use crate::plugins::ProgressSink;
use crate::plugins::bindings::{files, types};
use crate::plugins::bounded;
use crate::plugins::state::StoreState;
use crate::plugins::transfer_roots::TransferRoots;
use crate::ssh::{self as core, FileError, SshError};

/// Bytes one `read` returns at most.
pub(crate) const MAX_READ: u32 = 16 << 20;
/// Bytes one `write` may carry.
pub(crate) const MAX_WRITE: usize = 16 << 20;
/// Entries one `list-directory` returns at most.
pub(crate) const MAX_ENTRIES: u32 = 10_000;
/// How long an upload or download may take in all. Generous: the core
/// streams, and the client's cancel stops it at any time.
pub(crate) const TRANSFER_TIMEOUT: Duration = Duration::from_secs(3600);

impl files::Host for StoreState {
    fn convert_file_error(&mut self, e: FileError) -> wasmtime::Result<files::FileError> {
        use files::FileError as W;
        Ok(match e {
            FileError::NotFound(m) => W::NotFound(m),
            FileError::PermissionDenied(m) => W::PermissionDenied(m),
            FileError::IsADirectory(m) => W::IsADirectory(m),
            FileError::NotADirectory(m) => W::NotADirectory(m),
            FileError::Exists(m) => W::Exists(m),
            FileError::Conflict(m) => W::Conflict(m),
            FileError::TooLarge(m) => W::TooLarge(m),
            FileError::Unsupported(m) => W::Unsupported(m),
            FileError::Local(m) => W::Local(m),
            FileError::Ssh(e) => W::Ssh(types::SshError::from(e)),
        })
    }

    #[tracing::instrument(skip_all, fields(component = %self.component, host = %bounded::clip(&target.host, bounded::MAX_FIELD)))]
    async fn stat(
        &mut self,
        target: types::Target,
        path: String,
    ) -> Result<files::FileStat, FileError> {
        check_path(&path)?;
        let mut target = target_from_wit(target);
        let pass = self.authorize(Access::File(&mut target, access(FileOp::Stat, &path)))?;
        let result = self.sessions_for(&target).stat(&target, &path).await;
        pass.finish_with(result).map(stat_to_wit)
    }

    #[tracing::instrument(skip_all, fields(component = %self.component, host = %bounded::clip(&target.host, bounded::MAX_FIELD)))]
    async fn read(
        &mut self,
        target: types::Target,
        path: String,
        offset: u64,
        max_bytes: u32,
    ) -> Result<files::ReadOutput, FileError> {
        check_path(&path)?;
        let mut target = target_from_wit(target);
        let pass = self.authorize(Access::File(&mut target, access(FileOp::Read, &path)))?;
        let max = u64::from(max_bytes.min(MAX_READ));
        let result = self
            .sessions_for(&target)
            .read_file(&target, &path, offset, max)
            .await;
        pass.finish_with(result).map(|c| files::ReadOutput {
            data: c.data,
            offset: c.offset,
            stat: stat_to_wit(c.stat),
            eof: c.eof,
        })
    }

    #[tracing::instrument(skip_all, fields(component = %self.component, host = %bounded::clip(&target.host, bounded::MAX_FIELD)))]
    async fn write(
        &mut self,
        target: types::Target,
        request: files::WriteRequest,
    ) -> Result<files::WriteOutput, FileError> {
        check_path(&request.path)?;
        check_mode(request.mode)?;
        if request.data.len() > MAX_WRITE {
            return Err(FileError::TooLarge(format!(
                "{} bytes for {} is more than one write carries ({MAX_WRITE} bytes)",
                request.data.len(),
                bounded::clip(&request.path, bounded::MAX_FIELD)
            )));
        }
        let if_match = match request.if_match {
            None => None,
            Some(d) => Some(<[u8; 32]>::try_from(d.as_slice()).map_err(|_| {
                SshError::InvalidArgument(format!(
                    "if-match must be a SHA-256 of 32 bytes, not {}",
                    d.len()
                ))
            })?),
        };
        let mut target = target_from_wit(target);
        let pass = self.authorize(Access::File(
            &mut target,
            access(FileOp::Write, &request.path),
        ))?;
        let lock = self
            .write_locks
            .lock_for(&self.sessions, &target, &request.path);
        let _held = lock.lock().await;
        let request = core::WriteRequest {
            path: request.path,
            data: request.data,
            mode: request.mode,
            create_parents: request.create_parents,
            if_match,
        };
        let result = self
            .sessions_for(&target)
            .write_file(&target, &request, &self.cancel)
            .await;
        pass.finish_with(result).map(|w| files::WriteOutput {
            bytes: w.bytes,
            sha256: w.sha256.to_vec(),
            created: w.created,
        })
    }

    #[tracing::instrument(skip_all, fields(component = %self.component, host = %bounded::clip(&target.host, bounded::MAX_FIELD)))]
    async fn list_directory(
        &mut self,
        target: types::Target,
        path: String,
        max_entries: u32,
    ) -> Result<files::DirListing, FileError> {
        check_path(&path)?;
        let mut target = target_from_wit(target);
        let pass = self.authorize(Access::File(&mut target, access(FileOp::List, &path)))?;
        let max = max_entries.min(MAX_ENTRIES);
        let result = self
            .sessions_for(&target)
            .list_directory(&target, &path, max)
            .await;
        pass.finish_with(result).map(|l| files::DirListing {
            entries: l
                .entries
                .into_iter()
                .map(|e| files::DirEntry {
                    name: e.name,
                    stat: stat_to_wit(e.stat),
                })
                .collect(),
            omitted: l.omitted,
        })
    }

    #[tracing::instrument(skip_all, fields(component = %self.component, host = %bounded::clip(&target.host, bounded::MAX_FIELD)))]
    async fn upload(
        &mut self,
        target: types::Target,
        local_path: String,
        remote_path: String,
        mode: Option<u32>,
    ) -> Result<files::TransferOutput, FileError> {
        check_path(&remote_path)?;
        check_mode(mode)?;
        let mut target = target_from_wit(target);
        let file = FileAccess {
            local_path: Some(&local_path),
            ..access(FileOp::Upload, &remote_path)
        };
        let pass = self.authorize(Access::File(&mut target, file))?;
        let lock = self
            .write_locks
            .lock_for(&self.sessions, &target, &remote_path);
        let _held = lock.lock().await;
        let result = upload_from(
            self.sessions_for(&target),
            &self.transfer_roots,
            self.transfer(),
            &target,
            &local_path,
            &remote_path,
            mode,
        )
        .await;
        pass.finish_with(result)
    }

    #[tracing::instrument(skip_all, fields(component = %self.component, host = %bounded::clip(&target.host, bounded::MAX_FIELD)))]
    async fn download(
        &mut self,
        target: types::Target,
        remote_path: String,
        local_path: String,
    ) -> Result<files::TransferOutput, FileError> {
        check_path(&remote_path)?;
        let mut target = target_from_wit(target);
        let file = FileAccess {
            local_path: Some(&local_path),
            ..access(FileOp::Download, &remote_path)
        };
        let pass = self.authorize(Access::File(&mut target, file))?;
        let result = download_to(
            self.sessions_for(&target),
            &self.transfer_roots,
            self.transfer(),
            &target,
            &remote_path,
            &local_path,
        )
        .await;
        pass.finish_with(result)
    }
}

impl StoreState {
    /// The call's cancel token and progress sink, for a transfer.
    fn transfer(&self) -> core::Transfer {
        core::Transfer {
            cancel: self.cancel.clone(),
            progress: self.progress.clone().map(transfer_progress),
            timeout: TRANSFER_TIMEOUT,
        }
    }
}

// Free functions, not methods: the store is not `Sync`, and a future that
// holds `&StoreState` across an await would not be `Send`.
async fn upload_from(
    sessions: &core::SessionManager,
    roots: &TransferRoots,
    transfer: core::Transfer,
    target: &core::Target,
    local: &str,
    remote: &str,
    mode: Option<u32>,
) -> Result<files::TransferOutput, FileError> {
    let (file, resolved) = roots.open_upload(local)?;
    let file = tokio::fs::File::from_std(file);
    let out = sessions
        .upload(target, file, remote, mode, &transfer)
        .await?;
    Ok(transfer_to_wit(out, &resolved))
}

async fn download_to(
    sessions: &core::SessionManager,
    roots: &TransferRoots,
    transfer: core::Transfer,
    target: &core::Target,
    remote: &str,
    local: &str,
) -> Result<files::TransferOutput, FileError> {
    // Dropped on any failure below: the temporary file goes with it.
    let pending = roots.create_download(local)?;
    let clone = pending
        .file
        .try_clone()
        .map_err(|e| FileError::Local(format!("local file {local}: {e}")))?;
    let mut file = tokio::fs::File::from_std(clone);
    let out = sessions
        .download(target, remote, &mut file, &transfer)
        .await?;
    file.flush()
        .await
        .map_err(|e| FileError::Local(format!("writing local file {local}: {e}")))?;
    drop(file);
    let dest = pending.commit(local)?;
    Ok(transfer_to_wit(out, &dest))
}

/// One lock per remote path being written through this server, kept only
/// while someone holds or waits for it.
#[derive(Debug, Default)]
pub(crate) struct WriteLocks(Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>);

impl WriteLocks {
    /// The lock of `path` where `target` really goes (ssh_config applied).
    fn lock_for(
        &self,
        sessions: &core::SessionManager,
        target: &core::Target,
        path: &str,
    ) -> Arc<tokio::sync::Mutex<()>> {
        let session = sessions
            .resolve(target)
            .map_or_else(|_| target.describe(), |d| d.key.to_string());
        let key = format!("{session}\0{path}");
        // No await while held: a std mutex is enough.
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, w| w.strong_count() > 0);
        if let Some(lock) = map.get(&key).and_then(Weak::upgrade) {
            return lock;
        }
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        map.insert(key, Arc::downgrade(&lock));
        lock
    }
}

fn access(op: FileOp, path: &str) -> FileAccess<'_> {
    FileAccess {
        op,
        path,
        local_path: None,
    }
}

/// A remote path the core can be given: not empty, no NUL (which would
/// cut it short in SFTP and on any command line).
fn check_path(path: &str) -> Result<(), SshError> {
    if path.is_empty() {
        return Err(SshError::InvalidArgument("path must not be empty".into()));
    }
    if path.contains('\0') {
        return Err(SshError::InvalidArgument(format!(
            "path {:?} contains NUL",
            bounded::clip(path, bounded::MAX_FIELD)
        )));
    }
    Ok(())
}

fn check_mode(mode: Option<u32>) -> Result<(), SshError> {
    match mode {
        Some(m) if m > 0o7777 => Err(SshError::InvalidArgument(format!(
            "mode {m:#o} has bits beyond the permission bits (0o7777)"
        ))),
        _ => Ok(()),
    }
}

fn stat_to_wit(s: core::FileStat) -> files::FileStat {
    files::FileStat {
        kind: match s.kind {
            core::FileKind::File => files::FileKind::File,
            core::FileKind::Directory => files::FileKind::Directory,
            core::FileKind::Symlink => files::FileKind::Symlink,
            core::FileKind::Other => files::FileKind::Other,
        },
        size: s.size,
        mode: s.mode & 0o7777,
        mtime: s.mtime,
        link_target: s.link_target,
    }
}

fn transfer_to_wit(t: core::TransferOutcome, local: &std::path::Path) -> files::TransferOutput {
    files::TransferOutput {
        bytes: t.bytes,
        sha256: t.sha256.to_vec(),
        remote_verified: t.remote_verified,
        local_path: local.display().to_string(),
    }
}

/// Turns a transfer's bytes into the client's progress: `progress` is
/// the bytes done (it grows), `total` the size when known.
fn transfer_progress(sink: ProgressSink) -> core::TransferProgressFn {
    core::TransferProgressFn(Arc::new(move |done: u64, total: Option<u64>| {
        let message = match total {
            Some(t) => format!("{done} of {t} bytes"),
            None => format!("{done} bytes"),
        };
        sink(done as f64, total.map(|t| t as f64), Some(message));
    }))
}

impl Audited for core::FileStat {}

impl Audited for core::ReadChunk {
    fn fill<'a>(&'a self, entry: &mut audit::Entry<'a>) {
        entry.bytes = Some(self.data.len() as u64);
    }
}

impl Audited for core::WriteOutcome {
    fn fill<'a>(&'a self, entry: &mut audit::Entry<'a>) {
        entry.bytes = Some(self.bytes);
    }
}

impl Audited for core::DirListing {}

impl Audited for files::TransferOutput {
    fn fill<'a>(&'a self, entry: &mut audit::Entry<'a>) {
        entry.bytes = Some(self.bytes);
    }
}
