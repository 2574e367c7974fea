//! The remote side's sha256 of a transfer, checked against ours: taken
//! after a download or beside it, and while an upload is written (so what
//! is left after its last byte is at most one [`STEP`] of hashing).
//! `None` wherever the host has no hasher or runs no commands (an
//! SFTP-only account): then only the size is verified.

use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use super::FileError;
use super::common::Ctl;
use super::sftp::Written;
use super::shell::Shell;
use crate::ssh::SshError;

/// How much more of an upload must be in place before the hasher reads
/// on: each step costs the remote side two short-lived processes.
const STEP: u64 = 8 << 20;

/// The remote sha256 of `path`, through exec. A cancel or the deadline
/// still ends the call; other failures mean unverified.
pub(super) async fn remote_hash(
    sh: &Shell<'_>,
    path: &str,
    ctl: &Ctl,
) -> Result<Option<[u8; 32]>, FileError> {
    unverified(sh, sh.sha256(path, ctl).await)
}

fn unverified(
    sh: &Shell<'_>,
    hashed: Result<Option<[u8; 32]>, FileError>,
) -> Result<Option<[u8; 32]>, FileError> {
    match hashed {
        Ok(h) => Ok(h),
        Err(e @ FileError::Ssh(SshError::Cancelled(_) | SshError::Timeout(_))) => Err(e),
        Err(e) => {
            tracing::info!(session = %sh.session, "no remote sha256, size verified only: {e}");
            Ok(None)
        }
    }
}

/// Hashes an upload's temporary file on the remote side as `written`
/// reports it growing, ending when the staging drops its sender.
pub(super) async fn follow(
    sh: &Shell<'_>,
    mut written: watch::Receiver<Option<Written>>,
    ctl: &Ctl,
) -> Result<Option<[u8; 32]>, FileError> {
    let temp = loop {
        if let Some(w) = &*written.borrow_and_update() {
            break w.temp.clone();
        }
        if written.changed().await.is_err() {
            // Staging failed before it made a file: its error is the one.
            return Ok(None);
        }
    };
    let (mut lines, input) = tokio::io::duplex(256);
    let pump = async move {
        let mut sent = 0;
        loop {
            let ended = written.changed().await.is_err();
            let bytes = written.borrow_and_update().as_ref().map_or(0, |w| w.bytes);
            if bytes > sent && (ended || bytes - sent >= STEP) {
                // An error: the hasher has ended (no hasher, a tool
                // missing); its answer says so.
                if lines
                    .write_all(format!("{bytes}\n").as_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
                sent = bytes;
            }
            if ended {
                return;
            }
        }
    };
    let (_, hashed) = tokio::join!(pump, sh.sha256_following(&temp, input, ctl));
    hashed
}

/// The remote hash of a staged upload: the one taken while it was written
/// when that matches ours; else (no hasher, a missing tool, a glitch, or
/// corruption) the whole file hashed again decides.
pub(super) async fn confirm(
    sh: &Shell<'_>,
    temp: &str,
    ours: [u8; 32],
    followed: Result<Option<[u8; 32]>, FileError>,
    ctl: &Ctl,
) -> Result<Option<[u8; 32]>, FileError> {
    match followed {
        Ok(Some(h)) if h == ours => Ok(Some(h)),
        Ok(None) => Ok(None),
        Err(e @ FileError::Ssh(SshError::Cancelled(_) | SshError::Timeout(_))) => Err(e),
        Ok(Some(_)) => {
            tracing::info!(session = %sh.session, "the hash taken while writing differs: hashing again");
            remote_hash(sh, temp, ctl).await
        }
        Err(e) => {
            tracing::debug!(session = %sh.session, "no hash while writing: {e}");
            remote_hash(sh, temp, ctl).await
        }
    }
}

pub(super) fn mismatch(session: &str, path: &str) -> FileError {
    FileError::Ssh(SshError::Other(format!(
        "{session}: {path}: the sha256 computed on the remote side differs from the bytes sent \
         or received: the transfer is corrupt and was not kept"
    )))
}
